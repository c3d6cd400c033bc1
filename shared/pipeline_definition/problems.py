"""Where a problem is (file, operator, key) and the collection of problems found by one load.

Problems fail the load; ignored keys (:class:`IgnoredKey`) do not, and are only collected, for Create and
Update to name in their answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from shared.errors import ClaretError, ErrorCode
from shared.pipeline_definition.limits import MAX_MESSAGES


@dataclass(frozen=True)
class Where:
    """A location in a definition, written ``file: scope: key`` (e.g. ``a.yaml: operator 'x': input[1].from``)."""

    file: str
    scope: str = ""
    key: str = ""

    def at(self, part: str | int) -> Where:
        """The location of a member (a key of a mapping or an index of a list) of this one."""
        if isinstance(part, int):
            return Where(self.file, self.scope, f"{self.key}[{part}]")
        return Where(self.file, self.scope, f"{self.key}.{part}" if self.key else part)

    def within(self, scope: str) -> Where:
        """The same file and key, inside ``scope`` (e.g. ``operator 'x'``), with the key restarted."""
        return Where(self.file, scope)

    def __str__(self) -> str:
        return ": ".join(part for part in (self.file, self.scope, self.key) if part)


@dataclass(frozen=True)
class IgnoredKey:
    """A key the definition language does not define, kept and ignored: where it was written.

    ``key`` is its path from ``scope`` (``container.variables`` in ``operator 'x'``), or from the document
    when ``scope`` is empty; ``line`` is 1-based, None only for a mapping not parsed from YAML.
    """

    file: str
    line: int | None
    key: str
    scope: str = ""

    @property
    def message(self) -> str:
        """``warning: pipeline.yaml:12: key 'container.variables' of operator 'x' is not part of ...``."""
        place = self.file if self.line is None else f"{self.file}:{self.line}"
        owner = f" of {self.scope}" if self.scope else ""
        unknown = "is not part of the pipeline definition language and is ignored"
        return f"warning: {place}: key {self.key!r}{owner} {unknown}"


class Problems:
    """Problems found so far. Load problems (syntax, types) outrank definition problems (rules).

    Ignored keys are collected beside them and never fail the load.
    """

    def __init__(self) -> None:
        self._found: list[tuple[ErrorCode, str]] = []
        self._ignored: list[IgnoredKey] = []

    def ignored(self, where: Where, line: int | None) -> None:
        """A key at ``where`` (written on ``line``) that the language does not define: kept, not used."""
        self._ignored.append(IgnoredKey(where.file, line, where.key, where.scope))

    @property
    def ignored_keys(self) -> tuple[IgnoredKey, ...]:
        """The ignored keys found so far, in the order they were read."""
        return tuple(self._ignored)

    def malformed(self, where: Where, why: str) -> None:
        """A value of the wrong type or a file that cannot be read: -0x1101."""
        self._found.append((ErrorCode.PIPELINE_LOAD, f"{where}: {why}"))

    def invalid(self, where: Where, why: str) -> None:
        """A rule of the definition language broken: -0x1100."""
        self._found.append((ErrorCode.PIPELINE_DEFINITION, f"{where}: {why}"))

    def __bool__(self) -> bool:
        return bool(self._found)

    def fail(self, code: ErrorCode, where: Where, why: str) -> NoReturn:
        """Stop the load here, reporting this problem after those found before it."""
        self._found.append((code, f"{where}: {why}"))
        self.stop()

    def stop(self) -> NoReturn:
        """Stop the load after a problem that was just recorded (the caller cannot go on without the value)."""
        self.raise_if_any()
        raise AssertionError("stop() called with no problem recorded")

    def raise_if_any(self) -> None:
        """Raise one ClaretError carrying every problem found (one message each), if there is any."""
        if not self._found:
            return
        codes = {code for code, _ in self._found}
        code = ErrorCode.PIPELINE_LOAD if ErrorCode.PIPELINE_LOAD in codes else self._found[0][0]
        messages = [message for _, message in self._found[:MAX_MESSAGES]]
        if len(self._found) > MAX_MESSAGES:
            messages.append(f"... and {len(self._found) - MAX_MESSAGES} more problems")
        raise ClaretError(code, *messages)
