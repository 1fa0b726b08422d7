"""The one duration grammar (rollout/core/durations.py): policies, queries and infra alike."""

from __future__ import annotations

import pytest

from rollout.core.durations import InvalidDuration, format_duration, parse_duration
from rollout.core.errors import InvalidInput
from rollout.core.policy import load_policy

ACCEPTED = [
    ("500ms", 0.5), ("30s", 30), ("1m30s", 90), ("2h", 7200), ("1h30m", 5400), ("1d", 86400),
    ("1w", 7 * 86400), ("1y", 365 * 86400), ("1h0m5s", 3605), ("1m500ms", 60.5), ("0s", 0),
]
METRICS = [{"name": "request-success-rate", "thresholdRange": {"min": 99}}]
REFUSED = ["", "1.5m", "30", "s", "1m1h", "30 s", " 30s", "-1s", "1M", "1h 30m", "1sm", "ms1",
           "1e3s", "30S", "1mm"]


@pytest.mark.parametrize(("text", "seconds"), ACCEPTED)
def test_accepted_durations_and_their_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", REFUSED)
def test_anything_else_is_refused_naming_the_form(text: str) -> None:
    with pytest.raises(InvalidDuration) as err:
        parse_duration(text)
    assert isinstance(err.value, InvalidInput) and isinstance(err.value, ValueError)
    assert "is not a duration" in str(err.value) and "1m30s" in str(err.value.hint)


def test_positive_refuses_zero() -> None:
    with pytest.raises(InvalidDuration, match="longer than zero"):
        parse_duration("0s", positive=True)
    assert parse_duration("1ms", positive=True) == 0.001


@pytest.mark.parametrize(("seconds", "text"), [
    (90, "1m30s"), (30, "30s"), (7200, "2h"), (3605, "1h5s"), (0.25, "250ms"), (10.4, "10s"),
    (0, "1ms"),
])
def test_format_writes_what_parse_reads(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(round(seconds) if seconds >= 0.5 else
                                                 max(seconds, 0.001))


@pytest.mark.parametrize(("field", "key", "value"), [
    ({"gateTimeout": "1.5h"}, "gateTimeout", "1.5h"),
    ({"pauseTimeout": "0.5d"}, "pauseTimeout", "0.5d"),
    ({"stepWeights": [50], "pauses": [{"weight": 50, "duration": "1.5m"}]},
     "pauses[0].duration", "1.5m"),
])
def test_a_fraction_is_refused_in_the_policy_as_in_queries(
        field: dict[str, object], key: str, value: str) -> None:
    # Issue 13: the policy's own parser took `1.5m` while the analysis model refused it.
    with pytest.raises(InvalidInput) as refused:
        load_policy({"interval": "30s", "metrics": METRICS, **field})
    assert (f'demo:analysis.{key} = "{value}": must be a duration: whole numbers '
            "with units in falling order, such as 500ms, 30s, 1m30s") in str(refused.value)
