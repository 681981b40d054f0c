"""The ``jetwork`` command line. Each command lives in its own module and registers itself here."""

from __future__ import annotations

import click

from sdk.cli import demo, worker


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="jetwork")
def main() -> None:
    """jetwork: event-sourced workflows and jobs on NATS JetStream.

    \b
    Quick start:
      jetwork demo                      run example workflows end to end, locally
      jetwork server                    engine + projector (embedded nats-server by default)
      jetwork worker --labels linux     run shell jobs
      jetwork run examples/hello.yaml --wait
    """


main.add_command(demo.demo)
main.add_command(worker.worker)
