"""Covers the judge registry: one judge for every configured kind, an unknown kind refused."""

from __future__ import annotations

from typing import get_args

import pytest

from rollout.analysis import JUDGES, judge_for
from rollout.analysis.judging import (
    ComparativeWindowJudge,
    SequentialWindowJudge,
    ThresholdWindowJudge,
)
from rollout.core.analysis_model import AnalysisSpec, JudgeSpec, parse_analysis
from rollout.core.errors import InvalidInput

GUARD = {"name": "request-success-rate", "thresholdRange": {"min": 99}}
SPECS = {
    "threshold": {"metrics": [GUARD]},
    "sequential": {"judge": {"kind": "sequential"}},
    "comparative": {"interval": "5m", "judge": {"kind": "comparative"},
                    "metrics": [{"name": "request-duration"}]},
}  # fmt: skip
EXPECTED = {
    "threshold": ThresholdWindowJudge,
    "sequential": SequentialWindowJudge,
    "comparative": ComparativeWindowJudge,
}


def test_every_kind_the_config_accepts_has_a_judge() -> None:
    kinds = set(get_args(JudgeSpec.model_fields["kind"].annotation))
    assert set(JUDGES) == kinds == set(SPECS)


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_judge_for_gives_the_kind_s_judge_set_up_with_the_spec(kind: str) -> None:
    spec = parse_analysis(SPECS[kind])
    judge = judge_for(spec)
    assert type(judge) is EXPECTED[kind]
    assert judge == EXPECTED[kind](spec)


def _with_kind(kind: str) -> AnalysisSpec:
    # model_copy skips validation: how a kind the config accepts but no judge handles looks.
    spec = parse_analysis(SPECS["threshold"])
    return spec.model_copy(update={"judge": spec.judge.model_copy(update={"kind": kind})})


def test_an_unknown_kind_is_an_error_naming_the_kinds_never_a_default() -> None:
    with pytest.raises(InvalidInput) as raised:
        judge_for(_with_kind("bayesian"))
    message = raised.value.message
    assert "'bayesian'" in message
    assert message.endswith("the kinds are comparative, sequential, threshold")
