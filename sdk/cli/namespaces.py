"""``jetwork namespaces``: namespaces' quotas (``namespaces set`` / ``delete``), and what each
namespace with a quota runs now (``events/quotas.py``)."""

from __future__ import annotations

import click
from rich.table import Table

from events import namespaces as names
from events.errors import JetworkError
from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.client import Client
from sdk.client.namespaces import NamespaceQuota


def _checked(name: str) -> str:
    try:
        return names.require(name, where="namespace")
    except JetworkError as exc:
        raise click.BadParameter(str(exc)) from None


def _bound(value: int | None) -> str:
    return "-" if value is None else str(value)


@click.group(invoke_without_command=True)
@json_option("the quotas")
@nats_option
@click.pass_context
def namespaces(ctx: click.Context, as_json: bool, nats_url: str | None) -> None:
    """List namespaces' quotas: at most N running workflows and jobs in a namespace.

    Every command works in one namespace (--namespace NAME, JETWORK_NAMESPACE; default
    `default`): its workflows, listings, workers, limits and concurrency groups see no other's.
    `jetwork namespaces set` / `delete` change quotas; engines and workers follow within a
    second.

    \b
    Examples:
      jetwork namespaces
      jetwork namespaces set team-a --max-running-workflows 10 --over-quota refuse
      jetwork namespaces delete team-a
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = nats_url
        return

    async def action(client: Client) -> list[NamespaceQuota]:
        return await client.quotas()

    rows = with_client(nats_url, action)
    if as_json:
        print_json({"namespaces": [row.to_json_dict() for row in rows]})
        return
    console = make_console()
    if not rows:
        console.print("no namespace has a quota (jetwork namespaces set --help)")
        return
    table = Table("namespace", "running workflows", "running jobs", "over quota", "set by")
    for row in rows:
        table.add_row(
            row.namespace,
            f"{row.running_workflows} / {_bound(row.max_running_workflows)}",
            f"{row.running_jobs} / {_bound(row.max_running_jobs)}",
            row.over_quota,
            row.by,
        )
    console.print(table)


@namespaces.command(name="set")
@click.argument("name")
@click.option(
    "--max-running-workflows",
    type=click.IntRange(min=1),
    help="At most this many workflows of the namespace run at once.",
)
@click.option(
    "--max-running-jobs",
    type=click.IntRange(min=1),
    help="At most this many jobs of the namespace run at once (more wait, queued).",
)
@click.option(
    "--over-quota",
    type=click.Choice(["wait", "refuse"]),
    default="wait",
    show_default=True,
    help="A start over the workflow quota waits for a running one to end, or is refused.",
)
@json_option("the quota set")
@nats_option
@click.pass_context
def set_quota(
    ctx: click.Context,
    name: str,
    max_running_workflows: int | None,
    max_running_jobs: int | None,
    over_quota: str,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """Set the quota of namespace NAME (replacing the one it had).

    \b
    Examples:
      jetwork namespaces set team-a --max-running-workflows 10
      jetwork namespaces set team-a --max-running-workflows 1 --over-quota refuse
      jetwork namespaces set batch --max-running-jobs 50
    """
    _checked(name)
    if max_running_workflows is None and max_running_jobs is None:
        raise click.UsageError("give --max-running-workflows and/or --max-running-jobs")

    async def action(client: Client) -> NamespaceQuota:
        return await client.set_quota(
            name,
            max_running_workflows=max_running_workflows,
            max_running_jobs=max_running_jobs,
            over_quota=over_quota,
        )

    row = with_client(nats_url or ctx.obj, action)
    if as_json:
        print_json(row.to_json_dict())
    else:
        click.echo(
            f"namespace {name}: at most {_bound(max_running_workflows)} running workflows "
            f"(over quota: {over_quota}), {_bound(max_running_jobs)} running jobs"
        )


@namespaces.command(name="delete")
@click.argument("name")
@json_option("whether there was one")
@nats_option
@click.pass_context
def delete_quota(ctx: click.Context, name: str, as_json: bool, nats_url: str | None) -> None:
    """Lift the quota of namespace NAME (its workflows stay where they are).

    \b
    Examples:
      jetwork namespaces delete team-a
    """
    _checked(name)

    async def action(client: Client) -> bool:
        return await client.delete_quota(name)

    existed = with_client(nats_url or ctx.obj, action)
    if as_json:
        print_json({"deleted": existed})
    else:
        click.echo("quota lifted" if existed else f"namespace {name} had no quota")
