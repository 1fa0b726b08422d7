"""What a weight step costs on the lab, against what it could cost, in one run.

For stacks of K canary services (K = 1, 10, 50 by default), each in a throwaway project and
its own namespace `bench-step-<K>`:

1. a weight step as the driver does it: a real rollout of s0 through the public API
   (`Rollouts(...).run`), each step's time as the driver records it (`state.step_seconds`:
   set config, targeted `pulumi up` of the route, journal saves, live readback);
2. a bare no-op `pulumi up` of the same stack (`Rollouts(...).adapter.up()`, untargeted,
   nothing changed);
3. the physical floor: one JSON merge PATCH of s0's route weights with the kubernetes client.

    .venv/bin/python -m bench.step_cost                  # K = 1, 10, 50; >= 20 samples each
    .venv/bin/python -m bench.step_cost --quick          # K = 1, 5 samples: a smoke run
    .venv/bin/python -m bench.step_cost --services 1,10 --steps 30

Needs `rollout lab up`. Nothing is left on the lab: each stack is removed from the backend and
its namespace deleted (and waited for, so that the deletion never overlaps a measurement).
Replaces bench/step_time.py, which timed `up` through a side door.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from rollout import Rollouts
from rollout.adapters.toolchain import locate
from rollout.app.api import engine_environment
from rollout.core.routers import ROUTERS
from rollout.core.state import RolloutState
from rollout.lab.lab import Lab

ROUTER = ROUTERS["istio"]
IMAGE = "registry.local/demo"
PROJECT = "bench-step"

# --- the throwaway project ----------------------------------------------------------------

PROGRAM = textwrap.dedent('''\
    """A bench project: its own namespace and {count} canary services s0..s{last}."""

    import pulumi
    import pulumi_kubernetes as k8s

    from rollout.pulumi import CanaryService

    name = pulumi.Config().require("namespace")
    namespace = k8s.core.v1.Namespace("namespace", metadata={{"name": name}})
    for index in range({count}):
        CanaryService(f"s{{index}}", opts=pulumi.ResourceOptions(depends_on=[namespace]))
    ''')


@dataclass
class Project:
    """A project folder of its own (Pulumi.yaml, __main__.py, stacks/) with one stack."""

    root: Path
    stack: str
    namespace: str
    services: list[str]
    journal: Path

    def rollouts(self, service: str | None = None, **kwargs: Any) -> Rollouts:
        return Rollouts(stack=self.stack, service=service or self.services[0],
                        project_dir=self.root, journal_directory=self.journal, **kwargs)


def make_project(root: Path, *, project: str, stack: str, namespace: str, count: int,
                 analysis: dict[str, Any], router: str = "istio") -> Project:
    """A Python Pulumi project as a user writes one (runtime python, `main` the project
    folder), run by the toolchain's language host like examples/shop: K CanaryService
    components, each configured in its own config namespace of the stack file."""
    (root / "stacks").mkdir(parents=True, exist_ok=True)
    (root / "Pulumi.yaml").write_text(yaml.safe_dump({
        "name": project, "description": f"bench: {count} canary services",
        "runtime": {"name": "python"}, "stackConfigDir": "stacks"}, sort_keys=False))
    (root / "__main__.py").write_text(PROGRAM.format(count=count, last=count - 1))
    values: dict[str, Any] = {f"{project}:namespace": namespace}
    services = [f"s{i}" for i in range(count)]
    for service in services:
        values.update({
            f"{service}:app": service,
            f"{service}:namespace": namespace,
            f"{service}:image": IMAGE,
            f"{service}:stableVersion": "v1",
            f"{service}:replicas": 1,
            f"{service}:router": router,
            f"{service}:hosts": [service],
            f"{service}:stateStore": "file",
            f"{service}:analysis": analysis,
        })
    (root / "stacks" / f"Pulumi.{stack}.yaml").write_text(
        yaml.safe_dump({"config": values}, sort_keys=False))
    journal = root / "journal"
    journal.mkdir()
    return Project(root=root, stack=stack, namespace=namespace, services=services,
                   journal=journal)


def step_policy(steps: int) -> dict[str, Any]:
    """A policy whose one rollout walks at least `steps` weight steps (up to 99), judged by
    nobody: every step is a pulumi up, a readback and a 1 s wait."""
    step = max(1, 99 // max(1, steps))
    return {"skipAnalysis": True, "interval": "1s", "stepWeight": step,
            "maxWeight": step * (99 // step)}


def kube_api() -> client.ApiClient:
    return config.new_client_from_config(config_file=engine_environment()["KUBECONFIG"])


def discard(project: Project, *, wait: float = 600.0) -> float:
    """Forgets the stack in the Pulumi backend, deletes its namespace, and waits until the
    namespace is gone; returns the seconds the deletion took."""
    adapter = project.rollouts().adapter
    try:
        adapter.stack(create=False).workspace.remove_stack(project.stack, force=True)
    except Exception as err:  # a stack that was never created
        print(f"  (removing stack {project.stack}: {type(err).__name__}: {err})")
    api = kube_api()
    started = time.monotonic()
    try:
        core = client.CoreV1Api(api)
        try:
            core.delete_namespace(project.namespace, _request_timeout=30)
        except ApiException as err:
            if err.status != 404:
                raise
        while time.monotonic() - started < wait:
            try:
                core.read_namespace(project.namespace, _request_timeout=10)
            except ApiException as err:
                if err.status == 404:
                    break
                raise
            time.sleep(0.5)
        else:
            print(f"  (namespace {project.namespace} still there after {wait:.0f}s)")
    finally:
        api.close()
    return time.monotonic() - started


# --- measuring ----------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass(frozen=True)
class Cpu:
    """CPU seconds: this process, its reaped children (pulumi and its plugins), the machine."""

    own: float
    children: float
    machine: float

    @classmethod
    def now(cls) -> Cpu:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime, machine_busy())

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.own - other.own, self.children - other.children,
                   self.machine - other.machine)


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (every process: the lab's too)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: steal is the hypervisor's, not ours.
    idle = fields[3] + fields[4]
    return (sum(fields[:7]) - idle) / os.sysconf("SC_CLK_TCK")


def idle_rate(seconds: float = 5.0) -> float:
    """CPU seconds per second the machine spends with nothing of this bench running."""
    before = machine_busy()
    time.sleep(seconds)
    return (machine_busy() - before) / seconds


def cpu_mean(samples: Sequence[Cpu]) -> Cpu:
    n = max(1, len(samples))
    return Cpu(sum(s.own for s in samples) / n, sum(s.children for s in samples) / n,
               sum(s.machine for s in samples) / n)


@dataclass
class StepProbe:
    """Watches a rollout's progress messages (the public `on_progress`): the CPU spent from
    each "pulumi up: weight N%" to the analysis that follows it (the step's up, journal
    saves and readback, plus the 1 s interval wait, idle), and the time between analyses."""

    cpu: list[Cpu] = field(default_factory=list)
    ups: list[float] = field(default_factory=list)
    windows: list[float] = field(default_factory=list)
    analyses: list[float] = field(default_factory=list)
    messages: list[tuple[float, str]] = field(default_factory=list)
    _open: Cpu | None = None
    _opened: float = 0.0

    def __call__(self, state: RolloutState, message: str) -> None:
        now = time.monotonic()
        self.messages.append((now, message))
        if message.startswith("pulumi up: weight"):
            self._open, self._opened = Cpu.now(), now
        elif message.startswith("pulumi up done in") and self._open is not None:
            # The driver's own time of the step's `up` (0.1 s resolution).
            self.ups.append(float(message.split()[4].rstrip("s:")))
        elif message.startswith("analysis") and self._open is not None:
            self.cpu.append(Cpu.now() - self._open)
            self.windows.append(now - self._opened)
            self._open = None
            self.analyses.append(now)


@dataclass
class KResult:
    services: int
    resources: int
    first_up: float
    steps: list[float]
    noop: list[float]
    patch: list[float]
    step_cpu: Cpu
    noop_cpu: Cpu
    rollout_seconds: float
    rollout_cpu: Cpu
    cycle_extra: list[float]
    ups: list[float]
    windows: list[float]
    noop_changes: set[str]
    idle: float
    deleted_in: float = 0.0


def timed_rollouts(project: Project, steps: int) -> tuple[list[float], StepProbe, float, Cpu]:
    """Rollouts of s0 until at least `steps` weight steps are recorded: v2, then back to v1
    if one rollout walks fewer steps than asked for."""
    probe = StepProbe()
    samples: list[float] = []
    versions = ["v2", "v1"]
    started, before = time.monotonic(), Cpu.now()
    while len(samples) < steps:
        version = versions[0]
        versions.reverse()
        result = project.rollouts(on_progress=probe).run(version)
        if result.outcome != "promoted":
            raise SystemExit(f"rollout of {version} ended {result.outcome}: {result.reason}")
        samples += result.state.step_seconds
    return samples, probe, time.monotonic() - started, Cpu.now() - before


def noop_ups(project: Project, count: int) -> tuple[list[float], list[Cpu], set[str]]:
    adapter = project.rollouts().adapter
    adapter.stack(create=False)  # selected once, as the driver's adapter is during a rollout
    seconds: list[float] = []
    cpu: list[Cpu] = []
    changes: set[str] = set()
    for _ in range(count):
        before, started = Cpu.now(), time.monotonic()
        summary = adapter.up()
        seconds.append(time.monotonic() - started)
        cpu.append(Cpu.now() - before)
        changes |= {op for op, n in summary.changes.items() if n and op != "same"}
    return seconds, cpu, changes


def patches(project: Project, app: str, count: int) -> list[float]:
    """One JSON merge PATCH of the route's weights per sample, each to other weights (the
    route's whole `http` list: a merge patch replaces lists)."""
    api = kube_api()
    try:
        objects = client.CustomObjectsApi(api)
        route: dict[str, Any] = objects.get_namespaced_custom_object(  # type: ignore[assignment]
            ROUTER.group, ROUTER.version, project.namespace, ROUTER.plural, app)
        http = route["spec"]["http"]
        seconds = []
        for i in range(count):
            canary = 1 + i % 99
            for rule in http:
                if rule.get("name") == "primary":
                    for destination in rule["route"]:
                        host = destination["destination"]["host"]
                        destination["weight"] = canary if host.endswith("-canary") \
                            else 100 - canary
            body = {"spec": {"http": http}}
            started = time.monotonic()
            objects.patch_namespaced_custom_object(
                ROUTER.group, ROUTER.version, project.namespace, ROUTER.plural, app, body,
                _content_type="application/merge-patch+json", _request_timeout=30)
            seconds.append(time.monotonic() - started)
        return seconds
    finally:
        api.close()


