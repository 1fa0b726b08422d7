"""The one pydantic base of the config models users write, and the field types they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from rollout.core.durations import parse_duration


class ConfigModel(BaseModel):
    """Config as written in a stack file: camelCase keys, no unknown key, frozen once read.

    Python (snake_case) names are accepted too, for code that builds models; a loader that
    must refuse them in config validates with by_name=False (see validate_config).
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
    )


@dataclass(frozen=True)
class DurationField:
    """Marks a field as a duration, so that its errors say what a duration looks like."""

    positive: bool


def _duration(text: str) -> str:
    parse_duration(text)  # the project's one grammar; an InvalidDuration (a ValueError) if not
    return text


def _positive_duration(text: str) -> str:
    parse_duration(text, positive=True)
    return text


Duration = Annotated[str, AfterValidator(_duration), DurationField(positive=False)]
PositiveDuration = Annotated[str, AfterValidator(_positive_duration), DurationField(positive=True)]
