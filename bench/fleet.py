"""Fleet scaling on the lab (issue 16): N stacks, each in its own namespace with live traffic,
rolled out at once by `rollout fleet run`, the command users run. Needs `rollout lab up`.

    .venv/bin/python -m bench.fleet                    # N = 1, 5, 10, 20
    .venv/bin/python -m bench.fleet --sizes 1,3 --quick

For each N it prints the wall time, the per-step p50/p95 (the drivers' own step times: config,
targeted `pulumi up`, journal, readback), the peak memory of all drivers together and per
driver (each driver with its children: `pulumi`, the language host, the provider plugin),
the CPU seconds per step, and where the CPU went. Memory and CPU are read from /proc every
0.1 s, so a process that lives less than that is missed (CPU under-counted, never over).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rollout.app.api import Rollouts
from rollout.cli.demo import wait_for_series
from rollout.core.fleet import worst_exit_code
from rollout.lab.lab import Lab
from rollout.lab.traffic import Traffic

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def policy(steps: int, interval: str) -> dict[str, Any]:
    weights = [round(50 * (i + 1) / steps) for i in range(steps)]
    return {"interval": interval, "threshold": 2, "stepWeights": weights,
            "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}}]}


# -- /proc --------------------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, str, float, int] | None:
    """(parent, command, CPU seconds, RSS bytes) of a live process, else None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    return int(fields[1]), name, cpu, int(fields[21]) * PAGE


def _snapshot() -> dict[int, tuple[int, str, float, int]]:
    seen = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                seen[int(entry)] = stat
    return seen


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _kind(pid: int, name: str) -> str:
    if name.startswith("pulumi-resource"):
        return "provider plugin"
    if name == "pulumi":
        return "pulumi engine"
    if not name.startswith("python"):
        return name
    command = _cmdline(pid)
    if "langhost.py" in command:
        return "language host"
    if "fleet run" in command:
        return "fleet"
    return "driver (python)"


def _lab_kind(pid: int, name: str) -> str | None:
    if name in ("kube-apiserver", "etcd", "prometheus", "kwok"):
        return name
    if name.startswith("python"):
        command = _cmdline(pid)
        for part in ("dataplane", "loadgen"):
            if part in command:
                return part
    return None


@dataclass
class Sampler:
    """Peak memory per driver (the fleet's children, each with its tree) and CPU by kind."""

    root: int
    peak_total: int = 0
    peak_driver: int = 0
    cpu: dict[int, tuple[str, float]] = field(default_factory=dict)
    lab_start: dict[int, tuple[str, float]] = field(default_factory=dict)
    lab_end: dict[int, tuple[str, float]] = field(default_factory=dict)

    def sample(self, first: bool = False) -> None:
        procs = _snapshot()
        children: dict[int, list[int]] = defaultdict(list)
        for pid, (parent, *_rest) in procs.items():
            children[parent].append(pid)

        def tree(pid: int) -> list[int]:
            out, todo = [], [pid]
            while todo:
                p = todo.pop()
                out.append(p)
                todo.extend(children.get(p, []))
            return out

        total = 0
        for driver in children.get(self.root, []):
            rss = sum(procs[p][3] for p in tree(driver))
            self.peak_driver = max(self.peak_driver, rss)
            total += rss
        self.peak_total = max(self.peak_total, total)
        mine = set(tree(self.root))
        for pid in mine:
            _, name, cpu, _ = procs[pid]
            kind = self.cpu[pid][0] if pid in self.cpu else _kind(pid, name)
            self.cpu[pid] = (kind, cpu)
        for pid, (_, name, cpu, _) in procs.items():
            if pid in mine:
                continue
            known = self.lab_start.get(pid) or self.lab_end.get(pid)
            lab = known[0] if known else _lab_kind(pid, name)
            if lab is not None:
                (self.lab_start if first else self.lab_end)[pid] = (lab, cpu)

    def cpu_by_kind(self) -> dict[str, float]:
        sums: dict[str, float] = defaultdict(float)
        for kind, cpu in self.cpu.values():
            sums[kind] += cpu
        return dict(sums)

    def lab_cpu(self) -> dict[str, float]:
        sums: dict[str, float] = defaultdict(float)
        for pid, (name, cpu) in self.lab_end.items():
            start = self.lab_start.get(pid, (name, cpu))[1]
            sums[name] += cpu - start
        return dict(sums)