def measure(count: int, steps: int, tmp: Path) -> KResult:
    namespace = f"bench-step-{count}"
    project = make_project(tmp / f"k{count}", project=PROJECT,
                           stack=f"bench-step-{count}-{uuid.uuid4().hex[:6]}",
                           namespace=namespace, count=count, analysis=step_policy(steps))
    print(f"K={count}: stack {project.stack}, namespace {namespace}", flush=True)
    try:
        adapter = project.rollouts().adapter
        adapter.stack(create=True)
        started = time.monotonic()
        summary = adapter.up()
        first_up = time.monotonic() - started
        resources = sum(summary.changes.values())
        print(f"  first up: {first_up:.1f}s ({resources} resources)", flush=True)
        idle = idle_rate()
        print(f"  idle machine: {idle:.2f} CPU s/s", flush=True)
        step_samples, probe, rollout_seconds, rollout_cpu = timed_rollouts(project, steps)
        print(f"  rollout(s): {len(step_samples)} steps in {rollout_seconds:.1f}s", flush=True)
        noop, noop_cpu, changes = noop_ups(project, steps)
        print(f"  no-op ups: {len(noop)} done", flush=True)
        patch = patches(project, project.services[0], steps)
        # Between two analyses: the next step's journal save, its config read and its step,
        # the 1 s wait; what the step's own time leaves out is the rest.
        gaps = [b - a for a, b in zip(probe.analyses, probe.analyses[1:], strict=False)]
        extra = [gap - 1.0 - step for gap, step in zip(gaps, step_samples[1:], strict=False)]
        result = KResult(services=count, resources=resources, first_up=first_up,
                         steps=step_samples, noop=noop, patch=patch,
                         step_cpu=cpu_mean(probe.cpu), noop_cpu=cpu_mean(noop_cpu),
                         rollout_seconds=rollout_seconds, rollout_cpu=rollout_cpu,
                         cycle_extra=extra, ups=probe.ups,
                         windows=probe.windows, noop_changes=changes, idle=idle)
    finally:
        deleted = discard(project)
        print(f"  stack removed, namespace deleted in {deleted:.1f}s", flush=True)
    result.deleted_in = deleted
    return result


