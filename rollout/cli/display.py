"""How a rollout looks in a terminal: one line per event with step, weight and verdicts."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table

from rollout.core.state import RolloutState

PHASE_COLOURS = {"Succeeded": "green", "Failed": "red", "RollingBack": "red",
                 "Promoting": "cyan", "Finalising": "cyan", "Waiting": "yellow",
                 "WaitingPromotion": "yellow"}


class ProgressPrinter:
    """A live log of the rollout (on stderr, so stdout stays clean for --output json)."""

    def __init__(self, console: Console, *, steps: int | None = None) -> None:
        self.console = console
        self.steps = steps
        self.started = time.monotonic()

    def __call__(self, state: RolloutState, message: str) -> None:
        elapsed = time.monotonic() - self.started
        colour = PHASE_COLOURS.get(str(state.phase), "white")
        steps = self.steps or state.total_steps
        step = f"step {state.step + 1}/{steps}" if steps and state.step >= 0 else ""
        left = ""
        walking = str(state.phase) in ("Initializing", "Progressing", "Waiting")
        if steps and walking and state.interval_seconds:
            remaining = steps - max(state.step, 0)
            left = f"~{remaining * state.interval_seconds:.0f}s left"
        self.console.print(
            f"[dim]{elapsed:6.1f}s[/dim] [{colour}]{state.phase!s:<16}[/{colour}] "
            f"{step:<10} canary {state.weight:>3}%  failed {state.failed_checks}  "
            f"{left:<10} {message}"
        )


def status_table(state: RolloutState) -> Table:
    table = Table(title=f"rollout {state.rollout_id} on stack {state.stack}", show_header=False)
    rows: list[tuple[str, Any]] = [
        ("phase", state.phase), ("outcome", state.outcome or "-"),
        ("candidate", state.candidate), ("stable before", state.stable),
        ("step", state.step + 1), ("canary weight", f"{state.weight}%"),
        ("failed checks", state.failed_checks), ("reason", state.reason or "-"),
    ]
    if state.analyses:
        last = state.analyses[-1]
        rows.append(("last analysis", f"{_verdict(last['passed'])}: {last['reason']}"))
    if state.step_seconds:
        rows.append(("weight step time", f"{sum(state.step_seconds) / len(state.step_seconds):.1f}s"
                     " average"))
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def history_table(states: list[RolloutState]) -> Table:
    table = Table("started", "candidate", "stable before", "outcome", "reason")
    for s in states:
        table.add_row(time.strftime("%Y-%m-%d %H:%M", time.localtime(s.started_at)),
                      s.candidate, s.stable, str(s.outcome or "-"), s.reason[:80])
    return table


def _verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "INCONCLUSIVE"}[passed]
