"""`rollout plan` as text: the schedule with each step's power, then traffic, duration, warnings."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from rollout.app.planning import STEP_UP_SECONDS, TARGET, describe
from rollout.app.preflight import StackPlan
from rollout.app.simulated import SIGMA
from rollout.core.durations import format_duration


def show_plan(out: Console, found: StackPlan) -> None:
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
