"""Metric analysis: PromQL templates, measurement through the MetricProvider port, and judges."""

from rollout.analysis.counters import Reading
from rollout.analysis.errors import InvalidQuery, MetricQueryError
from rollout.analysis.judges import ComparativeJudge, SequentialJudge, ThresholdJudge
from rollout.analysis.measuring import count_events, measure, read_counters, sample
from rollout.analysis.memory import JudgeState
from rollout.analysis.providers import MetricProvider, NopProvider
from rollout.analysis.results import (
    Decision,
    EventCounts,
    Measurement,
    MetricVerdict,
    Outcome,
    Verdict,
)
from rollout.analysis.templates import MetricQueries, Workloads, metric_queries, render

__all__ = [
    "ComparativeJudge",
    "Decision",
    "EventCounts",
    "InvalidQuery",
    "JudgeState",
    "Measurement",
    "MetricProvider",
    "MetricQueries",
    "MetricQueryError",
    "MetricVerdict",
    "NopProvider",
    "Outcome",
    "Reading",
    "SequentialJudge",
    "ThresholdJudge",
    "Verdict",
    "Workloads",
    "count_events",
    "measure",
    "metric_queries",
    "read_counters",
    "render",
    "sample",
]
