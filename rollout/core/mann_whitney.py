"""The Mann-Whitney test as the comparative judge runs it, and the sample-size rule built on it.

Written once: the judge compares with `mann_whitney`, and the policy refuses at load a
comparative setup whose intervals can never hold `samples_needed` samples.
scipy is imported where it is used: it costs about 1.5 s at import, which every CLI command
(`status`, `approve`, a refused `run`) paid though only a judging driver needs it.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from rollout.core.analysis_model import Direction

ALTERNATIVE = {"higher-is-worse": "greater", "lower-is-worse": "less", "either": "two-sided"}


def mann_whitney(canary: np.ndarray, primary: np.ndarray, worse: Direction) -> Any:
    """scipy's result (`.statistic`, `.pvalue`) for "the canary is worse", one-sided unless
    `worse` is "either"."""
    from scipy import stats

    return stats.mannwhitneyu(canary, primary, alternative=ALTERNATIVE[worse])


def smallest_p_value(samples: int, worse: Direction) -> float:
    """The smallest p-value Mann-Whitney can give with `samples` values on each side.

    Reached when every canary value is worse than every primary value; computed with the test
    `compare` runs, so the rule cannot drift from the judge.
    """
    if samples < 1:
        return 1.0
    canary = np.arange(samples, 2 * samples, dtype=float)
    primary = np.arange(samples, dtype=float)
    if worse == "lower-is-worse":
        canary, primary = primary, canary
    return float(mann_whitney(canary, primary, worse).pvalue)


@functools.cache
def samples_needed(alpha: float, worse: Direction, *, most: int = 1000) -> int:
    """The fewest samples a side with which `smallest_p_value` is below alpha."""
    return next(n for n in range(1, most + 1) if smallest_p_value(n, worse) < alpha)
