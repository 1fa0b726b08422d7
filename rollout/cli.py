"""The `rollout` command line: thin wrappers that print results and map errors to exit codes."""

from __future__ import annotations

import json
import shlex
import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rollout.errors import RolloutError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Canary releases for Kubernetes on the Pulumi Automation API.")
lab_app = typer.Typer(no_args_is_help=True, help="The local lab: a real cluster and Prometheus.")
app.add_typer(lab_app, name="lab")

console = Console(stderr=True)
out = Console()


class Output(StrEnum):
    text = "text"
    json = "json"


OutputOption = Annotated[Output, typer.Option("--output", "-o", help="text or json")]


def fail(err: RolloutError) -> typer.Exit:
    console.print(f"[red]error:[/red] {err.message}")
    if err.hint:
        console.print(f"  [bold]fix:[/bold] {err.hint}")
    return typer.Exit(err.exit_code)


def _status_table(statuses: list) -> Table:
    table = Table("component", "state", "pid", "endpoint")
    colour = {"healthy": "green", "unhealthy": "red", "stopped": "yellow"}
    for s in statuses:
        table.add_row(s.name, f"[{colour[s.state]}]{s.state}[/]", str(s.pid or "-"), s.endpoint)
    return table


@lab_app.command("up")
def lab_up(output: OutputOption = Output.text) -> None:
    """Build the tools if needed and start the lab (a no-op when it is already up)."""
    from rollout.lab.lab import Lab

    lab = Lab()
    try:
        statuses = lab.up(progress=lambda msg: console.print(f"[cyan]lab[/cyan] {msg}"))
    except RolloutError as err:
        raise fail(err) from err
    if output is Output.json:
        out.print_json(json.dumps({"components": [s.__dict__ for s in statuses],
                                   "env": lab.environment()}))
        return
    out.print(_status_table(statuses))
    out.print(f"Kubernetes API: {lab.api_server_url}   Prometheus: {lab.prometheus_url}")
    out.print('Point kubectl and pulumi at it with:  eval "$(rollout lab env)"')


@lab_app.command("down")
def lab_down(
    wipe: Annotated[bool, typer.Option(help="also delete the lab's state directory")] = False,
) -> None:
    """Stop every process the lab started (by PID), optionally wiping its state."""
    from rollout.lab.lab import Lab

    stopped = Lab().down(wipe=wipe, progress=lambda msg: console.print(f"[cyan]lab[/cyan] {msg}"))
    if not stopped:
        console.print("lab: nothing was running")


@lab_app.command("status")
def lab_status(output: OutputOption = Output.text) -> None:
    """Report each lab component; exits 3 when any is not healthy."""
    from rollout.lab.lab import Lab

    statuses = Lab().status()
    if output is Output.json:
        out.print_json(json.dumps([{**s.__dict__, "state": s.state} for s in statuses]))
    else:
        out.print(_status_table(statuses))
    if not statuses or not all(s.healthy for s in statuses):
        raise typer.Exit(3)


@lab_app.command("env")
def lab_env() -> None:
    """Print shell exports for kubectl and pulumi (use with eval)."""
    from rollout.lab.lab import Lab

    try:
        env = Lab().environment()
    except RolloutError as err:
        raise fail(err) from err
    for key, value in env.items():
        sys.stdout.write(f"export {key}={shlex.quote(value)}\n")


def main() -> None:  # pragma: no cover - console entry point
    app()
