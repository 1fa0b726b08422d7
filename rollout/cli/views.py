"""How results look: every table and JSON shape the commands print, each defined once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table

from rollout.analysis.wording import verdict_word
from rollout.app.snapshot import Snapshot, snapshot, words
from rollout.app.timeline import report_name
from rollout.core.durations import format_duration
from rollout.core.gates import when
from rollout.core.state import RolloutState

# -- the lab -------------------------------------------------------------------------------


def lab_table(statuses: list[Any]) -> Table:
    table = Table("component", "state", "pid", "endpoint")
    colour = {"healthy": "green", "unhealthy": "red", "stopped": "yellow"}
    for s in statuses:
        table.add_row(s.name, f"[{colour[s.state]}]{s.state}[/]", str(s.pid or "-"), s.endpoint)
    return table


def lab_json(statuses: list[Any], *, env: dict[str, str] | None = None,
             traffic: list[Any] | None = None) -> dict[str, Any]:
    shape: dict[str, Any] = {"components": [{**s.__dict__, "state": s.state} for s in statuses]}
    if env is not None:
        shape["env"] = env
    if traffic is not None:
        shape["traffic"] = [{**t.__dict__, "state": t.state} for t in traffic]
    return shape


# -- a stack's rollout ---------------------------------------------------------------------


def status_table(state: RolloutState) -> Table:
    table = Table(title=f"rollout {state.rollout_id} on stack {state.stack}", show_header=False)
    rows: list[tuple[str, Any]] = [
        ("phase", state.phase), ("outcome", state.outcome or "-"),
        ("candidate", state.candidate), ("stable before", state.stable),
        ("step", state.step + 1), ("canary weight", f"{state.weight}%"),
        ("failed checks", failed_of(state.failed_checks, state.threshold or None)),
        ("reason", state.reason or "-"),
    ]
    if state.analyses:
        last = state.analyses[-1]
        rows.append(("last analysis", f"{verdict_word(last['passed'])}: {last['reason']}"))
    if state.step_seconds:
        rows.append(("weight step time", f"{sum(state.step_seconds) / len(state.step_seconds):.1f}s"
                     " average"))
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def brief(reason: str, *, limit: int | None = None) -> str:
    """A reason for a glance: up to its first PromQL query (the report and `rollout status`
    keep it whole), at most `limit` characters."""
    head, cut, _ = reason.partition("; query:")
    text = head + ")" if cut and head.count("(") > head.count(")") else head
    if limit is not None and len(text) > limit:
        return text[:limit - 3] + "..."
    return text


def failed_of(failed: int, threshold: int | None) -> str:
    """"1 of 3": failed checks against the threshold that reverts; the count alone when the
    threshold is not known (a rollout journaled before it was)."""
    return f"{failed} of {threshold}" if threshold else str(failed)


def report_path(state: RolloutState, reports_dir: Path | None) -> Path | None:
    """The rollout's HTML report in `reports_dir` when it was written, else None."""
    if reports_dir is None:
        return None
    path = reports_dir / report_name(state, "html")
    return path.resolve() if path.is_file() else None


def history_table(states: list[RolloutState], *, reports_dir: Path | None = None) -> Table:
    table = Table("id", "started", "version", "stable before", "outcome", "took", "reason",
                  "report")
    for s in states:
        report = report_path(s, reports_dir)
        table.add_row(s.rollout_id, time.strftime("%Y-%m-%d %H:%M", time.localtime(s.started_at)),
                      s.candidate, s.stable, str(s.outcome or "-"),
                      f"{s.updated_at - s.started_at:.0f}s", s.reason[:80],
                      str(report) if report else "-")
    return table


def history_json(states: list[RolloutState], *,
                 reports_dir: Path | None = None) -> list[dict[str, Any]]:
    rows = []
    for s in states:
        report = report_path(s, reports_dir)
        rows.append({"id": s.rollout_id, "version": s.candidate, "stable_before": s.stable,
                     "outcome": str(s.outcome) if s.outcome else None, "reason": s.reason,
                     "started": when(s.started_at), "ended": when(s.updated_at),
                     "duration_seconds": round(s.updated_at - s.started_at, 1),
                     "report": str(report) if report else None})
    return rows


WEIGHT_BAR = 40
RESULT_COLOURS = {"pass": "green", "fail": "red", "inconclusive": "yellow"}


def watch_view(state: RolloutState | None, *, stack: str, where: str,
               now: float | None = None) -> Group:
    """What `rollout status --watch` redraws: phase and step, the weights as a bar, failed
    checks, time left and the next stop, then the last verdict metric by metric."""
    if state is None:
        return Group(f"no rollout has run on stack {stack} yet ({where}); waiting for one")
    snap = snapshot(state, now=time.time() if now is None else now)
    return Group(*_watch_lines(snap, where=where), *_verdict_parts(snap))


