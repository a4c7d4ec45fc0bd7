"""Frozen models validated from plain data: the config files, their flags and the insights API answers.

Why not pydantic: the exporter runs beside the agents it watches, and pydantic with its compiled
core cost the exporter process about 10 MB of resident memory (measured import by import). The
models need little of it: strict or ignored unknown keys, lax scalars as YAML and flags give them,
ranges, lengths and patterns, literals, lists, dicts, tuples, nested models, models tagged by a
``kind`` key, and checks on one field or across fields. Messages keep pydantic's wording
("Input should be greater than 0"), which the docs and the tests quote.

A model is a class deriving from ``Model`` with annotated fields; ``Field`` sets a default and
constraints, ``Annotated[T, Field(...), Before(f), After(f)]`` puts them on a type. Constructing a
model validates its keywords exactly like ``model_validate`` validates a mapping, and raises
``ValidationError`` with every problem found (dotted location, message, the input).
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, TypeVar, Union, dataclass_transform

Loc = tuple[str | int, ...]
M = TypeVar("M", bound="Model")

#: Marks "no value given" (a required field, or a problem with no input worth quoting).
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()
#: What a conversion returns after it recorded a problem.
_INVALID: Any = type("_Invalid", (), {"__repr__": lambda self: "<invalid>"})()

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


class Problem(NamedTuple):
    """One thing wrong with the input: where, what was expected, and the value found there."""

    loc: Loc
    msg: str
    #: MISSING for a key that is missing or unknown.
    input: Any = MISSING


class ValidationError(ValueError):
    """Every problem one validation found, in input order."""

    def __init__(self, title: str, problems: list[Problem]) -> None:
        self.problems = problems
        first = problems[0] if problems else Problem((), "no problems")
        super().__init__(f"{len(problems)} problem(s) validating {title}; first: {dotted(first.loc)}: {first.msg}")

    def errors(self) -> list[Problem]:
        return list(self.problems)


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class FieldSpec:
    """A field's default and constraints (made by ``Field``; also valid inside ``Annotated``)."""

    __slots__ = ("default", "default_factory", "discriminator", "ge", "gt", "le", "lt", "max_length",
                 "min_length", "pattern")

    def __init__(self, default: Any = MISSING, default_factory: Callable[[], Any] | None = None, *,
                 gt: float | None = None, ge: float | None = None, lt: float | None = None,
                 le: float | None = None, min_length: int | None = None, max_length: int | None = None,
                 pattern: str | None = None, discriminator: str | None = None) -> None:
        self.default, self.default_factory, self.discriminator = default, default_factory, discriminator
        self.gt, self.ge, self.lt, self.le = gt, ge, lt, le
        self.min_length, self.max_length, self.pattern = min_length, max_length, pattern

    def make_default(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default

    def check(self, value: Any, given: Any, loc: Loc, problems: list[Problem]) -> Any:
        """``value`` (already of the field's type) against the bounds; ``given`` is quoted in problems."""
        message = self._problem(value)
        if message:
            problems.append(Problem(loc, message, given))
            return _INVALID
        return value

    def _problem(self, value: Any) -> str:
        """What ``value`` breaks, in pydantic's words; "" when nothing."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            for bound, ok, words in ((self.gt, lambda b: value > b, "greater than"),
                                     (self.ge, lambda b: value >= b, "greater than or equal to"),
                                     (self.lt, lambda b: value < b, "less than"),
                                     (self.le, lambda b: value <= b, "less than or equal to")):
                if bound is not None and not ok(bound):
                    return f"Input should be {words} {bound}"
            return ""
        if not isinstance(value, str | list | tuple | dict):
            return ""
        n = len(value)
        if isinstance(value, str):
            what, unit, tail = "String", "character", ""
        else:
            what, unit, tail = type(value).__name__.replace("dict", "Dictionary").capitalize(), "item", \
                f" after validation, not {n}"
        if self.min_length is not None and n < self.min_length:
            return f"{what} should have at least {_count(self.min_length, unit)}{tail}"
        if self.max_length is not None and n > self.max_length:
            return f"{what} should have at most {_count(self.max_length, unit)}{tail}"
        if isinstance(value, str) and self.pattern is not None and not re.search(self.pattern, value):
            return f"String should match pattern '{self.pattern}'"
        return ""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def Field(default: Any = MISSING, *, default_factory: Callable[[], Any] | None = None,
          gt: float | None = None, ge: float | None = None, lt: float | None = None, le: float | None = None,
          min_length: int | None = None, max_length: int | None = None, pattern: str | None = None,
          discriminator: str | None = None) -> Any:
    """A field's default and constraints, as pydantic's ``Field`` spells them."""
    return FieldSpec(default, default_factory, gt=gt, ge=ge, lt=lt, le=le, min_length=min_length,
                     max_length=max_length, pattern=pattern, discriminator=discriminator)


class Before(NamedTuple):
    """In ``Annotated``: a function applied to the raw input before the type conversion."""

    func: Callable[[Any], Any]


class After(NamedTuple):
    """In ``Annotated``: a check applied after the conversion and the constraints (ValueError = problem)."""

    func: Callable[[Any], Any]


class _FieldCheck(NamedTuple):
    names: tuple[str, ...]
    func: Any


class _ModelCheck(NamedTuple):
    func: Callable[[Any], Any]


def field_validator(*names: str) -> Callable[[Any], Any]:
    """Check (and maybe normalise) fields after their conversion; ``"*"`` means every field.

    Decorates a classmethod ``(cls, value)`` or wraps a plain function ``(value)``; it returns the
    value to keep, or raises ValueError with the message to show.
    """
    return lambda func: _FieldCheck(names, func)


def model_validator(*, mode: Literal["after"]) -> Callable[[Any], Any]:
    """Check a model across its fields once each field is valid; raises ValueError with the message."""
    return lambda func: _ModelCheck(func)


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(Field,))
class Model:
    """Base of the validated models: frozen, compared and dumped by field values.

    ``extra`` is a class keyword: "forbid" (the default) makes an unknown key a problem, "ignore"
    drops it (API answers, where a newer server may add keys).
    """

    model_fields: ClassVar[dict[str, FieldSpec]] = {}
    _extra: ClassVar[str] = "forbid"
    _field_checks: ClassVar[tuple[_FieldCheck, ...]] = ()
    _model_checks: ClassVar[tuple[_ModelCheck, ...]] = ()
    _hints: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(cls, *, extra: Literal["forbid", "ignore"] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if extra is not None:
            cls._extra = extra
        fields = dict(cls.model_fields)
        for name, annotation in inspect.get_annotations(cls).items():
            if name.startswith("_") or str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            value = cls.__dict__.get(name, MISSING)
            fields[name] = value if isinstance(value, FieldSpec) else FieldSpec(value)
        cls.model_fields = fields
        field_checks, model_checks = list(cls._field_checks), list(cls._model_checks)
        for value in list(cls.__dict__.values()):
            if isinstance(value, _FieldCheck):
                field_checks.append(value)
            elif isinstance(value, _ModelCheck):
                model_checks.append(value)
        cls._field_checks, cls._model_checks = tuple(field_checks), tuple(model_checks)
        cls._hints = None

    def __init__(self, **data: Any) -> None:
        problems: list[Problem] = []
        if not self._fill(data, (), problems):
            raise ValidationError(type(self).__name__, problems)

    @classmethod
    def model_validate(cls: type[M], data: Any) -> M:
        """``data`` (a mapping) as this model; every problem found is in the ValidationError raised."""
        problems: list[Problem] = []
        value = validate_model(cls, data, (), problems)
        if value is _INVALID:
            raise ValidationError(cls.__name__, problems)
        return typing.cast(M, value)

    def model_dump(self) -> dict[str, Any]:
        """The field values as plain data (nested models as dicts), in field order."""
        return {name: _dump(getattr(self, name)) for name in self.model_fields}

    def model_copy(self: M, *, update: Mapping[str, Any] | None = None) -> M:
        """A copy with some fields replaced, not validated (as pydantic's ``model_copy``)."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__, **(update or {}))
        return copy

    def _fill(self, data: Any, loc: Loc, problems: list[Problem]) -> bool:
        cls = type(self)
        if not isinstance(data, Mapping):
            problems.append(Problem(loc, f"Input should be a valid dictionary or instance of {cls.__name__}", data))
            return False
        start, hints, values = len(problems), cls._types(), {}
        if cls._extra == "forbid":
            problems.extend(Problem((*loc, key), "unknown key")
                            for key in data if key not in cls.model_fields)
        for name, spec in cls.model_fields.items():
            if name not in data:
                if spec.default is MISSING and spec.default_factory is None:
                    problems.append(Problem((*loc, name), "required key is missing"))
                else:
                    values[name] = spec.make_default()
                continue
            where = (*loc, name)
            value = convert(hints[name], data[name], where, problems, spec)
            for check in cls._field_checks:
                if value is not _INVALID and (name in check.names or "*" in check.names):
                    value = _run_check(check.func, cls, value, where, problems)
            values[name] = value
        if len(problems) > start:
            return False
        self.__dict__.update(values)
        for model_check in cls._model_checks:
            try:
                model_check.func(self)
            except ValueError as exc:
                problems.append(Problem(loc, str(exc), dict(data)))
                return False
        return True

    @classmethod
    def _types(cls) -> dict[str, Any]:
        if cls.__dict__.get("_hints") is None:
            cls._hints = typing.get_type_hints(cls, include_extras=True)
        return typing.cast(dict[str, Any], cls._hints)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.model_fields)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name} cannot be set")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name} cannot be deleted")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.model_fields)})"


