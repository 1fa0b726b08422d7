"""Judges one simulated rollout through the driver's own analysis path, against a Prometheus.

For each interval end t this does what `rollout/app/driver.py::_analyse` does: calls
`MetricAnalysis(spec=spec, provider=provider).analyze(ctx, judge_state, at=t)` with a
`PrometheusProvider`, carries `judge_state` through `json.dumps` / `json.loads` as the journal
does, and adds the verdict to the failed-check tally with `add_check`; the rollout rolls back
when `tally.rolls_back(spec.threshold)`. An inconclusive verdict keeps the rollout running.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from bench.policies import Group, groups, rows
from rollout.adapters.prometheus import PrometheusProvider
from rollout.app.analyzing import MetricAnalysis
from rollout.core.ports import AnalysisContext
from rollout.core.tally import Tally, add_check

# Prometheus gzips an answer when asked to, and requests always asks: on localhost that costs
# Prometheus more CPU than the query itself (1.3 ms of 1.7 ms per query here). Asking for
# identity changes the transport only, never the answer.
HEADERS = {"Accept-Encoding": "identity"}


@dataclass(frozen=True)
class RunTask:
    """One simulated rollout to judge: where its data is and when its intervals end."""

    url: str
    scrape_s: int
    cell: str
    index: int
    namespace: str
    app: str
    start: float
    intervals: int
    interval_s: float
    weight: int
    alpha: float
    slow_ms: float
    shared_answers: bool = True


@dataclass(frozen=True)
class Outcome:
    """What one row's rollout did: the interval it rolled back at (None: it would promote)."""

    rolled_back: int | None = None
    inconclusive: tuple[int, ...] = ()  # intervals whose verdict was inconclusive
    error: str | None = None  # an exception an analyze call raised (the run stops there)
    reason: str = ""  # why it rolled back


def prepare_worker() -> None:
    """For worker processes. requests scans every environment variable for proxy settings on
    every request (a sixth of its cost here), and nothing is proxied on 127.0.0.1; the
    collector need not rescan the imported modules' objects."""
    kept = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    os.environ.clear()
    os.environ.update(kept)
    gc.freeze()


class SharedAnswers:
    """A provider whose repeated questions within one run are answered from the first answer.

    The sequential errors judge asks exactly the request-counter queries that the errors+slow
    judge asks at the same instants; the TSDB is static, so asking twice can only repeat the
    answer. Every method is passed through (a repeated answer is a fresh copy of the first;
    failures are never kept), so the analysis code sees the PrometheusProvider's own answers
    and errors.
    """

    def __init__(self, provider: Any) -> None:
        self._provider = provider
        self._answers: dict[tuple[Any, ...], Any] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._provider, name)
        if not callable(method):
            return method

        def ask(*args: Any, **kwargs: Any) -> Any:
            key = (name, args, tuple(sorted(kwargs.items())))
            try:
                hash(key)
            except TypeError:
                return method(*args, **kwargs)
            kept = self._answers.get(key)
            if kept is not None:
                return pickle.loads(kept)
            answer = method(*args, **kwargs)
            self._answers[key] = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
            return answer

        return ask


def judge_run(task: RunTask) -> tuple[dict[str, Outcome], int]:
    """Every row's outcome on the run, by row name, and how many analyze calls it took."""
    provider: Any = _provider(task.url)
    if task.shared_answers:
        provider = SharedAnswers(provider)
    outcomes: dict[str, Outcome] = {}
    calls = 0
    for group in _groups(task.scrape_s, task.alpha, task.slow_ms):
        found, made = _judge_group(group, task, provider)
        outcomes.update(found)
        calls += made
    return outcomes, calls


def _judge_group(group: Group, task: RunTask, provider: Any) -> tuple[dict[str, Outcome], int]:
    analysis = MetricAnalysis(spec=group.spec, provider=provider)
    state: dict[str, object] = {}
    tallies = {row.name: Tally() for row in group.rows}
    done: dict[str, Outcome] = {}
    inconclusive: list[int] = []
    for k in range(1, task.intervals + 1):
        ctx = AnalysisContext(
            app=task.app, namespace=task.namespace, canary_workload=f"{task.app}-canary",
            primary_workload=f"{task.app}-primary", weight=task.weight, step=k,
            interval_seconds=task.interval_s, canary_share=task.weight / 100,
        )
        at = datetime.fromtimestamp(task.start + k * task.interval_s, UTC)
        try:
            verdict = analysis.analyze(ctx, state, at=at)
        except Exception as exc:  # reported in the table: the run stops, the benchmark goes on
            error = f"interval {k}: {type(exc).__name__}: {exc}"[:600]
            for row in group.rows:
                done.setdefault(row.name, Outcome(error=error, inconclusive=tuple(inconclusive)))
            return done, k
        state = json.loads(json.dumps(verdict.judge_state))
        if verdict.passed is None:
            inconclusive.append(k)
        for row in group.rows:
            if row.name in done:
                continue
            assert row.spec is not None
            tally = add_check(
                tallies[row.name], passed=verdict.passed, failed_checks=verdict.failed_checks,
                final=verdict.final, threshold=row.spec.threshold,
                max_inconclusive=row.spec.max_inconclusive,
            )
            tallies[row.name] = tally
            if tally.rolls_back(row.spec.threshold):
                reason = verdict.reason + (f" ({tally.note})" if tally.note else "")
                done[row.name] = Outcome(
                    rolled_back=k, inconclusive=tuple(inconclusive), reason=reason[:600]
                )
        if len(done) == len(group.rows):
            return done, k
    for row in group.rows:
        done.setdefault(row.name, Outcome(inconclusive=tuple(inconclusive)))
    return done, task.intervals


@cache
def _groups(scrape_s: int, alpha: float, slow_ms: float) -> list[Group]:
    return groups(rows(scrape_s=scrape_s, alpha=alpha, slow_ms=slow_ms))


_PROVIDERS: dict[str, PrometheusProvider] = {}


def _provider(url: str) -> PrometheusProvider:
    """One per worker process and Prometheus, reused by every run (one keep-alive session)."""
    if url not in _PROVIDERS:
        _PROVIDERS[url] = PrometheusProvider(address=url, headers=HEADERS)
    return _PROVIDERS[url]
