"""The files of one definition: path normalisation, import-path resolution, parsing once per file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.errors import ErrorCode
from shared.pipeline_definition.parse import parse_yaml
from shared.pipeline_definition.problems import Problems, Where


@dataclass(frozen=True)
class DefinitionFile:
    """One file of a definition as the client sent it (``path`` like ``pipeline.yaml`` or ``ops/a.yaml``)."""

    path: str
    content: str


def normalise(path: str) -> str | None:
    """``./a//b/../c.yaml`` to ``a/c.yaml`` (``\\`` taken as ``/``); None if empty or it climbs above the root."""
    parts: list[str] = []
    for part in path.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts) or None


def directory(path: str) -> str:
    return path.rpartition("/")[0]


class FileSet:
    """The files sent for one definition, looked up case-insensitively by normalised path.

    ``root`` is the pipeline document (the first file). Each file is parsed at most once.
    """

    def __init__(self, files: Sequence[DefinitionFile], problems: Problems) -> None:
        self._problems = problems
        self._files: dict[str, tuple[str, str]] = {}
        self._parsed: dict[str, object] = {}
        if not files:
            problems.fail(ErrorCode.PIPELINE_LOAD, Where("(definition)"), "no pipeline document was sent")
        for index, file in enumerate(files):
            self._add(index, file)
        problems.raise_if_any()
        self.root = next(iter(self._files.values()))[0]

    @property
    def paths(self) -> tuple[str, ...]:
        """Every file's path, in the order the files were sent (the pipeline document first)."""
        return tuple(path for path, _ in self._files.values())

    def _add(self, index: int, file: object) -> None:
        # Duck-typed so the Create servicer may pass its protobuf messages (same ``path``/``content``).
        raw_path, content = getattr(file, "path", None), getattr(file, "content", None)
        path = normalise(raw_path) if isinstance(raw_path, str) else None
        if path is None:
            self._problems.malformed(Where(f"file[{index}]"), f"{raw_path!r} is not a usable file path")
        elif path.casefold() in self._files:
            self._problems.malformed(Where(path), "the same file was sent twice")
        elif not isinstance(content, str):
            self._problems.malformed(Where(path), "file content is not text")
        else:
            self._files[path.casefold()] = (path, content)

    def resolve(self, importer: str, raw: str, where: Where) -> str | None:
        """The path of the file ``raw`` imported from ``importer`` (relative to its folder), or None."""
        if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":"):
            self._problems.invalid(where, f"import path {raw!r} must be relative to the importing file")
            return None
        folder = directory(importer)
        path = normalise(f"{folder}/{raw}" if folder else raw)
        if path is None:
            self._problems.invalid(where, f"import path {raw!r} leaves the definition's folder")
            return None
        found = self._files.get(path.casefold())
        if found is None:
            self._problems.malformed(where, f"{raw!r} imported by {importer} was not sent (no file {path!r})")
            return None
        return found[0]

    def parse(self, path: str) -> object:
        """The parsed YAML of a file of this set (None for an empty file); stops the load on YAML errors."""
        key = path.casefold()
        if key not in self._parsed:
            self._parsed[key] = parse_yaml(self._files[key][0], self._files[key][1], self._problems)
        return self._parsed[key]
