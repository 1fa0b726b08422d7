"""Metric analysis: PromQL templates, measurement through the MetricProvider port, and judges."""

from rollout.analysis.counters import Reading
from rollout.analysis.errors import InvalidQuery, MetricQueryError
from rollout.analysis.guards import guarded
from rollout.analysis.judges import ComparativeJudge, SequentialJudge, ThresholdJudge
from rollout.analysis.judging import Judge, Window
from rollout.analysis.measuring import count_events, measure, read_counters, sample
from rollout.analysis.memory import JudgeState
from rollout.analysis.providers import MetricProvider, NopProvider
from rollout.analysis.registry import JUDGES, judge_for
from rollout.analysis.results import (
    Decision,
    EventCounts,
    Measurement,
    MetricOutcome,
    MetricVerdict,
    Verdict,
)
from rollout.analysis.templates import MetricQueries, Workloads, metric_queries, render

__all__ = [
    "JUDGES",
    "ComparativeJudge",
    "Decision",
    "EventCounts",
    "InvalidQuery",
    "Judge",
    "JudgeState",
    "Measurement",
    "MetricOutcome",
    "MetricProvider",
    "MetricQueries",
    "MetricQueryError",
    "MetricVerdict",
    "NopProvider",
    "Reading",
    "SequentialJudge",
    "ThresholdJudge",
    "Verdict",
    "Window",
    "Workloads",
    "count_events",
    "guarded",
    "judge_for",
    "measure",
    "metric_queries",
    "read_counters",
    "render",
    "sample",
]
