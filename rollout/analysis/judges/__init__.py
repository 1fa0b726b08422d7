"""Judges: turn measurements or counts into a Verdict (threshold, comparative, sequential)."""

from .comparative import ComparativeJudge
from .sequential import SequentialJudge
from .threshold import ThresholdJudge

__all__ = ["ComparativeJudge", "SequentialJudge", "ThresholdJudge"]
