"""``import: {path, args}`` declarations: load the imported document, fill its template, apply overrides.

Keys written beside ``import`` replace the imported document's keys whole (no deep merge). Operator
documents are templates (``args`` fill their ``parameters``); service documents are not, so their ``args``
are ignored, as documented. Imported documents may import further, within depth and count limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import ErrorCode
from shared.pipeline_definition import keys, limits
from shared.pipeline_definition.fields import Section, kind_of, text
from shared.pipeline_definition.files import FileSet
from shared.pipeline_definition.parse import keep_lines
from shared.pipeline_definition.problems import Problems, Where
from shared.pipeline_definition.templates import Filler, bind, declared_parameters

IMPORT = "import"


@dataclass(frozen=True)
class Declaration:
    """An operator or service declaration with its imports applied.

    ``origin`` says which file supplied each key; ``home`` is the innermost document (where a missing key
    belongs); ``chain`` the files imported to reach it, for cycle detection and further imports.
    """

    body: Mapping[object, object]
    origin: Mapping[str, str]
    home: str
    chain: tuple[str, ...]

    def section(self, scope: str, problems: Problems) -> Section:
        return Section(self.body, Where(self.home, scope), problems, self.origin)


@dataclass(frozen=True)
class _ImportSpec:
    target: str
    args: dict[str, str]
    args_at: Where


class Importer:
    """Expands the declarations of one definition, counting imports against :data:`limits.MAX_IMPORTS`."""

    def __init__(self, files: FileSet, problems: Problems) -> None:
        self._files = files
        self._problems = problems
        self._count = 0

    def operator(self, entry: object, where: Where, chain: tuple[str, ...]) -> Declaration | None:
        """An entry of ``operators:`` (written at ``where``), imports applied and templates filled."""
        return self._expand(entry, where, chain, templated=True)

    def service(self, entry: object, where: Where, chain: tuple[str, ...]) -> Declaration | None:
        """An entry of an operator's ``services:``, imports applied (services are not templates)."""
        return self._expand(entry, where, chain, templated=False)

    def _expand(self, entry: object, where: Where, chain: tuple[str, ...], *, templated: bool) -> Declaration | None:
        section = Section.of(entry, where, self._problems)
        if section is None:
            return None
        if IMPORT not in section.body:
            origin = {str(key): where.file for key in section.body}
            return Declaration(section.body, origin, where.file, chain)
        spec = self._import_spec(section, chain)
        if spec is None:
            return None
        document = self._document(spec, templated)
        if document is None:
            return None
        inner = self._expand(document, Where(spec.target), (*chain, spec.target), templated=templated)
        if inner is None:
            return None
        overrides = {key: value for key, value in section.body.items() if key != IMPORT}
        origin = {**inner.origin, **{str(key): where.file for key in overrides}}
        body = keep_lines({**inner.body, **overrides}, inner.body, section.body)
        return Declaration(body, origin, inner.home, inner.chain)

    def _import_spec(self, section: Section, chain: tuple[str, ...]) -> _ImportSpec | None:
        spec = section.section(IMPORT)
        if spec is None:
            return None
        spec.ignore_unknown(keys.IMPORT)
        raw_path = spec.text("path", required=True)
        args = self._args(spec)
        if raw_path is None or args is None:
            return None
        target = self._files.resolve(section.where.file, raw_path, spec.at("path"))
        if target is None:
            return None
        folded = [seen.casefold() for seen in chain]
        if target.casefold() in folded:
            cycle = [*chain[folded.index(target.casefold()) :], target]
            self._problems.invalid(spec.at("path"), f"import cycle: {' -> '.join(cycle)}")
            return None
        if len(chain) > limits.MAX_IMPORT_DEPTH:
            self._problems.invalid(spec.at("path"), f"imports nested deeper than {limits.MAX_IMPORT_DEPTH} files")
            return None
        self._count += 1
        if self._count > limits.MAX_IMPORTS:
            self._problems.fail(
                ErrorCode.PIPELINE_DEFINITION, spec.at("path"), f"more than {limits.MAX_IMPORTS} imports"
            )
        return _ImportSpec(target, args, spec.at("args"))

    def _args(self, spec: Section) -> dict[str, str] | None:
        section = spec.section("args")
        if section is None:
            return None
        args: dict[str, str] = {}
        for key, value in section.body.items():
            at = section.where.at(str(key))
            if not isinstance(key, str):
                self._problems.malformed(at, f"argument names must be strings, got {kind_of(key)}")
                continue
            found = text(value, at, self._problems)
            if found is not None:
                args[key] = found
        return args

    def _document(self, spec: _ImportSpec, templated: bool) -> Mapping[object, object] | None:
        raw = self._files.parse(spec.target)
        if not isinstance(raw, Mapping):
            self._problems.malformed(Where(spec.target), f"expected a mapping document, got {kind_of(raw)}")
            return None
        if not templated:
            return raw
        document = Section(raw, Where(spec.target), self._problems)
        declared = declared_parameters(document)

        def undeclared(name: str) -> None:
            self._problems.invalid(spec.args_at.at(name), f"{spec.target} declares no parameter {name!r}")

        values = bind(declared, spec.args, undeclared)
        return Filler(values, declared, self._problems).document(raw, Where(spec.target))
