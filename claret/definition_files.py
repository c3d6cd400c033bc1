"""The files of a pipeline definition as ``Pipelines.Create`` wants them: the document, then its imports.

The platform resolves ``import: {path: ...}`` against the other files of the same request, so the client
must send them. It finds them the way the platform reads them: in the ``import`` of each operator and of
each operator's ``services`` entry, recursively through imported files, each path relative to the file
that imports it. Paths are sent relative to the pipeline document's folder. Validation stays with the
platform: an import path that is absolute or leaves the folder is not followed, and the platform's
answer names the problem; only a file missing on this machine is reported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml

from claret.errors import ClientError
from shared.pipeline_definition.files import directory, normalise

__all__ = [
    "definition_files",
]


def definition_files(pipeline: Path) -> list[tuple[str, str]]:
    """``(path, content)`` of the pipeline document (first) and of every file it imports, each once."""
    folder = pipeline.parent
    sent: dict[str, tuple[str, str]] = {}
    pending: list[tuple[str, str | None]] = [(pipeline.name, None)]  # (path from folder, importer)
    while pending:
        path, importer = pending.pop(0)
        if path.casefold() in sent:
            continue
        try:
            content = (folder / path).read_text(encoding="utf-8")
        except FileNotFoundError:
            if importer is None:
                raise
            raise ClientError(f"{importer} imports {path!r}, but there is no file {folder / path}") from None
        sent[path.casefold()] = (path, content)
        pending.extend((target, path) for target in _imports(path, content, is_pipeline=importer is None))
    return list(sent.values())


def _imports(path: str, content: str, *, is_pipeline: bool) -> Iterator[str]:
    """Paths (from the pipeline's folder) of the files one document imports; none if it does not parse."""
    try:
        document = yaml.safe_load(content)
    except yaml.YAMLError:
        return  # the platform reports the syntax error with its position
    if not isinstance(document, dict):
        return
    declarations = document.get("operators") if is_pipeline else [document]
    for raw in _declared_imports(declarations):
        if not raw.startswith(("/", "\\")) and (target := normalise(f"{directory(path)}/{raw}")) is not None:
            yield target


def _declared_imports(declarations: object) -> Iterator[str]:
    """``import.path`` of each declaration of a list, and of the ``services`` entries inside them."""
    if not isinstance(declarations, list):
        return
    for declaration in declarations:
        if not isinstance(declaration, dict):
            continue
        spec = declaration.get("import")
        if isinstance(spec, dict) and isinstance(spec.get("path"), str):
            yield spec["path"]
        yield from _declared_imports(declaration.get("services"))