def _watch_lines(snap: Snapshot, *, where: str) -> list[str]:
    colour = {"Succeeded": "green", "Failed": "red", "RollingBack": "red"}.get(snap.phase,
                                                                             "cyan")
    steps = f"step {snap.step}/{snap.total_steps}" if snap.total_steps else f"step {snap.step}"
    ended = f" {snap.outcome}" if snap.outcome else ""
    lines = [f"[bold {colour}]{snap.phase}[/]{ended}  {steps}  {escape(snap.candidate)} "
             f"(stable {escape(snap.stable)})",
             escape(f"rollout {snap.rollout_id} on stack {snap.stack} ({where})")]
    canary = round(WEIGHT_BAR * snap.canary_weight / 100)
    lines.append(f"[green]{'█' * (WEIGHT_BAR - canary)}[/green][yellow]{'█' * canary}[/yellow]  "
                 f"primary {snap.primary_weight}% / canary {snap.canary_weight}%")
    lines.append(f"failed checks {failed_of(snap.failed_checks, snap.threshold)}")
    if snap.running:
        lines.append(f"time left     {_time_left(snap)}")
        if snap.waiting:
            lines.append(f"waiting for   [yellow]{escape(snap.waiting)}[/yellow]")
        if snap.next_stop:
            lines.append(f"next stop     {escape(snap.next_stop)}")
    else:
        took = words(snap.updated_at - snap.started_at)
        lines.append(f"ended after   {took}: {escape(brief(snap.reason) or '-')}")
    return lines


def _time_left(snap: Snapshot) -> str:
    if snap.seconds_left is None:
        return "not estimated: Pulumi updates (and a gate, if any) are what is left"
    known = f"~{words(snap.seconds_left)}"
    return f"{known} + open-ended waits (approval, gates)" if snap.open_ended else known


def _verdict_parts(snap: Snapshot) -> list[Any]:
    if snap.verdict is None:
        return ["last verdict  none yet"]
    colour = {"PASS": "green", "FAIL": "red"}.get(snap.verdict, "yellow")
    at = f" at {snap.verdict_weight}%" if snap.verdict_weight is not None else ""
    parts: list[Any] = [f"last verdict  [{colour}]{snap.verdict}[/]{at}: "
                        f"{escape(brief(snap.verdict_reason))}"]
    if snap.metrics:
        table = Table("metric", "canary", "primary", "threshold", "result")
        for row in snap.metrics:
            table.add_row(escape(row.metric), row.canary or "-", row.primary or "-",
                          row.threshold or "-",
                          f"[{RESULT_COLOURS.get(row.result, 'white')}]{row.result}[/]")
        parts.append(table)
    return parts


def status_json(state: RolloutState | None, history: list[RolloutState]) -> dict[str, Any]:
    return {"current": state.to_dict() if state else None,
            "history": [h.to_dict() for h in history]}


# -- the demo ------------------------------------------------------------------------------


def show_demo(out: Console, runs: list[Any], total: float) -> None:
    table = Table("version", "expected", "outcome", "analyses (weight, verdict)", "time",
                  title="demo")
    for r in runs:
        state = r.result.state
        verdicts = " ".join(f"{a['weight']}%{'✓' if a['passed'] else '✗'}"
                            for a in state.analyses)
        colour = "green" if r.as_expected else "red"
        table.add_row(r.version, r.expected, f"[{colour}]{r.result.outcome}[/]", verdicts,
                      f"{r.seconds:.0f}s")
    out.print(table)
    for r in runs:
        out.print(f"[bold]{r.version}[/bold] {r.result.outcome}: {r.result.reason}")
        if r.reports:
            out.print(f"  report: {r.reports.get('html')}")
        if r.reports.get("dashboard"):
            out.print(f"  dashboard: {r.reports['dashboard']}")
    out.print(f"demo finished in {total:.0f}s")


def demo_json(runs: list[Any], total: float, *, ok: bool) -> dict[str, Any]:
    return {"ok": ok, "seconds": round(total, 1), "runs": [
        {"version": r.version, "expected": r.expected, "seconds": round(r.seconds, 1),
         "reports": {k: str(v) for k, v in r.reports.items()}, **r.result.to_dict()}
        for r in runs]}


# -- environments --------------------------------------------------------------------------


def gates_table(check: Any) -> Table:
    table = Table("gate", "", "detail", title=f"release {check.version or '?'} from "
                  f"{check.source} to {check.target}")
    for gate in check.gates:
        mark = "[green]met[/green]" if gate.passed else "[red]NOT MET[/red]"
        fix = f"\n[dim]fix: {gate.fix}[/dim]" if gate.fix and not gate.passed else ""
        table.add_row(gate.name, mark, gate.detail + fix)
    return table


def envs_table(views: list[Any]) -> Table:
    from rollout.core.gates import when

    table = Table("env", "stable", "running", "last rollout", "release into it",
                  title="environments")
    for view in views:
        env = view.env
        last = env.last_rollout
        rollout = (f"{last.candidate} {last.outcome or last.phase} {when(last.updated_at)}"
                   if last else "-")
        running = (env.deployed_image or "-").rsplit(":", 1)[-1] if env.exists else "no stack"
        table.add_row(env.stack, env.stable_version or "-", running, rollout,
                      _release_cell(view))
    return table


