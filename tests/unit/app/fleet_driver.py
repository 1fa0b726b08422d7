"""Stands in for `rollout run --output json --json-events` in the fleet's unit tests: a real
process that reports through the CLI's own JSON writers, and behaves as its stack's name
says (good: promoted, bad: rolled back, broken: refused with exit 2, slow: runs until a
signal, then is aborted, crash: dies without a result)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from rollout.app.results import RolloutResult
from rollout.cli.progress import JsonProgress
from rollout.core.state import Outcome, Phase, RolloutState


def main(stack: str, version: str) -> int:
    state = RolloutState(stack=stack, candidate=version, stable="v1", last_good={},
                         total_steps=3)
    progress = JsonProgress()
    signalled: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: signalled.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: signalled.append(signum))
    if stack.startswith("broken"):
        sys.stderr.write(f"error: stack {stack} is not what the test wants\n"
                         "  fix: nothing, it is a test\n")
        return 2
    if stack.startswith("crash"):
        os.kill(os.getpid(), signal.SIGKILL)
    for step, weight in enumerate((10, 20, 30)):
        state = state.moved(phase=Phase.PROGRESSING, step=step, weight=weight,
                            analyses=[*state.analyses, {"passed": True, "weight": weight}])
        progress(state, f"step to {weight}%")
        time.sleep(float(os.environ.get("FLEET_STEP_SECONDS", "0.05")))
        if stack.startswith("bad"):
            state = state.moved(phase=Phase.FAILED, outcome=Outcome.ROLLED_BACK, weight=0,
                                reason="request-success-rate 90% below 99%",
                                analyses=[*state.analyses, {"passed": False,
                                                            "weight": weight}])
            progress(state, "analysis FAIL")
            break
    while stack.startswith("slow") and not signalled:
        time.sleep(0.02)
    if signalled:
        state = state.moved(phase=Phase.FAILED, outcome=Outcome.ABORTED, weight=0,
                            reason=f"signal {signalled[0]}: reverted")
    elif state.outcome is None:
        state = state.moved(phase=Phase.SUCCEEDED, outcome=Outcome.PROMOTED, weight=0,
                            reason=f"{version} promoted", step_seconds=[0.5, 0.7, 0.6])
    result = RolloutResult.of(state)
    print(json.dumps(result.to_dict(), default=str))
    return result.exit_code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
