"""Plain records the stack adapter returns (no Pulumi import, so fakes can use them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigEntry:
    value: str
    secret: bool = False


@dataclass(frozen=True)
class UpSummary:
    result: str
    changes: dict[str, int]
    seconds: float
