"""Which judge each configured kind (judge.kind) means: the one place a kind is looked up."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from rollout.analysis.judging import (
    ComparativeWindowJudge,
    Judge,
    SequentialWindowJudge,
    ThresholdWindowJudge,
)
from rollout.core.analysis_model import AnalysisSpec
from rollout.core.errors import InvalidInput

JUDGES: Mapping[str, Callable[[AnalysisSpec], Judge]] = MappingProxyType({
    "threshold": ThresholdWindowJudge,
    "sequential": SequentialWindowJudge,
    "comparative": ComparativeWindowJudge,
})


def judge_for(spec: AnalysisSpec) -> Judge:
    """The judge of `spec.judge.kind`, set up with `spec`; an unknown kind is an error."""
    kind = spec.judge.kind
    factory = JUDGES.get(kind)
    if factory is None:
        raise InvalidInput(
            f"judge.kind {kind!r} is not a known judge; the kinds are "
            f"{', '.join(sorted(JUDGES))}",
            hint="set analysis.judge.kind to one of them",
        )
    return factory(spec)
