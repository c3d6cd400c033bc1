"""``load_pipeline``: definition files (and job arguments) to a validated :class:`Pipeline`.

Order: parse the pipeline document, fill its template, read its keys, expand each operator's imports
(filling the imported templates with their ``args``), build and check each operator, then check the
references between operators and the DAG. Problems are collected and raised together as one ClaretError.
Keys the language does not define are collected too, without failing the load: :func:`load_definition`
returns them beside the pipeline for Create and Update to report; :func:`load_pipeline` (Jobs) drops them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.errors import ClaretError, ErrorCode
from shared.pipeline_definition import keys
from shared.pipeline_definition.fields import Section, kind_of
from shared.pipeline_definition.files import DefinitionFile, FileSet
from shared.pipeline_definition.imports import Importer
from shared.pipeline_definition.limits import MAX_MESSAGES
from shared.pipeline_definition.links import link
from shared.pipeline_definition.model import DEFAULT_TIMEOUT, MAX_TIMEOUT, Operator, Pipeline
from shared.pipeline_definition.operators import OperatorContext, build_operator
from shared.pipeline_definition.problems import IgnoredKey, Problems, Where
from shared.pipeline_definition.templates import Declared, Filler, bind, declared_parameters
from shared.pipeline_definition.versions import ApiVersion, format_version, read_version


@dataclass(frozen=True)
class LoadedDefinition:
    """A loaded pipeline and the keys of its files that the language does not define (kept, ignored)."""

    pipeline: Pipeline
    ignored: tuple[IgnoredKey, ...] = ()

    @property
    def warnings(self) -> tuple[str, ...]:
        """One message per ignored key, by file and line; past :data:`MAX_MESSAGES` only their count, so a
        definition made of unknown keys cannot swell the answer beyond what gRPC carries."""
        shown = tuple(key.message for key in self.ignored[:MAX_MESSAGES])
        hidden = len(self.ignored) - len(shown)
        return (*shown, f"warning: {hidden} more ignored keys are not listed") if hidden else shown


def load_pipeline(
    files: Sequence[DefinitionFile],
    arguments: Mapping[str, str] | None = None,
    *,
    default_timeout: int = DEFAULT_TIMEOUT,
    max_timeout: int = MAX_TIMEOUT,
) -> Pipeline:
    """Load and validate a pipeline definition; raise ClaretError for any problem, and nothing else.

    ``files[0]`` is the pipeline document, the others what it imports. ``arguments`` (a job's Start
    variables) are merged over the document's ``parameters``; one that is not declared there is refused
    with INVALID_VARIABLES. With ``arguments`` None (Create/Update) every placeholder needs a default.
    Codes: PIPELINE_LOAD for unreadable YAML and wrong types, PIPELINE_DEFINITION for broken rules.
    """
    return load_definition(files, arguments, default_timeout=default_timeout, max_timeout=max_timeout).pipeline


def load_definition(
    files: Sequence[DefinitionFile],
    arguments: Mapping[str, str] | None = None,
    *,
    default_timeout: int = DEFAULT_TIMEOUT,
    max_timeout: int = MAX_TIMEOUT,
) -> LoadedDefinition:
    """:func:`load_pipeline`, with the keys it ignored (file, line, key path), for Create and Update."""
    try:
        return _load(files, arguments, default_timeout, max_timeout)
    except ClaretError:
        raise
    except RecursionError:
        raise ClaretError(ErrorCode.PIPELINE_LOAD, f"{_first_path(files)}: the definition nests too deeply") from None
    except Exception as error:  # a defect of ours must still answer as a load error, never escape
        detail = f"{type(error).__name__}: {error}"
        raise ClaretError(
            ErrorCode.PIPELINE_LOAD, f"{_first_path(files)}: unexpected error while loading the definition ({detail})"
        ) from error


def _first_path(files: object) -> str:
    try:
        path = getattr(files[0], "path", None)  # type: ignore[index]
    except Exception:
        path = None
    return path if isinstance(path, str) and path else "(definition)"


def _load(
    files: Sequence[DefinitionFile], arguments: Mapping[str, str] | None, default_timeout: int, max_timeout: int
) -> LoadedDefinition:
    problems = Problems()
    fileset = FileSet(files, problems)
    root = Where(fileset.root)
    raw = fileset.parse(fileset.root)
    if not isinstance(raw, Mapping):
        problems.fail(ErrorCode.PIPELINE_LOAD, root, f"expected a mapping document, got {kind_of(raw)}")
    declared = declared_parameters(Section(raw, root, problems))
    values = _bind_arguments(declared, arguments, root)
    document = Section(Filler(values, declared, problems).document(raw, root), root, problems)
    version = read_version(document, required=True)
    if version is None:
        problems.stop()
    document.ignore_unknown(keys.PIPELINE)
    name = document.name("name", required=True)
    description = document.text("description", "") or ""
    pull_secrets = document.texts("pull-secrets")
    timeout = document.integer("timeout", default_timeout, minimum=1) or default_timeout
    operators = _operators(document, version, max_timeout, Importer(fileset, problems))
    problems.raise_if_any()
    pipeline = Pipeline(
        api_version=format_version(version),
        name=name or "",
        description=description,
        parameters=values,
        operators=operators,
        timeout=min(timeout, max_timeout),
        pull_secrets=pull_secrets,
    )
    return LoadedDefinition(pipeline, _in_file_order(problems.ignored_keys, fileset.paths))


def _in_file_order(ignored: Sequence[IgnoredKey], paths: Sequence[str]) -> tuple[IgnoredKey, ...]:
    """As an author reads them: by file (in the order sent), then by line; a key of a file imported twice
    stays in reading order, so its warnings (one per operator) are next to each other."""
    rank = {path: index for index, path in enumerate(paths)}
    return tuple(sorted(ignored, key=lambda key: (rank.get(key.file, len(rank)), key.line or 0)))


def _bind_arguments(declared: Declared, arguments: Mapping[str, str] | None, root: Where) -> dict[str, str]:
    """Defaults merged with the job's arguments; arguments that are not declared parameters are refused."""
    if arguments is None:
        return bind(declared, {}, lambda _: None)
    refused: list[str] = []
    for key, value in arguments.items():
        if not isinstance(key, str) or not isinstance(value, str):
            refused.append(f"{root}: variable {key!r}: names and values must be strings")
    names = ", ".join(sorted(declared)) or "none"

    def undeclared(key: str) -> None:
        refused.append(f"{root}: variable {key!r} is not a parameter of this pipeline (parameters: {names})")

    values = bind(declared, arguments, undeclared)
    if refused:
        raise ClaretError(ErrorCode.INVALID_VARIABLES, *refused)
    return values


