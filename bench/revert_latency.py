"""How long bad traffic lasts after the verdict: from the failing analysis to live weights 100/0,
against the time of one weight step, on the lab with live traffic.

One throwaway project and stack of one service (s0, Istio) in namespace `bench-revert`, with
`rollout lab traffic` at 50 requests/s. Each run is a real rollout of `v3` (the demo app's v3
answers 8% of requests with a 500) through the public API, `Rollouts(...).run("v3")`, under a
policy that judges every 5 s with threshold 1: the first failing analysis reverts it. Its
`on_progress` notes when the verdict came ("analysis FAIL ..."); a thread reads the
VirtualService with the kubernetes client every 20 ms and notes the first read of 100/0 after
it. Each run starts from the idle stack the previous revert left.

    .venv/bin/python -m bench.revert_latency            # 5 runs
    .venv/bin/python -m bench.revert_latency --runs 10

Needs `rollout lab up`. The traffic is stopped, the stack removed and the namespace deleted at
the end.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from bench.step_cost import ROUTER, discard, kube_api, machine, make_project, table
from rollout import Rollouts
from rollout.cli.demo import wait_for_series
from rollout.core.state import RolloutState
from rollout.lab.lab import Lab

NAMESPACE = "bench-revert"
RPS = 50
POLICY = {"interval": "5s", "threshold": 1, "stepWeight": 20, "maxWeight": 60,
          "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}}]}
POLL_SECONDS = 0.02


class RoutePoller(threading.Thread):
    """Reads the route's weights every 20 ms: (sent, received, (primary, canary)) per read."""

    def __init__(self, namespace: str, app: str) -> None:
        super().__init__(daemon=True)
        self.namespace, self.app = namespace, app
        self.reads: list[tuple[float, float, tuple[int | None, int | None]]] = []
        self.errors = 0
        self._halt = threading.Event()

    def run(self) -> None:
        api = kube_api()
        objects = client.CustomObjectsApi(api)
        tick = time.monotonic()
        try:
            while not self._halt.is_set():
                sent = time.monotonic()
                try:
                    route: dict[str, Any] = objects.get_namespaced_custom_object(  # type: ignore[assignment]
                        ROUTER.group, ROUTER.version, self.namespace, ROUTER.plural, self.app,
                        _request_timeout=5)
                    weights = ROUTER.weights(route, self.app)
                    self.reads.append((sent, time.monotonic(), weights))
                except Exception:
                    self.errors += 1
                tick += POLL_SECONDS
                time.sleep(max(0.0, tick - time.monotonic()))
                tick = max(tick, time.monotonic() - POLL_SECONDS)
        finally:
            api.close()

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def first_read(self, after: float, weights: tuple[int, int]) -> float | None:
        """When the first read sent after `after` that found `weights` came back."""
        for sent, received, found in self.reads:
            if sent >= after and found == weights:
                return received
        return None


@dataclass
class Progress:
    messages: list[tuple[float, str]] = field(default_factory=list)

    def __call__(self, state: RolloutState, message: str) -> None:
        self.messages.append((time.monotonic(), message))

    def first(self, prefix: str, after: float = 0.0) -> float | None:
        return next((t for t, m in self.messages if t >= after and m.startswith(prefix)), None)

    def up_seconds(self, after: float) -> float | None:
        """The driver's own time of the first `up` done after `after`."""
        for t, message in self.messages:
            if t >= after and message.startswith("pulumi up done in"):
                return float(message.split()[4].rstrip("s:"))
        return None


@dataclass
class Run:
    outcome: str
    steps: list[float]
    verdict_weight: int | None = None
    to_revert_up: float | None = None
    to_live: float | None = None
    to_first_up_done: float | None = None
    revert_up: float | None = None
    to_end: float | None = None
    polls: int = 0
    poll_errors: int = 0
    seconds: float = 0.0


def one_run(project_dir: Path, stack: str, journal: Path, namespace: str, app: str) -> Run:
    progress = Progress()
    poller = RoutePoller(namespace, app)
    poller.start()
    started = time.monotonic()
    try:
        result = Rollouts(stack=stack, service="s0", project_dir=project_dir,
                          journal_directory=journal, on_progress=progress).run("v3")
    finally:
        ended = time.monotonic()
        poller.stop()
    run = Run(outcome=result.outcome, steps=list(result.state.step_seconds),
              polls=len(poller.reads), poll_errors=poller.errors, seconds=ended - started)
    verdict = progress.first("analysis FAIL")
    if verdict is None:
        return run
    failed = [a for a in result.state.analyses if a.get("passed") is False]
    run.verdict_weight = int(failed[0]["weight"]) if failed else None
    revert_up = progress.first("pulumi up: all traffic back", verdict)
    live = poller.first_read(verdict, (100, 0))
    run.to_revert_up = revert_up - verdict if revert_up is not None else None
    run.to_live = live - verdict if live is not None else None
    if revert_up is not None:
        run.revert_up = progress.up_seconds(revert_up)
        done = progress.first("pulumi up done", revert_up)
        run.to_first_up_done = done - verdict if done is not None else None
    run.to_end = ended - verdict
    return run


def fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def report(runs: list[Run]) -> str:
    rows = []
    for number, run in enumerate(runs, start=1):
        step = statistics.median(run.steps) if run.steps else None
        ratio = run.to_live / step if run.to_live is not None and step else None
        rows.append([
            str(number), run.outcome,
            "-" if run.verdict_weight is None else f"{run.verdict_weight}%",
            " ".join(f"{s:.2f}" for s in run.steps) or "-",
            fmt(run.to_revert_up), fmt(run.to_live), fmt(run.to_first_up_done),
            fmt(run.revert_up), fmt(run.to_end), fmt(ratio, "x"),
            f"{run.polls}/{run.poll_errors}", f"{run.seconds:.0f}s",
        ])
    judged = [r for r in runs if r.to_live is not None]
    steps = [s for r in runs for s in r.steps]
    if judged and steps:
        live = statistics.median(r.to_live for r in judged if r.to_live is not None)
        step = statistics.median(steps)
        rows.append([
            "median", f"{len(judged)} reverted", "", f"{step:.2f} (n={len(steps)})",
            fmt(statistics.median(r.to_revert_up for r in judged if r.to_revert_up is not None)),
            fmt(live),
            fmt(statistics.median(r.to_first_up_done for r in judged
                                  if r.to_first_up_done is not None)),
            fmt(statistics.median(r.revert_up for r in judged if r.revert_up is not None)),
            fmt(statistics.median(r.to_end for r in judged if r.to_end is not None)),
            fmt(live / step, "x"), "", "",
        ])
    out = [table(rows, ["run", "outcome", "failed at", "step time(s)", "verdict->revert up",
                        "verdict->live 100/0", "verdict->up done", "revert up (driver)",
                        "verdict->end", "live/step", "polls/errors", "run"])]
    out.append("""
step time: state.step_seconds of the run (set config, targeted up, journal, readback).
verdict: the on_progress message "analysis FAIL ..." (threshold 1: it starts the revert).
verdict->revert up: to the progress message "pulumi up: all traffic back to the primary".
verdict->live 100/0: to the answer of the first VirtualService read (every 20 ms, kubernetes
  client) sent after the verdict that found 100/0.
verdict->up done: to the progress message that the revert's first (targeted) up ended.
revert up (driver): that up's own time, from its progress message (0.1 s resolution).
verdict->end: to `run()` returning (both reverting ups and the live check done).
live/step: verdict->live 100/0 over the step time (target: <= 1).""")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="rollouts of the bad v3")
    args = parser.parse_args(argv)
    lab = Lab()
    if not lab.is_up():
        print("the lab is not up: run `rollout lab up` first")
        return 2
    started = time.monotonic()
    header = machine()
    print("\n".join(header), flush=True)
    rollout_cli = str(Path(sys.executable).parent / "rollout")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-revert-") as tmp:
        stack = f"bench-revert-{uuid.uuid4().hex[:6]}"
        project = make_project(Path(tmp) / "project", project="bench-revert", stack=stack,
                               namespace=NAMESPACE, count=1, analysis=POLICY)
        app = project.services[0]
        traffic = [rollout_cli, "lab", "traffic", "--app", app, "--namespace", NAMESPACE]
        try:
            adapter = project.rollouts().adapter
            adapter.stack(create=True)
            up_started = time.monotonic()
            adapter.up()
            print(f"first up: {time.monotonic() - up_started:.1f}s", flush=True)
            subprocess.run([*traffic, "--rps", str(RPS)], check=True)
            wait_for_series(lab.prometheus_url, workload=f"{app}-primary", namespace=NAMESPACE)
            for number in range(1, args.runs + 1):
                run = one_run(project.root, stack, project.journal, NAMESPACE, app)
                runs.append(run)
                print(f"run {number}: {run.outcome}, verdict->live 100/0 {fmt(run.to_live)}, "
                      f"steps {[round(s, 2) for s in run.steps]}, {run.seconds:.0f}s",
                      flush=True)
        finally:
            sys.stdout.flush()
            subprocess.run([*traffic, "--stop"], check=False)
            deleted = discard(project)
            print(f"traffic stopped, stack removed, namespace deleted in {deleted:.0f}s")
    print()
    print("\n".join(header))
    print(f"revert latency: {args.runs} runs of v3 (8% 5xx) on stack {stack}, {RPS} requests/s, "
          f"policy {POLICY}")
    print()
    print(report(runs))
    print(f"\nbench finished in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
