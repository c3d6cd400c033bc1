"""Template parameters and ``${{ name }}`` placeholders.

Substitution is textual, on the string scalars of the already-parsed document, so an argument can never add
YAML structure. The document's own ``parameters`` mapping is left as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from shared.pipeline_definition.fields import NAME, Section
from shared.pipeline_definition.parse import keep_lines
from shared.pipeline_definition.problems import Problems, Where

PARAMETERS = "parameters"
PLACEHOLDER = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)

Declared = dict[str, str | None]
"""Declared parameter names and their default (None: no default, e.g. a non-string value)."""


def declared_parameters(document: Section) -> Declared:
    """The ``parameters`` of a template document; non-string defaults count as undefined (as documented)."""
    section = document.section(PARAMETERS)
    if section is None:
        return {}
    declared: Declared = {}
    for key, default in section.body.items():
        if not isinstance(key, str) or not NAME.fullmatch(key):
            section.problems.invalid(section.where.at(str(key)), "is not a valid parameter name")
            continue
        declared[key] = default if isinstance(default, str) else None
    return declared


def bind(declared: Declared, arguments: Mapping[str, str], undeclared: Callable[[str], None]) -> dict[str, str]:
    """Defaults with the arguments merged over them; ``undeclared`` is told each argument not declared."""
    values = {key: default for key, default in declared.items() if default is not None}
    for key, value in arguments.items():
        if key in declared:
            values[key] = value
        else:
            undeclared(key)
    return values


class Filler:
    """Replaces placeholders in every string of a document, reporting unknown and malformed ones."""

    def __init__(self, values: Mapping[str, str], declared: Declared, problems: Problems) -> None:
        self._values = values
        self._declared = declared
        self._problems = problems

    def document(self, body: Mapping[object, object], where: Where) -> dict[object, object]:
        """A copy of a template document with its placeholders replaced, ``parameters`` left as is (each key
        keeps the line it was written on, as in every mapping copied here)."""
        filled = {
            key: value if key == PARAMETERS else self.value(value, where.at(str(key))) for key, value in body.items()
        }
        return keep_lines(filled, body)

    def value(self, value: object, where: Where) -> object:
        if isinstance(value, str):
            return PLACEHOLDER.sub(lambda match: self._replace(match, where), value)
        if isinstance(value, list):
            return [self.value(entry, where.at(i)) for i, entry in enumerate(value)]
        if isinstance(value, Mapping):
            return keep_lines({key: self.value(entry, where.at(str(key))) for key, entry in value.items()}, value)
        return value

    def _replace(self, match: re.Match[str], where: Where) -> str:
        wanted = match.group(1).strip()
        if not NAME.fullmatch(wanted):
            self._problems.invalid(where, f"malformed template placeholder {match.group(0)!r}")
        elif wanted in self._values:
            return self._values[wanted]
        elif wanted in self._declared:
            self._problems.invalid(where, f"parameter {wanted!r} has no string default and no argument")
        else:
            self._problems.invalid(
                where, f"no value for {match.group(0)!r}: {wanted!r} is not declared under parameters"
            )
        return match.group(0)