def _operators(document: Section, version: ApiVersion, max_timeout: int, importer: Importer) -> tuple[Operator, ...]:
    problems = document.problems
    if document.get("operators") in (None, []):
        problems.invalid(document.at("operators"), "at least one operator is required")
        return ()
    context = OperatorContext(version, max_timeout, importer, problems)
    chain = (document.where.file,)
    drafts = []
    for index, (where, entry) in enumerate(document.items("operators")):
        declaration = importer.operator(entry, where, chain)
        if declaration is not None:
            drafts.append(build_operator(declaration, index, context))
    return link(drafts, problems, document.at("operators"))


@functools.lru_cache(maxsize=256)
def _load_cached(
    files: tuple[DefinitionFile, ...],
    arguments: frozenset[tuple[str, str]] | None,
    default_timeout: int,
    max_timeout: int,
) -> Pipeline:
    return load_pipeline(
        files, None if arguments is None else dict(arguments), default_timeout=default_timeout, max_timeout=max_timeout
    )


def load_pipeline_cached(
    files: Sequence[DefinitionFile],
    arguments: Mapping[str, str] | None = None,
    *,
    default_timeout: int = DEFAULT_TIMEOUT,
    max_timeout: int = MAX_TIMEOUT,
) -> Pipeline:
    """:func:`load_pipeline`, remembered: jobs of one pipeline load the same files again and again (Create,
    Start, restart recovery). A loaded Pipeline is never modified, so sharing it is safe; errors are not
    remembered (each call raises anew)."""
    frozen = None if arguments is None else frozenset(arguments.items())
    return _load_cached(tuple(files), frozen, default_timeout, max_timeout)