def _release_cell(view: Any) -> str:
    check = view.release
    if check is None:
        return "-"
    head = f"{check.version or '?'} from {check.source}"
    if check.up_to_date:
        return f"{head}: up to date"
    if check.ready:
        return f"{head}: [green]ready[/green]"
    return f"{head}: [red]blocked[/red] by " + ", ".join(g.name for g in check.unmet)


# -- backtest and plan ---------------------------------------------------------------------


def show_backtest(out: Console, result: Any, workloads: Any, header: list[str],
                  rows: list[list[str]]) -> None:
    grid = Table(title=f"{result.judge} judge on {workloads.namespace}: "
                 f"canary {workloads.canary} / primary {workloads.primary}")
    for name in header:
        grid.add_column(name, no_wrap=name != "reason", overflow="fold")
    for row in rows:
        grid.add_row(*row)
    out.print(grid)
    colour = "red" if result.rollback else "green"
    out.print(f"[{colour}]{result.summary}[/{colour}]")


def backtest_json(stack: str, result: Any, workloads: Any) -> dict[str, Any]:
    return {"stack": stack, "namespace": workloads.namespace, "canary": workloads.canary,
            "primary": workloads.primary, **result.to_dict()}


def show_plan(out: Console, found: Any) -> None:
    """`found` is a rollout.app.preflight.StackPlan; planning is imported here because it
    loads scipy, which no other view needs."""
    from rollout.app.planning import STEP_UP_SECONDS, TARGET, describe
    from rollout.app.simulated import SIGMA

    plan, workloads = found.plan, found.workloads
    latency = (f"slow (> {plan.slow_request_ms:g} ms) rise" if plan.slow_request_ms
               else "p99 rise")
    table = Table("step", "weight", "pause", "analysis", "canary requests\nper analysis",
                  "identical canary\nrolled back", f"5xx rise caught\n({TARGET:.0%})",
                  f"{latency} caught\n({TARGET:.0%})",
                  title=f"rollout plan for {found.stack}: {plan.judge} judge, rollback at "
                  f"{plan.threshold} failed checks (maxInconclusive {plan.max_inconclusive})")
    for s in plan.steps:
        pause = ("-" if s.pause_seconds is None else "until approve" if not s.pause_seconds
                 else format_duration(s.pause_seconds))
        table.add_row(str(s.number), f"{s.weight}%", pause, format_duration(plan.interval_seconds),
                      f"{s.canary_requests:.3g}", f"{s.false_rollback:.0%}",
                      describe(s.errors, "errors"), describe(s.latency, plan.latency_kind))
    out.print(table)
    traffic = plan.traffic
    say = lambda text: out.print(text, highlight=False)  # noqa: E731
    say(f"canary {workloads.canary} / primary {workloads.primary} in namespace "
        f"{workloads.namespace}")
    say(f"traffic: {traffic.rps:.3g} requests/s ({traffic.rps_source}); base 5xx "
        f"{100 * traffic.base_error_rate:.3g}% ({traffic.base_error_source}); latency lognormal,"
        f" sigma {SIGMA:g}, median {traffic.median_ms:.3g} ms ({traffic.latency_source})")
    pauses = f" + {format_duration(plan.pause_seconds)} of pauses" if plan.pause_seconds else ""
    manual = (f"; {plan.manual_pauses} manual pause(s) wait for `rollout approve` on top"
              if plan.manual_pauses else "")
    ups = len(plan.steps) * STEP_UP_SECONDS
    say(f"duration: {len(plan.steps)} steps x {format_duration(plan.interval_seconds)} = "
        f"{format_duration(plan.analysis_seconds)} of analysis{pauses}; each step also costs a "
        f"`pulumi up` (~{STEP_UP_SECONDS:g} s on the lab): about "
        f"{format_duration(plan.duration_seconds + ups)} for a canary that passes every "
        f"analysis{manual}")
    for warning in plan.warnings:
        say(f"[yellow]warning:[/yellow] {warning}")
    for note in plan.notes:
        say(f"note: {note}")
    say(f"[dim]Each cell: the smallest rise over the primary that the judge rolls back with "
        f"{TARGET:.0%} probability by the end of that step, counting every analysis from step 1 "
        "(a failed or inconclusive analysis holds the step, as the driver does). Monte Carlo on "
        f"the project's judges: {plan.runs} seeded runs per candidate (seed {plan.seed}), so a "
        f"{TARGET:.0%} detection rate is +/-{100 * plan.standard_error:.1f} pp (1 s.e.); "
        f"effects halve from the largest possible, then {_times(plan.bisections, 'bisection')}, "
        "then log-linear interpolation.[/dim]")


def _times(count: int, what: str) -> str:
    return f"no {what}" if count == 0 else f"{count} {what}" + ("s" if count > 1 else "")
