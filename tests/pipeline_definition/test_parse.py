"""YAML reading: scalars keep the text they were written as where a string is wanted."""

from __future__ import annotations

from shared.pipeline_definition.parse import SourceFloat, SourceInt, parse_yaml, scalar_text
from shared.pipeline_definition.problems import Problems


def parse(text: str) -> object:
    return parse_yaml("t.yaml", text, Problems())


def test_numbers_remember_their_text() -> None:
    data = parse("a: 18.10\nb: 010\nc: 1e3\nd: 0x1F\ne: 7\n")
    assert isinstance(data, dict)
    assert [scalar_text(data[key]) for key in "abcde"] == ["18.10", "010", "1e3", "0x1F", "7"]
    assert isinstance(data["a"], SourceFloat) and data["a"] == 18.1
    assert isinstance(data["e"], SourceInt) and data["e"] == 7


def test_only_yaml_1_2_booleans() -> None:
    data = parse("a: yes\nb: on\nc: n\nd: true\ne: False\n")
    assert data == {"a": "yes", "b": "on", "c": "n", "d": True, "e": False}
    assert scalar_text(True) == "true"


def test_dates_stay_text() -> None:
    assert parse("a: 2020-01-02\nb: 2001-12-14t21:59:43.10-05:00\n") == {
        "a": "2020-01-02",
        "b": "2001-12-14t21:59:43.10-05:00",
    }


def test_non_scalars_have_no_text() -> None:
    assert scalar_text([1]) is None
    assert scalar_text(None) is None
    assert parse("") is None
