"""What a judge carries from one interval to the next, journaled so a resume continues it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rollout.analysis.counters import Reading
from rollout.analysis.results import EventCounts

# Comparative samples kept per side and metric: about two hours at a 30 s judge step.
MAX_SAMPLES = 240


@dataclass(frozen=True)
class Samples:
    """One metric's comparative samples so far, oldest first."""

    canary: tuple[float, ...] = ()
    primary: tuple[float, ...] = ()

    def plus(self, canary: Sequence[float], primary: Sequence[float]) -> Samples:
        return Samples(
            canary=(*self.canary, *canary)[-MAX_SAMPLES:],
            primary=(*self.primary, *primary)[-MAX_SAMPLES:],
        )


@dataclass(frozen=True)
class JudgeState:
    """The sequential judge's counts per test and its last counter readings; the comparative
    judge's samples and the end of the last sampled step."""

    history: Mapping[str, tuple[EventCounts, ...]] = field(default_factory=dict)
    canary: Reading | None = None
    primary: Reading | None = None
    samples: Mapping[str, Samples] = field(default_factory=dict)
    sampled_from: float | None = None
    sampled_until: float | None = None

    def with_counts(self, kind: str, counts: EventCounts) -> JudgeState:
        history = dict(self.history)
        history[kind] = (*history.get(kind, ()), counts)
        return replace(self, history=history)

    def with_readings(self, canary: Reading, primary: Reading) -> JudgeState:
        return replace(self, canary=canary, primary=primary)

    def with_samples(
        self, found: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, start: float,
        until: float,
    ) -> JudgeState:
        samples = dict(self.samples)
        for metric, (canary, primary) in found.items():
            samples[metric] = samples.get(metric, Samples()).plus(canary, primary)
        first = self.sampled_from if self.sampled_from is not None else start
        return replace(self, samples=samples, sampled_from=first, sampled_until=until)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "history": {k: [c.to_dict() for c in counts] for k, counts in self.history.items()}
        }
        if self.canary is not None and self.primary is not None:
            data["readings"] = {"canary": self.canary.to_dict(),
                                "primary": self.primary.to_dict()}
        if self.samples:
            data["samples"] = {m: {"canary": list(s.canary), "primary": list(s.primary)}
                               for m, s in self.samples.items()}
            data["sampled"] = [self.sampled_from, self.sampled_until]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JudgeState:
        if not data:
            return cls()
        if "history" not in data and set(data) <= {"errors", "slow-requests"}:
            data = {"history": data}  # journaled before readings were kept
        readings = data.get("readings") or {}
        sampled = data.get("sampled") or [None, None]
        return cls(
            history={
                kind: tuple(EventCounts.from_dict(c) for c in counts)
                for kind, counts in (data.get("history") or {}).items()
            },
            canary=Reading.from_dict(readings["canary"]) if "canary" in readings else None,
            primary=Reading.from_dict(readings["primary"]) if "primary" in readings else None,
            samples={
                metric: Samples(tuple(s["canary"]), tuple(s["primary"]))
                for metric, s in (data.get("samples") or {}).items()
            },
            sampled_from=sampled[0],
            sampled_until=sampled[1],
        )
