"""Measures a weight-only step on the lab: `pulumi up` targeted at the routing objects vs a
full `up` of the stack (no refresh in either), over a few changes. Needs `rollout lab up`."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from rollout.app.driver import ROUTER_TYPES
from rollout.lab.lab import Lab


def main(changes: int = 5) -> int:
    lab = Lab()
    if not lab.is_up():
        print("the lab is not up: run `rollout lab up` first (skipped)")
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.lab.support.project import make_project, rollouts

    with tempfile.TemporaryDirectory() as tmp:
        project, stack_name, _ = make_project(Path(tmp))
        stack = rollouts(project, stack_name).adapter
        stack.up()
        stack.set_config({"demo:canaryVersion": "v2",
                          "demo:canaryReplicas": "1"})
        stack.up()
        try:
            timings: dict[str, list[float]] = {"targeted": [], "full": []}
            for i in range(changes * 2):
                mode = "targeted" if i % 2 == 0 else "full"
                stack.set_config({"demo:canaryWeight": str(10 + i)})
                targets = (stack.service_targets("demo", types=ROUTER_TYPES)
                           if mode == "targeted" else None)
                started = time.monotonic()
                stack.up(targets=targets)
                timings[mode].append(time.monotonic() - started)
        finally:
            stack.destroy(remove=True)
    for mode, values in timings.items():
        print(f"weight step, {mode:<9} pulumi up: median {statistics.median(values):5.2f}s  "
              f"max {max(values):5.2f}s  (n={len(values)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
