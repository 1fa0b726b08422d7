"""The live view of a fleet: one table redrawn in place in a terminal, one line per change
elsewhere (a pipeline's log), and the summary at the end."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table

from rollout.cli.views import brief
from rollout.core.fleet import FleetResult, FleetRow, RowStatus

# A reason can hold a whole PromQL query; `--output json` and `rollout history` keep it all.
REASON_CHARS = 100

STATUS_COLOURS = {"promoted": "green", "nothing-to-do": "green", "rolled-back": "red",
                  "aborted": "yellow", "skipped": "dim"}


def short(reason: str) -> str:
    return brief(reason, limit=REASON_CHARS)


def fleet_table(rows: list[FleetRow], *, title: str = "fleet") -> Table:
    table = Table("stack", "service", "version", "phase", "step", "weight", "last verdict",
                  "time", "outcome", title=title)
    for row in rows:
        step = (f"{row.step + 1}/{row.total_steps}" if row.total_steps and row.step >= 0
                else "-")
        seconds = f"{row.seconds:.0f}s" if row.seconds is not None else "-"
        outcome = row.outcome or str(row.status)
        colour = STATUS_COLOURS.get(outcome, "red" if row.status is RowStatus.DONE else "white")
        table.add_row(row.entry.stack, row.service or row.entry.service or "-",
                      row.entry.version, row.phase or "-", step,
                      f"{100 - row.weight}/{row.weight}", row.verdict or "-", seconds,
                      f"[{colour}]{outcome}[/{colour}]")
    return table


def summary_table(result: FleetResult) -> Table:
    table = Table("stack", "service", "outcome", "exit", "took", "reason",
                  title=f"fleet: exit code {result.exit_code}")
    for row in result.rows:
        colour = STATUS_COLOURS.get(row.outcome, "red")
        took = f"{row.seconds:.0f}s" if row.seconds is not None else "-"
        table.add_row(row.entry.stack, row.service or row.entry.service or "-",
                      f"[{colour}]{row.outcome}[/{colour}]",
                      "-" if row.exit_code is None else str(row.exit_code), took,
                      short(row.reason))
    return table


class FleetDisplay:
    """Called with the rows on every change (and once a second)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None
        self._seen: dict[int, tuple[object, ...]] = {}

    def __enter__(self) -> FleetDisplay:
        if self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def __call__(self, rows: list[FleetRow]) -> None:
        if self._live is not None:
            self._live.update(fleet_table(rows))
            return
        for i, row in enumerate(rows):
            key = (row.status, row.phase, row.step, row.verdict, row.outcome)
            if self._seen.get(i) == key:
                continue
            self._seen[i] = key
            label = row.entry.label
            if row.status is RowStatus.DONE or row.status is RowStatus.SKIPPED:
                self.console.print(f"{label}: {row.outcome} ({short(row.reason)})")
            elif row.status is RowStatus.RUNNING:
                step = f"step {row.step + 1}/{row.total_steps}" if row.step >= 0 else ""
                self.console.print(f"{label}: {row.phase or 'starting'} {step} weight "
                                   f"{row.weight}% {row.verdict}".rstrip())