# -- the lab ------------------------------------------------------------------------------

def make_stacks(lab: Lab, tmp: Path, count: int, pol: dict[str, Any], rps: float
                ) -> tuple[Path, list[str], list[Traffic]]:
    sys.path.insert(0, str(ROOT))
    from tests.lab.support.project import make_project

    stacks = []
    project = tmp
    for i in range(count):
        project, stack, _ = make_project(tmp, overrides={"analysis": pol},
                                         stack=f"fleet-{os.getpid()}-{i}")
        stacks.append(stack)
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda s: Rollouts(stack=s, project_dir=project).adapter.up(), stacks))
    print(f"deployed {count} stacks in {time.monotonic() - started:.0f}s", flush=True)
    traffic = []
    for stack in stacks:
        t = Traffic(lab.layout, lab.ports, app="demo", namespace=f"{stack}-ns", rps=rps)
        t.start()
        traffic.append(t)
    for stack in stacks:
        wait_for_series(lab.prometheus_url, workload="demo-primary", namespace=f"{stack}-ns",
                        timeout=120)
    return project, stacks, traffic


def discard_all(lab: Lab, project: Path, stacks: list[str], traffic: list[Traffic]) -> None:
    from tests.lab.support.project import discard

    for t in traffic:
        t.stop()
    for stack in stacks:
        try:
            discard(Rollouts(stack=stack, project_dir=project).adapter, f"{stack}-ns",
                    lab.layout.kubeconfig)
        except Exception as err:  # a benchmark's clean-up reports and goes on
            print(f"clean-up of {stack} failed: {err}")


