"""Typed reads of parsed YAML values, recording a located problem instead of raising.

Convention: a value of the wrong type is a load problem (-0x1101); a value of the right type that breaks a
rule (missing, out of range, bad name) is a definition problem (-0x1100). Readers return None when the value
is unusable, so callers can go on collecting problems.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.pipeline_definition.parse import key_line, scalar_text
from shared.pipeline_definition.problems import Problems, Where

NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


def kind_of(value: object) -> str:
    """A short YAML-ish name of a value's type for messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


def text(value: object, where: Where, problems: Problems) -> str | None:
    """A string; numbers and booleans are taken as the text they were written as."""
    result = scalar_text(value)
    if result is None:
        problems.malformed(where, f"expected a string, got {kind_of(value)}")
    return result


def name(value: object, where: Where, problems: Problems, *, env: bool = False) -> str | None:
    """A name: 1-255 of ``A-Z a-z 0-9 _ -`` (or, with ``env``, a legal environment-variable name)."""
    result = text(value, where, problems)
    if result is None:
        return None
    if (ENV_NAME if env else NAME).fullmatch(result):
        return result
    rule = "a legal environment variable name" if env else "1-255 characters of A-Z, a-z, 0-9, '_' and '-'"
    problems.invalid(where, f"{result!r} is not a valid name: expected {rule}")
    return None


def integer(value: object, where: Where, problems: Problems, *, minimum: int, maximum: int | None = None) -> int | None:
    """A whole number within bounds; whole floats (``2.0``) and decimal strings (``"2"``) are accepted."""
    number = _whole_number(value)
    if number is None:
        if isinstance(value, float) and not isinstance(value, bool):
            problems.invalid(where, f"{scalar_text(value)} is not a whole number")
        else:
            problems.malformed(where, f"expected a whole number, got {kind_of(value)}")
        return None
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        problems.invalid(where, f"{number} is out of range: expected {bounds}")
        return None
    return number


def _whole_number(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]{1,18}\s*", value):
        return int(value)
    return None


def items(value: object, where: Where, problems: Problems) -> list[tuple[Where, object]]:
    """The entries of a list with their locations; absent (null) is an empty list."""
    if value is None:
        return []
    if not isinstance(value, list):
        problems.malformed(where, f"expected a list, got {kind_of(value)}")
        return []
    return [(where.at(i), entry) for i, entry in enumerate(value)]


@dataclass
class Section:
    """A YAML mapping being read, with where each key lives.

    ``origin`` maps keys to the file that supplied them, for declarations assembled from an imported file
    and the importer's overriding keys.
    """

    body: Mapping[object, object]
    where: Where
    problems: Problems
    origin: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, value: object, where: Where, problems: Problems) -> Section | None:
        """A Section over ``value`` if it is a mapping (absent is empty); else a load problem and None."""
        if value is None:
            return cls({}, where, problems)
        if not isinstance(value, Mapping):
            problems.malformed(where, f"expected a mapping, got {kind_of(value)}")
            return None
        return cls(value, where, problems)

    def at(self, key: str) -> Where:
        """Location of ``key``, in the file that supplied it."""
        file = self.origin.get(key, self.where.file)
        return Where(file, self.where.scope, self.where.key).at(key)

    def get(self, key: str) -> object:
        return self.body.get(key)

    def ignore_unknown(self, known: frozenset[str]) -> None:
        """Record each key of this mapping that is not in ``known`` (the language's keys here) as ignored.

        Such keys are accepted as they always were; recording them lets Create name them to the author.
        """
        for key in self.body:
            if key not in known:
                self.problems.ignored(self.at(str(key)), key_line(self.body, key))

    def has(self, key: str) -> bool:
        return self.body.get(key) is not None

    def missing(self, key: str) -> None:
        self.problems.invalid(self.at(key), "is required")

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        if not self.has(key):
            if required:
                self.missing(key)
            return default
        return text(self.get(key), self.at(key), self.problems)

    def name(self, key: str, *, required: bool = False, env: bool = False) -> str | None:
        if not self.has(key):
            if required:
                self.missing(key)
            return None
        return name(self.get(key), self.at(key), self.problems, env=env)

    def integer(self, key: str, default: int | None, *, minimum: int, maximum: int | None = None) -> int | None:
        if not self.has(key):
            return default
        return integer(self.get(key), self.at(key), self.problems, minimum=minimum, maximum=maximum)

    def section(self, key: str, *, required: bool = False) -> Section | None:
        if required and not self.has(key):
            self.missing(key)
            return None
        return Section.of(self.get(key), self.at(key), self.problems)

    def items(self, key: str) -> list[tuple[Where, object]]:
        return items(self.get(key), self.at(key), self.problems)

    def texts(self, key: str) -> tuple[str, ...]:
        """A list of strings (numbers taken as written); unusable entries are reported and dropped."""
        found = (text(entry, where, self.problems) for where, entry in self.items(key))
        return tuple(entry for entry in found if entry is not None)

    def string_map(self, key: str) -> dict[str, str]:
        """A mapping of non-empty string keys to scalar values kept as text (``true``/``false`` for booleans)."""
        section = self.section(key)
        if section is None:
            return {}
        result: dict[str, str] = {}
        for raw_key, raw_value in section.body.items():
            where = section.where.at(str(raw_key))
            if not isinstance(raw_key, str) or not raw_key or "=" in raw_key or "\0" in raw_key:
                self.problems.invalid(where, "keys must be non-empty strings without '=' or NUL")
                continue
            value = text(raw_value, where, self.problems)
            if value is not None:
                result[raw_key] = value
        return result