def _run_check(func: Any, cls: type, value: Any, loc: Loc, problems: list[Problem]) -> Any:
    try:
        return func.__func__(cls, value) if isinstance(func, classmethod) else func(value)
    except ValueError as exc:
        problems.append(Problem(loc, str(exc), value))
        return _INVALID


def _dump(value: Any) -> Any:
    if isinstance(value, Model):
        return value.model_dump()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def validate_model(cls: type[Model], data: Any, loc: Loc, problems: list[Problem]) -> Any:
    """``data`` as an instance of ``cls``, or _INVALID with the problems recorded."""
    if isinstance(data, cls):
        return data
    obj = object.__new__(cls)
    return obj if obj._fill(data, loc, problems) else _INVALID


def convert(tp: Any, value: Any, loc: Loc, problems: list[Problem], spec: FieldSpec | None = None) -> Any:
    """``value`` as type ``tp`` (then checked against ``spec``), or _INVALID with the problems recorded."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        given = value
        for item in meta:
            if isinstance(item, Before):
                value = _run_check(item.func, object, given, loc, problems)
                if value is _INVALID:
                    return _INVALID
        inner = [item for item in meta if isinstance(item, FieldSpec)]
        tagged = next((s for s in (*inner, spec) if s is not None and s.discriminator), None)
        value = convert(base, value, loc, problems, tagged)
        for s in inner:
            if value is not _INVALID:
                value = s.check(value, given, loc, problems)
        for item in meta:
            if isinstance(item, After) and value is not _INVALID:
                value = _run_check(item.func, object, value, loc, problems)
        if value is not _INVALID and spec is not None:
            value = spec.check(value, given, loc, problems)
        return value
    value_out = _convert_plain(tp, origin, value, loc, problems, spec)
    if value_out is not _INVALID and spec is not None:
        return spec.check(value_out, value, loc, problems)
    return value_out


def _convert_plain(tp: Any, origin: Any, value: Any, loc: Loc, problems: list[Problem],
                   spec: FieldSpec | None) -> Any:
    if origin in (Union, types.UnionType):
        return _union(typing.get_args(tp), value, loc, problems, spec.discriminator if spec else None)
    if origin is Literal:
        return _literal(typing.get_args(tp), value, loc, problems)
    if origin is list:
        if not isinstance(value, list | tuple):
            problems.append(Problem(loc, "Input should be a valid list", value))
            return _INVALID
        (item_type,) = typing.get_args(tp)
        items = [convert(item_type, item, (*loc, i), problems) for i, item in enumerate(value)]
        return _INVALID if any(v is _INVALID for v in items) else items
    if origin is tuple:
        return _tuple(typing.get_args(tp), value, loc, problems)
    if origin is dict:
        return _dict(typing.get_args(tp), value, loc, problems)
    if isinstance(tp, type) and issubclass(tp, Model):
        return validate_model(tp, value, loc, problems)
    scalar = _SCALARS.get(tp)
    if scalar is not None:
        result, message = scalar(value)
        if message:
            problems.append(Problem(loc, message, value))
            return _INVALID
        return result
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        problems.append(Problem(loc, "Input should be None", value))
        return _INVALID
    raise TypeError(f"schema: no conversion to {tp!r}")


def _union(members: tuple[Any, ...], value: Any, loc: Loc, problems: list[Problem], tag: str | None) -> Any:
    if value is None and type(None) in members:
        return None
    members = tuple(m for m in members if m is not type(None))
    if tag is not None:
        return _tagged(members, tag, value, loc, problems)
    if len(members) == 1:
        return convert(members[0], value, loc, problems)
    messages: list[str] = []
    for member in members:
        tried: list[Problem] = []
        result = convert(member, value, loc, tried)
        if result is not _INVALID:
            return result
        # "a valid boolean, unable to interpret input" -> "a valid boolean": the choices, not the details
        messages += [re.sub(r", (unable|got) .*", "", p.msg.removeprefix("Input should be ")) for p in tried
                     if p.loc == loc]
    problems.append(Problem(loc, "Input should be " + " or ".join(dict.fromkeys(messages)), value))
    return _INVALID


def _tagged(members: tuple[Any, ...], tag: str, value: Any, loc: Loc, problems: list[Problem]) -> Any:
    """A model picked by the value of its ``tag`` key (a Literal on each member)."""
    by_tag = {typing.get_args(m._types()[tag])[0]: m for m in members}
    if not isinstance(value, Mapping) or tag not in value:
        problems.append(Problem(loc, f"Unable to extract tag using discriminator '{tag}'", value))
        return _INVALID
    model = by_tag.get(value[tag])
    if model is None:
        expected = ", ".join(f"'{t}'" for t in by_tag)
        problems.append(Problem(loc, f"Input tag {value[tag]!r} found using '{tag}' does not match any of the "
                                     f"expected tags: {expected}", value))
        return _INVALID
    return validate_model(model, value, (*loc, value[tag]), problems)


def _literal(choices: tuple[Any, ...], value: Any, loc: Loc, problems: list[Problem]) -> Any:
    for choice in choices:
        if type(value) is type(choice) and value == choice:
            return choice
    shown = [repr(c) for c in choices]
    words = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    problems.append(Problem(loc, f"Input should be {words}", value))
    return _INVALID


def _tuple(args: tuple[Any, ...], value: Any, loc: Loc, problems: list[Problem]) -> Any:
    if not isinstance(value, list | tuple):
        problems.append(Problem(loc, "Input should be a valid tuple", value))
        return _INVALID
    if len(args) == 2 and args[1] is Ellipsis:
        args = (args[0],) * len(value)
    elif len(value) != len(args):
        side = "most" if len(value) > len(args) else "least"
        problems.append(Problem(loc, f"Tuple should have at {side} {_count(len(args), 'item')} after validation, "
                                     f"not {len(value)}", value))
        return _INVALID
    items = tuple(convert(t, item, (*loc, i), problems) for i, (t, item) in enumerate(zip(args, value, strict=True)))
    return _INVALID if any(v is _INVALID for v in items) else items


def _dict(args: tuple[Any, ...], value: Any, loc: Loc, problems: list[Problem]) -> Any:
    if not isinstance(value, Mapping):
        problems.append(Problem(loc, "Input should be a valid dictionary", value))
        return _INVALID
    key_type, value_type = args
    out = {}
    for key, item in value.items():
        k = convert(key_type, key, (*loc, str(key), "[key]"), problems)
        out[k] = convert(value_type, item, (*loc, str(key)), problems)
    return _INVALID if any(v is _INVALID for v in (*out, *out.values())) else out


# --- scalars, lax as pydantic's Python mode: YAML and flags give numbers, booleans and strings --


def _bool(value: Any) -> tuple[Any, str]:
    if isinstance(value, bool):
        return value, ""
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value), ""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE, ""
        return None, "Input should be a valid boolean, unable to interpret input"
    if isinstance(value, int | float):
        return None, "Input should be a valid boolean, unable to interpret input"
    return None, "Input should be a valid boolean"


def _int(value: Any) -> tuple[Any, str]:
    if isinstance(value, int):
        return int(value), ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, "Input should be a finite number"
        if not value.is_integer():
            return None, "Input should be a valid integer, got a number with a fractional part"
        return int(value), ""
    if isinstance(value, str):
        try:
            return int(value.strip()), ""
        except ValueError:
            return None, "Input should be a valid integer, unable to parse string as an integer"
    return None, "Input should be a valid integer"


def _float(value: Any) -> tuple[Any, str]:
    if isinstance(value, int | float):
        return float(value), ""
    if isinstance(value, str):
        try:
            return float(value.strip()), ""
        except ValueError:
            return None, "Input should be a valid number, unable to parse string as a number"
    return None, "Input should be a valid number"


def _str(value: Any) -> tuple[Any, str]:
    if isinstance(value, str):
        return value, ""
    return None, "Input should be a valid string"


_SCALARS: dict[Any, Callable[[Any], tuple[Any, str]]] = {bool: _bool, int: _int, float: _float, str: _str}