def stable_of(project: Path, stack: str) -> str:
    data = yaml.safe_load((project / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    return str(data["config"]["demo:stableVersion"])


# -- one fleet run ------------------------------------------------------------------------

@dataclass
class Run:
    size: int
    wall: float
    exit_code: int
    steps: list[float]
    outcomes: dict[str, int]
    peak_total: int
    peak_driver: int
    cpu: dict[str, float]
    lab_cpu: dict[str, float]


def run_fleet(project: Path, stacks: list[str], journals: Path) -> Run:
    plan = journals / f"plan-{len(stacks)}.yaml"
    plan.write_text(yaml.safe_dump({"rollouts": [
        {"stack": s, "version": "v2" if stable_of(project, s) == "v1" else "v1"}
        for s in stacks]}))
    env = {**os.environ, "CANARY_JOURNAL_DIR": str(journals)}
    started = time.monotonic()
    fleet = subprocess.Popen(
        [sys.executable, "-m", "rollout.cli", "fleet", "run", "--file", str(plan),
         "--max-parallel", str(len(stacks)), "--project-dir", str(project), "--output", "json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    sampler = Sampler(fleet.pid)
    sampler.sample(first=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(fleet.stdout.read()))  # type: ignore
    reader.start()
    while fleet.poll() is None:
        sampler.sample()
        time.sleep(0.1)
    reader.join()
    wall = time.monotonic() - started
    summary = json.loads(out[0])
    steps = [s for row in summary["rollouts"] for s in row["step_seconds"]]
    outcomes: dict[str, int] = defaultdict(int)
    for row in summary["rollouts"]:
        outcomes[row["outcome"]] += 1
    return Run(len(stacks), wall, fleet.returncode, steps, dict(outcomes), sampler.peak_total,
               sampler.peak_driver, sampler.cpu_by_kind(), sampler.lab_cpu())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,5,10,20")
    parser.add_argument("--steps", type=int, default=5, help="weight steps per rollout")
    parser.add_argument("--interval", default="5s", help="analysis interval")
    parser.add_argument("--rps", type=float, default=10.0, help="lab traffic per stack")
    parser.add_argument("--min-samples", type=int, default=20,
                        help="repeat a size until it has this many steps")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    lab = Lab()
    if not lab.is_up():
        print("the lab is not up: run `rollout lab up` first")
        return 3
    cpu_model = next((line.split(":", 1)[1].strip() for line in
                      Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    print(f"machine: {os.cpu_count()} cores ({cpu_model}), {memory} GiB; "
          f"python {platform.python_version()}")
    print(f"policy: {args.steps} weight steps, interval {args.interval}, one metric; "
          f"lab traffic {args.rps:g} requests/s per stack", flush=True)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        project, stacks, traffic = make_stacks(lab, Path(tmp), max(sizes),
                                               policy(args.steps, args.interval), args.rps)
        journals = Path(tmp) / "journals"
        journals.mkdir()
        try:
            for size in sizes:
                merged: Run | None = None
                while merged is None or len(merged.steps) < args.min_samples:
                    run = run_fleet(project, stacks[:size], journals)
                    print(f"N={size}: {run.wall:.1f}s, exit {run.exit_code}, {run.outcomes}, "
                          f"{len(run.steps)} steps", flush=True)
                    merged = run if merged is None else _merge(merged, run)
                runs.append(merged)
        finally:
            discard_all(lab, project, stacks, traffic)
    _report(runs)
    return 0


def _merge(a: Run, b: Run) -> Run:
    cpu = {k: a.cpu.get(k, 0) + b.cpu.get(k, 0) for k in {*a.cpu, *b.cpu}}
    lab_cpu = {k: a.lab_cpu.get(k, 0) + b.lab_cpu.get(k, 0) for k in {*a.lab_cpu, *b.lab_cpu}}
    outcomes = {k: a.outcomes.get(k, 0) + b.outcomes.get(k, 0)
                for k in {*a.outcomes, *b.outcomes}}
    return Run(a.size, max(a.wall, b.wall), worst_exit_code([a.exit_code, b.exit_code]),
               a.steps + b.steps,
               outcomes, max(a.peak_total, b.peak_total), max(a.peak_driver, b.peak_driver),
               cpu, lab_cpu)


def _report(runs: list[Run]) -> None:
    base = percentile(runs[0].steps, 0.95)
    print("\nFleet scaling (bench/fleet.py): `rollout fleet run --max-parallel N` of N stacks")
    print(f"{'N':>3} {'wall s':>7} {'steps':>6} {'step p50':>9} {'step p95':>9} "
          f"{'p95/p95(1)':>10} {'peak MB all':>11} {'MB/driver':>10} {'CPU s/step':>10}  outcomes")
    for r in runs:
        p95 = percentile(r.steps, 0.95)
        cpu = sum(r.cpu.values())
        print(f"{r.size:>3} {r.wall:>7.1f} {len(r.steps):>6} "
              f"{statistics.median(r.steps):>9.2f} {p95:>9.2f} {p95 / base:>10.2f} "
              f"{r.peak_total / 2**20:>11.0f} {r.peak_driver / 2**20:>10.0f} "
              f"{cpu / len(r.steps):>10.2f}  {r.outcomes}")
    print("\nWhere the CPU went (seconds, whole run; drivers' trees, then the lab's processes)")
    kinds = sorted({k for r in runs for k in r.cpu}, key=lambda k: -runs[-1].cpu.get(k, 0))
    labs = sorted({k for r in runs for k in r.lab_cpu}, key=lambda k: -runs[-1].lab_cpu.get(k, 0))
    for r in runs:
        parts = ", ".join(f"{k} {r.cpu.get(k, 0):.1f}" for k in kinds)
        lab_parts = ", ".join(f"{k} {r.lab_cpu.get(k, 0):.1f}" for k in labs[:6])
        print(f"N={r.size:<3} {parts}\n       lab: {lab_parts}")


if __name__ == "__main__":
    raise SystemExit(main())
