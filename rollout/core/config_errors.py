"""One translator from pydantic's validation errors to Problems, for every config model.

Each problem reads `<key> = <value>: <what is allowed>`: the full key as `pulumi config set
--path` spells it (`demo:analysis.metrics[0].interval`), the offending value as JSON
with every secret masked, and a rule in plain words; a missing key reads `<key> is not set`.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from rollout.core.config_model import DurationField
from rollout.core.durations import FORM, InvalidDuration, parse_duration
from rollout.core.errors import Problem, SettingsError
from rollout.core.redaction import MASK, scrub, secret_name

M = TypeVar("M", bound=BaseModel)

CONFLICT = "config_conflict"
_NONE: Mapping[str, str] = MappingProxyType({})
# Errors raised by the models' own validators: their message is already written for users.
_OWN_MESSAGE = frozenset({"value_error", "assertion_error", CONFLICT})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEQUENCES = (list, tuple, set, frozenset, Sequence)
_MAPS = (dict, Mapping)
_LONGEST_NAME = 60  # of a key shown: a key is user input too, and may be a pasted blob
_DEEPEST = 8  # containers nested deeper are shown as "..."


def conflict(message: str) -> PydanticCustomError:
    """A validator's error shown as written, never replaced by the key's rule."""
    return PydanticCustomError(CONFLICT, message)


def validate_config(
    model: type[M],
    raw: object,
    *,
    key: str,
    rules: Mapping[str, str] = _NONE,
    placeholders: Mapping[str, str] = _NONE,
    hint: str | None = None,
    by_name: bool = True,
) -> M:
    """`raw` validated into `model`, or a SettingsError listing every problem at once.

    `key` is where the model sits in the stack config, e.g. `demo:analysis`, or
    `demo:` for the namespace itself. `by_name=False` refuses snake_case keys.
    """
    data = dict(raw) if isinstance(raw, Mapping) else raw
    try:
        return model.model_validate(data, by_alias=True, by_name=by_name)
    except ValidationError as err:
        problems = config_problems(err, model=model, key=key, rules=rules,
                                   placeholders=placeholders)
        # Not `from err`: its text repeats the input, which may hold a secret.
        raise SettingsError(problems, hint=hint) from None


def config_problems(
    error: ValidationError,
    *,
    model: type[BaseModel],
    key: str,
    rules: Mapping[str, str] = _NONE,
    placeholders: Mapping[str, str] = _NONE,
) -> list[Problem]:
    """Every error of `model` as a Problem naming its full key, its value and what is allowed.

    `rules` are the friendly messages by field path (list indexes and map keys dropped, e.g.
    `sessionAffinity.maxAge`, `env[key]` for a map's keys); a path without one falls back to
    its parent's rule, then to a rule read off the field's type and constraints.
    `placeholders` are what `pulumi config set` hints put for a missing key's value.
    """
    problems: list[Problem] = []
    for item in error.errors(include_url=False):
        if item["type"] == "default_factory_not_called":
            continue  # a consequence of another field's error, reported on its own
        loc = tuple(item["loc"])
        if item["type"] == "invalid_key":  # the key itself is the last part: not a list index
            loc = (*loc[:-1], str(loc[-1])) if loc else loc
        elif loc and item["type"] != "extra_forbidden" and loc[0] in model.model_fields:
            # A default's own validation is reported by field name; users type the alias.
            loc = (model.model_fields[str(loc[0])].alias or loc[0], *loc[1:])
        place = _locate(model, loc)
        full_key = _join(key, place.path)
        value, has_value = _shown(item, place)
        message = _message(item, place, full_key, rules, placeholders)
        problem = Problem(full_key, message, value, has_value)
        if problem not in problems:
            problems.append(problem)
    return problems


# -- where an error is ----------------------------------------------------------------------


@dataclass
class _Place:
    path: str = ""
    fields: list[str] = field(default_factory=list)  # field names only: the key into rules
    names: list[str] = field(default_factory=list)  # every name on the way, map keys too
    annotation: Any = None  # the type expected there; None when unknown (an unknown key, Any)
    metadata: list[Any] = field(default_factory=list)
    siblings: list[str] | None = None  # the keys the enclosing model knows
    is_key: bool = False  # the error is about a map's key rather than its value
    key_annotation: Any = None


def _locate(model: type[BaseModel], loc: tuple[str | int, ...]) -> _Place:
    place = _Place(annotation=model)
    for part in loc:
        if part == "[key]":
            place.is_key = True
            place.annotation, place.metadata = _unwrap(place.key_annotation)
            continue
        kind, _ = _unwrap(place.annotation)
        origin, args = get_origin(kind), get_args(kind)
        if isinstance(part, int):
            place.path += f"[{part}]"
            place.annotation = args[0] if origin in _SEQUENCES and args else None
            place.metadata = []
            continue
        if origin in (Union, UnionType) and part in {_name_of(a) for a in args}:
            place.annotation = next(a for a in args if _name_of(a) == part)
            continue  # pydantic's tag for the member of a union it tried
        place.metadata = []
        if _is_model(kind):
            place.siblings = _aliases(kind)
            known = _fields(kind).get(part)
            place.annotation = known.annotation if known else None
            # Field(ge=..., pattern=...) constraints live on the FieldInfo, not the annotation.
            place.metadata = list(known.metadata) if known else []
            place.fields.append(part)
        elif origin in _MAPS and len(args) == 2:
            place.key_annotation, place.annotation = args
        else:
            place.annotation = None
        place.names.append(part)
        place.path += _step(part, first=not place.path)
    if not place.is_key:
        place.annotation, inner = _unwrap(place.annotation)
        place.metadata = [*place.metadata, *inner]
    return place


def _step(part: str, *, first: bool) -> str:
    if len(part) > _LONGEST_NAME:
        part = part[:_LONGEST_NAME - 3] + "..."
    if _IDENTIFIER.fullmatch(part):
        return part if first else f".{part}"
    return '["' + part.replace('"', '\\"') + '"]'


def _join(key: str, path: str) -> str:
    if not path:
        return key.rstrip(":")
    if key.endswith(":") or path.startswith("["):
        return key + path
    return f"{key}.{path}"


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """The type under Annotated[...] and Optional[...], with the Annotated metadata."""
    metadata: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if hasattr(annotation, "__metadata__"):
            metadata += list(annotation.__metadata__)
            annotation = annotation.__origin__
        elif origin in (Union, UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation, metadata
            annotation = members[0]
        else:
            return annotation, metadata


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    found = {name: info for name, info in model.model_fields.items()}
    found.update({info.alias: info for info in model.model_fields.values() if info.alias})
    return found


def _aliases(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _name_of(kind: Any) -> str:
    return str(getattr(kind, "__name__", kind))


# -- what is shown of the value --------------------------------------------------------------


def _shown(item: ErrorDetails, place: _Place) -> tuple[Any, bool]:
    if item["type"] == "missing":
        return None, False
    value = item["input"]
    if not place.path and isinstance(value, Mapping):
        return None, False  # the whole object: the message names what in it is wrong
    if place.is_key:
        return scrub(str(value)), True
    if any(secret_name(name) for name in place.names):
        return MASK, True
    if item["type"] == "extra_forbidden":
        return _redacted(value, None), True
    return _redacted(value, place.annotation), True


def _redacted(value: Any, annotation: Any, depth: int = 0) -> Any:
    """`value` with what may be a secret masked: the values of credential-like keys, and any
    text not under a known key (an unknown key may be a misspelt credential; Any is unknown)."""
    kind, _ = _unwrap(annotation)
    if depth > _DEEPEST and isinstance(value, Mapping | list | tuple):
        return "..."
    known = kind is not None and kind is not Any and kind is not SecretStr
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value) if known else MASK
    if isinstance(value, Mapping):
        return {str(k): MASK if secret_name(str(k))
                else _redacted(v, _member(kind, str(k), known=known), depth + 1)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        args = get_args(kind)
        item = args[0] if get_origin(kind) in _SEQUENCES and args else (_Known if known else None)
        return [_redacted(v, item, depth + 1) for v in value]
    return scrub(str(value)) if known else MASK


class _Known:
    """The type under a known key that does not describe the value given (a list for a map):
    what is in it was still written for that key, so its text is shown, scrubbed."""


def _member(kind: Any, name: str, *, known: bool) -> Any:
    if _is_model(kind):
        info = _fields(kind).get(name)
        return info.annotation if info else None  # an unknown key
    args = get_args(kind)
    if get_origin(kind) in _MAPS and len(args) == 2:
        return args[1]
    return _Known if known else None


# -- what is allowed -------------------------------------------------------------------------


def _message(item: ErrorDetails, place: _Place, full_key: str, rules: Mapping[str, str],
             placeholders: Mapping[str, str]) -> str:
    kind = item["type"]
    path = ".".join(place.fields)
    if kind == "missing":
        return _missing(place, full_key, _rule(place.fields, rules) or _expected(place),
                        placeholders.get(path, "<value>"))
    if kind == "extra_forbidden":
        return _unknown(place)
    if kind == "invalid_key":
        return "keys must be text: quote this one"
    if place.is_key:
        return rules.get(f"{path}[key]") or "the name " + (_expected(place) or _plain(item))
    if kind in _OWN_MESSAGE:
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, InvalidDuration):
            return _duration(item["input"])
        return _plain(item)
    return (_rule(place.fields, rules) or _duration_rule(place, item["input"])
            or _expected(place) or _plain(item))


def _rule(fields: list[str], rules: Mapping[str, str]) -> str | None:
    for end in range(len(fields), 0, -1):
        if rule := rules.get(".".join(fields[:end])):
            return rule
    return None


def _duration_rule(place: _Place, value: object) -> str | None:
    marked = any(isinstance(m, DurationField) for m in place.metadata)
    return _duration(value) if marked else None


def _duration(value: object) -> str:
    try:
        parse_duration(value)  # type: ignore[arg-type]  # anything a user wrote
    except InvalidDuration:
        return f"must be a duration: {FORM}"
    return f"must be a duration longer than zero: {FORM}"


def _missing(place: _Place, full_key: str, rule: str | None, placeholder: str) -> str:
    text = "is not set"
    _namespace, colon, path = full_key.partition(":")
    if colon and path:
        flag = "--path " if re.search(r"[.\[]", path) else ""
        text += f": run `pulumi config set {flag}{shlex.quote(path)} {placeholder}`"
    return f"{text}; it {rule}" if rule else text


def _unknown(place: _Place) -> str:
    known = place.siblings or []
    if not known:
        return "is not a known setting"
    name = place.names[-1]
    camel = to_camel(name)
    close = [camel] if camel != name and camel in known else difflib.get_close_matches(
        name, known, n=1)
    maybe = f"did you mean {close[0]}? " if close else ""
    return f"is not a known setting; {maybe}known settings: {', '.join(known)}"


def _expected(place: _Place) -> str | None:
    """What the field's type and constraints allow, in words."""
    kind, metadata = place.annotation, place.metadata
    origin = get_origin(kind)
    if kind is bool:
        return "must be true or false"
    if kind is int or kind is float:
        noun = "an integer" if kind is int else "a number"
        return f"must be {noun}{_bounds(metadata)}"
    if origin is Literal:
        choices = [str(a) for a in get_args(kind)]
        return f"must be {choices[0]}" if len(choices) == 1 else (
            "must be one of: " + ", ".join(choices))
    if kind is str or kind is SecretStr:
        return "must be " + _text(metadata)
    if origin in _SEQUENCES:
        least = _constraint(metadata, "min_length")
        return "must be a non-empty list" if least else "must be a list"
    if origin in _MAPS:
        return "must be a map"
    if _is_model(kind):
        return f"must be a map with the settings {', '.join(_aliases(kind))}"
    return None


def _constraint(metadata: list[Any], name: str) -> Any:
    for item in metadata:
        found = getattr(item, name, None)
        if found is not None:
            return found
        inner = getattr(item, "metadata", None)  # pydantic's _PydanticGeneralMetadata
        if isinstance(inner, dict) and inner.get(name) is not None:
            return inner[name]
    return None


def _bounds(metadata: list[Any]) -> str:
    ge, gt = _constraint(metadata, "ge"), _constraint(metadata, "gt")
    le, lt = _constraint(metadata, "le"), _constraint(metadata, "lt")
    if ge is not None and le is not None:
        return f" from {ge:g} to {le:g}"
    parts = [f"{sign} {bound:g}" for sign, bound in ((">=", ge), (">", gt), ("<=", le), ("<", lt))
             if bound is not None]
    return (" " + " and ".join(parts)) if parts else ""


def _text(metadata: list[Any]) -> str:
    pattern = _constraint(metadata, "pattern")
    least = _constraint(metadata, "min_length")
    most = _constraint(metadata, "max_length")
    text = "non-empty text" if least else "text"
    if pattern is not None:
        text += f" matching {pattern}"
    return text + (f", at most {most} characters" if most is not None else "")


_SHOULD = re.compile(r"^(Input|String|List|Dictionary|Tuple|Set|Value|Data|Keys?) should ")


def _plain(item: ErrorDetails) -> str:
    """pydantic's own message in the project's words: `must ...`, no `Value error, ` prefix."""
    message = str(item["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    message = _SHOULD.sub("must ", message).replace(" after validation", "")
    message = re.sub(r", not \d+$", "", message)
    return message.replace("must match pattern '", "must match '")

