"""Judges: turn measurements or counts into a Verdict (threshold, comparative, sequential)."""

from rollout.analysis.judges.comparative import ComparativeJudge
from rollout.analysis.judges.sequential import SequentialJudge
from rollout.analysis.judges.threshold import ThresholdJudge

__all__ = ["ComparativeJudge", "SequentialJudge", "ThresholdJudge"]
