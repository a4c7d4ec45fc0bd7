"""The validation layer every config file and API answer goes through (``agentwatch.schema``)."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated, Literal

import pytest

from agentwatch.schema import After, Before, Field, Model, ValidationError, field_validator, model_validator


class Inner(Model):
    size: int = Field(default=1, ge=1, le=10)


class Tagged(Model):
    kind: Literal["tagged"]
    name: str = Field(min_length=1, max_length=8, pattern=r"^[a-z]+$")


class Other(Model):
    kind: Literal["other"]


def _upper(value: str) -> str:
    if value != value.upper():
        raise ValueError("expected capitals")
    return value


class Sample(Model):
    ratio: float = Field(default=0.5, gt=0, lt=1)
    count: int = 3
    on: bool = True
    mode: Literal["a", "b", "c"] = "a"
    auto: bool | Literal["auto"] = "auto"
    code: Annotated[str, After(_upper)] = "X"
    doubled: Annotated[int, Before(lambda v: int(v[:-1]) * 2 if isinstance(v, str) and v.endswith("x") else v),
                       Field(le=10)] = 2
    pair: tuple[float, float] = (1.0, 2.0)
    items: list[Inner] = Field(default_factory=list, max_length=2)
    things: dict[Annotated[str, Field(pattern=r"^[a-z]+$")], Annotated[Tagged | Other, Field(discriminator="kind")]] = \
        Field(default_factory=dict)
    low: int = 0
    high: int = 5

    @field_validator("count")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("expected an odd count")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Sample:
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


def problems(data: dict) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as info:
        Sample.model_validate(data)
    return [(p.loc, p.msg) for p in info.value.errors()]


def test_defaults_and_lax_scalars_as_yaml_and_flags_give_them():
    s = Sample.model_validate({"ratio": "0.25", "count": 5.0, "on": "yes", "auto": False, "pair": [1, 2],
                               "items": [{"size": 2}], "things": {"x": {"kind": "other"}}})
    assert (s.ratio, s.count, s.on, s.auto, s.pair) == (0.25, 5, True, False, (1.0, 2.0))
    assert s.items == [Inner(size=2)] and s.things == {"x": Other(kind="other")}
    assert Sample() == Sample.model_validate({}) and hash(Inner()) == hash(Inner(size=1))
    assert Sample(doubled="4x").doubled == 8, "Before runs on the raw input, before the type and the bounds"
    assert Sample(auto="auto").auto == "auto"


def test_every_problem_is_found_in_one_pass_with_pydantic_s_wording():
    found = problems({"ratio": 0, "count": 2, "on": "maybe", "mode": "d", "auto": "maybe", "code": "x", "doubled": "6x",
                      "pair": [1, 2, 3], "items": [{}, {"size": 0}, {"size": "big"}], "nope": 1,
                      "things": {"x": {"kind": "tagged", "name": "TOO-LONG-NAME"}, "y": {"kind": "z"}, "Q": {}}})
    assert found == [
        (("nope",), "unknown key"),
        (("ratio",), "Input should be greater than 0"),
        (("count",), "expected an odd count"),
        (("on",), "Input should be a valid boolean, unable to interpret input"),
        (("mode",), "Input should be 'a', 'b' or 'c'"),
        (("auto",), "Input should be a valid boolean or 'auto'"),
        (("code",), "expected capitals"),
        (("doubled",), "Input should be less than or equal to 10"),
        (("pair",), "Tuple should have at most 2 items after validation, not 3"),
        (("items", 1, "size"), "Input should be greater than or equal to 1"),
        (("items", 2, "size"), "Input should be a valid integer, unable to parse string as an integer"),
        (("things", "x", "tagged", "name"), "String should have at most 8 characters"),
        (("things", "y"), "Input tag 'z' found using 'kind' does not match any of the expected tags: "
                          "'tagged', 'other'"),
        (("things", "Q", "[key]"), "String should match pattern '^[a-z]+$'"),
        (("things", "Q"), "Unable to extract tag using discriminator 'kind'"),
    ], "unknown keys first, then the fields in order; one problem per value"


def test_checks_across_fields_run_once_every_field_is_valid():
    assert problems({"low": 9}) == [((), "low must not exceed high")]
    assert problems({"low": 9, "high": "x"}) == [(("high",), "Input should be a valid integer, unable to parse "
                                                               "string as an integer")]


def test_models_are_frozen_and_dump_to_plain_data():
    s = Sample(items=[Inner(size=2)])
    with pytest.raises(AttributeError, match="frozen"):
        s.count = 5  # type: ignore[misc]
    dumped = s.model_dump()
    assert dumped["items"] == [{"size": 2}] and Sample.model_validate(dumped) == s
    assert s.model_copy(update={"count": 7}).count == 7 and s.count == 3


def test_answers_ignore_unknown_keys():
    class Answer(Model, extra="ignore"):
        at: float

    assert Answer.model_validate({"at": 1, "new": "key"}).at == 1.0
    with pytest.raises(ValidationError, match="at: required key is missing"):
        Answer.model_validate({})


def test_the_exporter_does_not_import_pydantic():
    code = "import sys, agentwatch.cli, agentwatch.server; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
