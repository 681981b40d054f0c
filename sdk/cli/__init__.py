"""The ``jetwork`` command line. Each command lives in its own module and registers itself here."""

from __future__ import annotations

import click

from sdk.cli import (
    cancel,
    control,
    dead_letters,
    definitions,
    delete,
    demo,
    gateway,
    handlers,
    history,
    limits,
    listing,
    logs,
    namespaces,
    projections,
    projector,
    run,
    schedules,
    server,
    signal,
    status,
    variables,
    watch,
    worker,
    workers,
)
from sdk.cli._common import JetworkGroup
from sdk.runtime import tune_gc


@click.group(
    cls=JetworkGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="jetwork")
def main() -> None:
    """jetwork: event-sourced workflows and jobs on NATS JetStream.

    \b
    Quick start:
      jetwork demo                      run example workflows end to end, locally
      jetwork server                    engine + projector + HTTP gateway (embedded nats-server)
      jetwork worker --labels linux     run shell jobs
      jetwork run examples/hello.yaml --wait
    """


main.add_command(demo.demo)
main.add_command(worker.worker)
main.add_command(server.server)
main.add_command(gateway.gateway)
main.add_command(projector.projector)
main.add_command(run.run)
main.add_command(status.status)
main.add_command(listing.list_workflows)
main.add_command(cancel.cancel)
main.add_command(control.pause)
main.add_command(control.resume)
main.add_command(control.skip)
main.add_command(control.retry)
main.add_command(control.rerun)
main.add_command(control.restart)
main.add_command(signal.signal)
main.add_command(variables.set_vars)
main.add_command(logs.logs)
main.add_command(history.history)
main.add_command(watch.watch)
main.add_command(dead_letters.dead_letters)
main.add_command(workers.workers)
main.add_command(handlers.handlers)
main.add_command(projections.projections)
main.add_command(limits.limits)
main.add_command(definitions.definitions)
main.add_command(schedules.schedules)
main.add_command(delete.delete)
main.add_command(namespaces.namespaces)


def entry() -> None:
    """The ``jetwork`` executable: ``main`` in a process of its own, so the collector is tuned
    for long work (a rebuild, a server); ``main`` called in-process leaves it alone."""
    tune_gc()
    main()
