"""Covers pre-flight power (rollout plan): the pure simulation over the project's own judges,
and the command on a stack read through a fake adapter (no Pulumi, no Prometheus, no changes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from rollout.analysis import MetricQueryError, Workloads, render
from rollout.analysis.templates import DURATION_P99, REQUEST_RATE, SUCCESS_RATE
from rollout.app.api import Rollouts
from rollout.app.planning import Finding, Plan, Traffic, plan
from rollout.app.preflight import observed_traffic
from rollout.app.simulated import histogram_quantile
from rollout.cli import app
from rollout.core.analysis_model import AnalysisSpec, parse_analysis
from rollout.core.errors import InvalidInput
from rollout.core.schedule import Step
from rollout.core.stack_data import ConfigEntry
from tests.unit.fakes import PROJECT, FakeStack, base_config

WORKLOADS = Workloads(namespace="lab", canary="demo-canary", primary="demo-primary")
SUCCESS = {"name": "request-success-rate", "thresholdRange": {"min": 99}}
DURATION = {"name": "request-duration", "thresholdRange": {"max": 500}}
LOOSE_SUCCESS = {"name": "request-success-rate", "thresholdRange": {"min": 50}}


def _spec(judge: dict[str, Any] | None = None, *, metrics: list[dict[str, Any]] | None = None,
          interval: str = "30s", threshold: int = 2) -> AnalysisSpec:
    return parse_analysis({"interval": interval, "threshold": threshold,
                           "metrics": [SUCCESS, DURATION] if metrics is None else metrics,
                           "judge": judge or {"kind": "threshold"}})


def _plan(spec: AnalysisSpec, *, rps: float = 20.0, base: float = 0.0,
          weights: tuple[int, ...] = (10, 20, 30), runs: int = 60, seed: int = 0) -> Plan:
    return plan(spec=spec, steps=[Step(weight=w) for w in weights],
                traffic=Traffic(rps=rps, base_error_rate=base), workloads=WORKLOADS,
                runs=runs, seed=seed)


def _effects(result: Plan, kind: str = "errors") -> list[float]:
    found = [getattr(step, kind) for step in result.steps]
    assert all(f.status == "found" for f in found), found
    return [f.effect for f in found]


def test_detection_grows_with_every_step() -> None:
    errors = _effects(_plan(_spec()))
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0] / 2


def test_detection_grows_with_traffic() -> None:
    spec = _spec({"kind": "sequential"}, metrics=[LOOSE_SUCCESS])
    quiet = _effects(_plan(spec, rps=5, weights=(20, 40)))
    busy = _effects(_plan(spec, rps=100, weights=(20, 40)))
    assert all(b < q / 2 for b, q in zip(busy, quiet, strict=True)), (busy, quiet)


def test_a_higher_threshold_needs_larger_regressions() -> None:
    strict = _plan(_spec(threshold=1))
    lenient = _plan(_spec(threshold=5))
    for kind in ("errors", "latency"):
        pairs = zip(_effects(strict, kind), _effects(lenient, kind), strict=True)
        assert all(s < t for s, t in pairs), (kind, strict.steps, lenient.steps)


def test_the_same_seed_gives_the_same_plan_and_another_seed_may_not() -> None:
    spec = _spec({"kind": "sequential"}, metrics=[LOOSE_SUCCESS])
    first = _plan(spec, base=0.005, weights=(20, 40), runs=30)
    assert first.to_dict() == _plan(spec, base=0.005, weights=(20, 40), runs=30).to_dict()
    assert first.to_dict() != _plan(spec, base=0.005, weights=(20, 40), runs=30,
                                    seed=1).to_dict()


def test_without_traffic_the_sequential_judge_detects_nothing_and_says_so() -> None:
    result = _plan(_spec({"kind": "sequential"}, metrics=[]), rps=0)
    assert all(step.canary_requests == 0 for step in result.steps)
    # No data is never a pass: past maxInconclusive every canary is rolled back, so a good one
    # is as sure to go as a bad one, and no regression can be told apart.
    assert [step.false_rollback for step in result.steps][-1] == 1.0
    assert all(step.errors == Finding("any") for step in result.steps)
    text = " ".join(result.warnings)
    assert "receives no requests at every step" in text
    assert "nothing can be detected" in text
    assert "cannot see latency at all" in text


def test_a_relative_judge_at_100_percent_has_no_primary_to_compare_with() -> None:
    result = _plan(_spec({"kind": "sequential"}, metrics=[]), weights=(50, 100), runs=20)
    assert result.steps[0].errors.status == "found"
    assert result.steps[1].false_rollback == 1.0 and result.steps[1].errors == Finding("any")
    assert any("at 100% the primary serves no requests" in w for w in result.warnings)
    assert any("nothing can be detected from step 2 (100%) on" in w for w in result.warnings)


def test_low_traffic_warns_that_nothing_small_is_caught() -> None:
    result = _plan(_spec({"kind": "sequential"}, metrics=[LOOSE_SUCCESS]), rps=1,
                   weights=(5, 10))
    last = result.steps[-1].errors
    assert last.status == "beyond" or (last.effect or 0) > 10
    assert any("by the last step (10%)" in w and "5xx" in w for w in result.warnings)


def test_the_sequential_judge_with_slow_requests_counts_latency_in_points() -> None:
    result = _plan(_spec({"kind": "sequential", "slowRequestMs": 250}, metrics=[LOOSE_SUCCESS]),
                   rps=50, weights=(10, 30), runs=30)
    assert result.latency_kind == "slow-requests"
    assert result.base_slow_share == pytest.approx(0.0339, abs=0.001)  # P(lognormal > 250 ms)
    slow = _effects(result, "latency")
    assert slow == sorted(slow, reverse=True)


def test_a_slow_request_bound_off_istios_buckets_is_refused() -> None:
    with pytest.raises(InvalidInput, match="slowRequestMs 300 is not a bucket") as caught:
        _plan(_spec({"kind": "sequential", "slowRequestMs": 300}, metrics=[]))
    assert "250" in (caught.value.hint or "")


def test_the_comparative_judge_is_planned_on_its_samples() -> None:
    # 5 samples a side per analysis at the default 30s step: conclusive from the first one.
    spec = _spec({"kind": "comparative"}, interval="2m30s",
                 metrics=[{"name": "request-success-rate"}, {"name": "request-duration"}])
    result = _plan(spec, rps=50, weights=(50,), runs=20)
    assert result.steps[0].false_rollback < 0.2
    assert result.steps[0].latency.status == "found"


def test_heavy_traffic_finds_small_regressions_without_the_judge_overflowing() -> None:
    # 1500 canary requests an interval: a canary failing most of them used to overflow the
    # sequential judge's math.exp, which a live rollout did not survive.
    result = _plan(_spec({"kind": "sequential"}, metrics=[]), rps=100, weights=(50,), runs=20)
    assert result.steps[0].errors.status == "found" and result.steps[0].errors.effect < 5
    assert not [w for w in result.warnings if "Overflow" in w]


@pytest.mark.parametrize(("traffic", "needle"), [
    ({"rps": -1, "base_error_rate": 0}, "--rps"),
    ({"rps": 10, "base_error_rate": 1.5}, "--base-error-rate"),
])
def test_impossible_traffic_is_refused_naming_the_flag(traffic: dict[str, float],
                                                       needle: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Traffic(**traffic)
    assert needle in (caught.value.hint or "")


def test_histogram_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    # 100 requests: 90 up to 100 ms, 9 more up to 250 ms, 1 up to 500 ms (cumulative, +Inf last).
    counts = np.zeros(20)
    counts[6:], counts[7:], counts[8:] = 90, 99, 100
    assert float(histogram_quantile(0.99, counts)) == pytest.approx(250.0)
    assert float(histogram_quantile(0.95, counts)) == pytest.approx(100 + 150 * 5 / 9)
    assert np.isnan(histogram_quantile(0.99, np.zeros(20)))


# -- the command ------------------------------------------------------------------------------


def _stack(monkeypatch: pytest.MonkeyPatch, analysis: dict[str, Any]) -> FakeStack:
    entries = {**base_config(), f"{PROJECT}:namespace": ConfigEntry("lab"),
               f"{PROJECT}:analysis": ConfigEntry(json.dumps(analysis))}

    class Adapter(FakeStack):
        def stack(self, *, create: bool) -> None:
            assert not create, "rollout plan must never create a stack"

    adapter = Adapter(entries=entries)
    monkeypatch.setattr(Rollouts, "adapter", property(lambda self: adapter))
    return adapter


LAB_POLICY = {"interval": "10s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
              "metrics": [SUCCESS, DURATION], "provider": {"kind": "nop"}}


def test_plan_with_rps_prints_the_schedule_and_changes_nothing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    adapter = _stack(monkeypatch, LAB_POLICY)
    before = dict(adapter.entries)
    monkeypatch.setenv("CANARY_JOURNAL_DIR", str(tmp_path))
    args = ["plan", "--stack", "lab", "--rps", "20", "--base-error-rate", "0.5", "--runs", "40"]

    result = CliRunner().invoke(app, [*args, "--output", "json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert [s["weight"] for s in found["steps"]] == [20, 40, 60]
    assert found["canary"] == "demo-canary" and found["judge"] == "threshold"
    assert found["traffic"]["rps_source"] == "from --rps"
    assert found["traffic"]["base_error_rate"] == pytest.approx(0.005)
    assert found["traffic"]["latency_source"].startswith("assumed")
    assert found["duration_seconds"] == 30
    assert found["steps"][0]["canary_requests_per_analysis"] == 40
    assert found["steps"][-1]["errors_pp"]["status"] == "found"

    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0, text.output
    assert "rollout plan for lab" in text.stdout and "3 steps x 10s = 30s" in text.stdout
    assert "pulumi up" in text.stdout and "40 seeded runs" in text.stdout
    assert adapter.ups == [] and adapter.entries == before and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "needle"), [
    (["--rps", "-3"], "--rps -3 is not a request rate"),
    (["--rps", "10", "--base-error-rate", "120"], "is not a percentage"),
    (["--rps", "10", "--runs", "5"], "--runs 5 is out of range"),
    ([], "Prometheus has no requests for demo-primary + demo-canary"),
])
def test_bad_or_missing_traffic_exits_2_with_the_fix(
        monkeypatch: pytest.MonkeyPatch, args: list[str], needle: str) -> None:
    adapter = _stack(monkeypatch, LAB_POLICY)
    result = CliRunner().invoke(app, ["plan", "--stack", "lab", *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "fix:" in result.output
    assert adapter.ups == []


def test_a_bad_policy_or_stack_name_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    _stack(monkeypatch, {**LAB_POLICY, "threshold": 0})
    result = CliRunner().invoke(app, ["plan", "--stack", "lab", "--rps", "20"])
    assert result.exit_code == 2 and "threshold" in result.output

    _stack(monkeypatch, {**LAB_POLICY, "skipAnalysis": True})
    result = CliRunner().invoke(app, ["plan", "--stack", "lab", "--rps", "20"])
    assert result.exit_code == 2 and "skips analysis" in result.output

    result = CliRunner().invoke(app, ["plan", "--stack", "no such/stack!", "--rps", "20"])
    assert result.exit_code == 2 and "not a valid stack name" in result.output


# -- traffic from Prometheus ------------------------------------------------------------------


class _Answers:
    """A provider answering exactly the queries it was given; None: Prometheus is down."""

    def __init__(self, answers: dict[str, list[float]] | None) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def query(self, promql: str, at: object = None) -> list[float]:
        self.asked.append(promql)
        if self.answers is None:
            raise MetricQueryError("could not reach Prometheus", query=promql)
        return self.answers.get(promql, [])


def _query(template: str, target: str) -> str:
    return render(template, namespace="lab", target=target, primary="demo-primary",
                  interval="5m")


def test_traffic_comes_from_prometheus_unless_given() -> None:
    provider = _Answers({
        _query(REQUEST_RATE, "demo-primary"): [18.0], _query(REQUEST_RATE, "demo-canary"): [2.0],
        _query(SUCCESS_RATE, "demo-primary"): [99.5], _query(DURATION_P99, "demo-primary"): [23.0],
    })
    seen = observed_traffic(provider, WORKLOADS, address="http://prom", rps=None,
                            base_error_percent=None)
    assert seen.rps == 20.0 and seen.base_error_rate == pytest.approx(0.005)
    assert seen.p99_ms == 23.0 and seen.median_ms == pytest.approx(23.0 / 3.2, rel=0.01)
    assert "demo-primary + demo-canary" in seen.rps_source
    assert 'rate(istio_requests_total{reporter="destination"' in provider.asked[0]
    given = observed_traffic(provider, WORKLOADS, address="http://prom", rps=5.0,
                             base_error_percent=1.0)
    assert (given.rps, given.base_error_rate, given.rps_source) == (5.0, 0.01, "from --rps")


def test_without_prometheus_the_flags_are_used_and_the_rest_assumed() -> None:
    seen = observed_traffic(_Answers(None), WORKLOADS, address="http://prom", rps=7.0,
                            base_error_percent=None)
    assert seen.rps == 7.0 and seen.base_error_rate == 0.005 and seen.p99_ms is None
    assert "Prometheus at http://prom did not answer" in seen.base_error_source
    with pytest.raises(MetricQueryError) as caught:
        observed_traffic(_Answers(None), WORKLOADS, address="http://prom", rps=None,
                         base_error_percent=None)
    assert caught.value.exit_code == 3 and "--rps" in (caught.value.hint or "")