# --- the report -----------------------------------------------------------------------------


def machine() -> list[str]:
    model = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        mem_kb = int(next(line for line in info if line.startswith("MemTotal")).split()[1])
    tools = locate()
    env = {**os.environ, **engine_environment()}
    pulumi = subprocess.run([str(tools.pulumi), "version"], env=env, text=True,
                            capture_output=True, check=False).stdout.strip()
    api = kube_api()
    try:
        kube = client.VersionApi(api).get_code().git_version
    finally:
        api.close()
    return [
        f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), {model}, "
        f"{mem_kb / 1024 / 1024:.1f} GiB RAM, {platform.platform()}",
        f"versions: pulumi {pulumi}, pulumi-resource-kubernetes {tools.provider_version}, "
        f"kube-apiserver {kube}, python {platform.python_version()}",
    ]


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def report(results: list[KResult]) -> str:
    rows = []
    for r in results:
        step, noop, patch = (statistics.median(r.steps), statistics.median(r.noop),
                             statistics.median(r.patch))
        rows.append([
            str(r.services), str(r.resources), f"{r.first_up:.1f}s",
            f"{step:.2f}s", f"{percentile(r.steps, 0.95):.2f}s", f"{max(r.steps):.2f}s",
            f"{noop:.2f}s", f"{percentile(r.noop, 0.95):.2f}s", f"{max(r.noop):.2f}s",
            f"{patch * 1000:.1f}ms", f"{percentile(r.patch, 0.95) * 1000:.1f}ms",
            f"{max(r.patch) * 1000:.1f}ms", f"{step / noop:.2f}x", f"{step / patch:.0f}x",
        ])
    out = [table(rows, ["K", "resources", "first up", "step med", "p95", "max", "no-op med",
                        "p95", "max", "PATCH med", "p95", "max", "step/no-op", "step/PATCH"])]
    out.append("")
    rows = []
    for r in results:
        up = statistics.median(r.ups) if r.ups else float("nan")
        extra = statistics.median(r.cycle_extra) if r.cycle_extra else float("nan")
        rows.append([
            str(r.services), f"{statistics.median(r.steps[1:] or r.steps):.2f}s",
            f"{r.steps[0]:.2f}s", f"{up:.1f}s",
            f"{statistics.median(r.steps) - up:.2f}s", f"{extra:.2f}s",
            f"{r.rollout_seconds:.0f}s", f"{r.deleted_in:.0f}s",
        ])
    out.append(table(rows, ["K", "step med w/o 1st", "1st step", "its up (driver)",
                            "step - up", "cycle outside step", "rollout", "ns deleted"]))
    out.append("")
    rows = []
    for r in results:
        step_cpu = r.step_cpu.own + r.step_cpu.children
        noop_cpu = r.noop_cpu.own + r.noop_cpu.children
        window = statistics.mean(r.windows) if r.windows else 0.0
        rows.append([
            str(r.services), f"{r.step_cpu.children:.2f}s", f"{r.step_cpu.own:.2f}s",
            f"{step_cpu:.2f}s", f"{r.step_cpu.machine:.2f}s",
            f"{r.step_cpu.machine - r.idle * window:.2f}s",
            f"{r.noop_cpu.children:.2f}s", f"{noop_cpu:.2f}s", f"{r.noop_cpu.machine:.2f}s",
            f"{r.noop_cpu.machine - r.idle * statistics.mean(r.noop):.2f}s",
            f"{(r.rollout_cpu.own + r.rollout_cpu.children) / len(r.steps):.2f}s",
            f"{r.idle:.2f}",
        ])
    out.append(table(rows, [
        "K", "step CPU: pulumi+plugins", "driver", "sum", "machine", "above idle",
        "no-op CPU: pulumi+plugins", "sum", "machine", "above idle",
        "rollout CPU/steps", "idle CPU/s"]))
    out.append("")
    for r in results:
        line = (f"K={r.services}: {len(r.steps)} steps, {len(r.noop)} no-op ups, "
                f"{len(r.patch)} PATCHes")
        if r.noop_changes:
            line += f"; THE NO-OP UPS CHANGED SOMETHING: {sorted(r.noop_changes)}"
        out.append(line)
    out.append(textwrap.dedent("""
        step: state.step_seconds of real rollouts of s0 (stepWeight policy, skipAnalysis,
          interval 1s): set config, targeted `pulumi up` of the route, journal saves, readback.
          The 1st step of a rollout also reads the stack's state (`pulumi stack export`) for
          the targets. its up (driver): the up's own time from the driver's progress message.
        no-op: Rollouts(...).adapter.up() of the whole stack with nothing changed.
        PATCH: one JSON merge PATCH of s0's VirtualService weights (kubernetes client).
        cycle outside step: time between two analyses - the 1 s wait - the step's own time
          (median): what each step costs that step_seconds does not count.
        CPU (means): a step's from the "pulumi up: weight" progress message to the analysis
          after it (the step plus the idle 1 s wait); pulumi+plugins = RUSAGE_CHILDREN (the
          CLI, its language host and provider), driver = this process, machine = busy time of
          both CPUs (/proc/stat: the lab's processes too), above idle = machine minus the idle
          rate measured before each K times the window. rollout CPU/steps: the whole rollout's
          (scale-up, steps, promotion: 3 more ups) driver+children CPU over its steps."""))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", default="1,10,50",
                        help="comma-separated stack sizes (canary services per stack)")
    parser.add_argument("--steps", type=int, default=20, help="samples of each kind, at least")
    parser.add_argument("--quick", action="store_true", help="K=1 and 5 steps: a smoke run")
    args = parser.parse_args(argv)
    counts = [1] if args.quick else [int(k) for k in args.services.split(",") if k.strip()]
    steps = 5 if args.quick else args.steps
    if not Lab().is_up():
        print("the lab is not up: run `rollout lab up` first")
        return 2
    started = time.monotonic()
    header = machine()
    for line in header:
        print(line, flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        for count in counts:
            results.append(measure(count, steps, Path(tmp)))
    print()
    print("\n".join(header))
    print(f"step cost: services {counts}, >= {steps} samples each; {sys.executable}")
    print()
    print(report(results))
    print(f"\nbench finished in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
