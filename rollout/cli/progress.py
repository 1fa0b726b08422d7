"""The live progress of a rollout in a terminal: one line per event, step, weight, verdicts."""

from __future__ import annotations

import json
import sys
import time

from rich.console import Console

from rollout.analysis.wording import verdict_word
from rollout.app.snapshot import time_left
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
        seconds, _ = time_left(state, now=time.time())
        left = f"~{seconds:.0f}s left" if seconds is not None else ""
        self.console.print(
            f"[dim]{elapsed:6.1f}s[/dim] [{colour}]{state.phase!s:<16}[/{colour}] "
            f"{step:<10} canary {state.weight:>3}%  failed {state.failed_checks}  "
            f"{left:<10} {message}"
        )


class JsonProgress:
    """The same events as one JSON object per line on stderr, for a program that watches the
    driver (`rollout fleet run` reads its drivers' events this way). Redacted as every
    progress message is: only the phase, numbers and the driver's own words."""

    def __init__(self) -> None:
        self.reader_gone = False

    def __call__(self, state: RolloutState, message: str) -> None:
        if self.reader_gone:
            return
        last = state.analyses[-1] if state.analyses else None
        verdict = ""
        if last is not None:
            verdict = f"{verdict_word(last.get('passed'))} at {last.get('weight', state.weight)}%"
        event = {"rollout_id": state.rollout_id, "phase": str(state.phase), "step": state.step,
                 "total_steps": state.total_steps, "weight": state.weight,
                 "failed_checks": state.failed_checks, "verdict": verdict, "message": message}
        try:
            sys.stderr.write(json.dumps(event) + "\n")
            sys.stderr.flush()
        except BrokenPipeError:
            # The fleet that read these is gone (killed): the rollout goes on to its end.
            self.reader_gone = True
