"""One operator declaration (imports applied) to an :class:`Operator`, with the rules local to it.

Rules needing other operators (``from`` references, unique names, the DAG) are in :mod:`links`. A broken
part is reported and replaced by a neutral value, so the rest is still checked; the load fails anyway.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from shared.pipeline_definition import keys
from shared.pipeline_definition.fields import Section
from shared.pipeline_definition.imports import Declaration, Importer
from shared.pipeline_definition.model import (
    DEFAULT_TAG,
    Container,
    Operator,
    OperatorInput,
    OperatorOutput,
    Requests,
    Service,
)
from shared.pipeline_definition.problems import Problems, Where
from shared.pipeline_definition.typed_io import read_typing
from shared.pipeline_definition.versions import TYPED_IO, ApiVersion, read_version

_NO_SPACE = re.compile(r"\S{1,1024}")
MODEL_NAME = re.compile(r"[^\s/\\]{1,255}")
_MIN_PORT, _MAX_PORT = 1024, 65535


@dataclass(frozen=True)
class Draft:
    """A built operator before linking, with what linking needs to report problems in place."""

    operator: Operator
    name_at: Where
    input_at: tuple[Where, ...]


@dataclass(frozen=True)
class OperatorContext:
    """What building an operator needs from the pipeline around it."""

    version: ApiVersion
    max_timeout: int
    importer: Importer
    problems: Problems


def build_operator(declaration: Declaration, index: int, context: OperatorContext) -> Draft:
    """Check one operator declaration and turn it into a draft :class:`Operator`."""
    section = declaration.section(f"operators[{index}]", context.problems)
    name_at = section.at("name")
    name = section.name("name", required=True)
    if name is not None:
        section.where = section.where.within(f"operator {name!r}")
    section.ignore_unknown(keys.OPERATOR)
    version = read_version(section, required=False) or context.version
    inputs = [_read_input(entry, where, version, context.problems) for where, entry in section.items("input")]
    outputs = _read_outputs(section, version)
    _check_paths(
        [(where.at("path"), entry.path) for where, entry in inputs]
        + [(where.at("path"), entry.path) for where, entry in outputs],
        context.problems,
    )
    operator = Operator(
        name=name or f"operators[{index}]",
        description=section.text("description", "") or "",
        container=read_container(section),
        requests=read_requests(section),
        inputs=tuple(entry for _, entry in inputs),
        outputs=tuple(entry for _, entry in outputs),
        variables=section.string_map("variables"),
        services=_read_services(section, declaration, context),
        models=_read_models(section),
        timeout=_read_timeout(section, context.max_timeout),
    )
    return Draft(operator, name_at, tuple(where for where, _ in inputs))


def read_container(section: Section) -> Container:
    """``container``: ``image`` required, ``tag`` defaulting to ``latest``, ``command`` a list of strings."""
    container = section.section("container", required=True)
    if container is None:
        return Container(image="")
    container.ignore_unknown(keys.CONTAINER)
    image = _no_space(container, "image", required=True)
    tag = _no_space(container, "tag") or DEFAULT_TAG
    return Container(image=image or "", tag=tag, command=container.texts("command"))


def _no_space(section: Section, key: str, *, required: bool = False) -> str | None:
    value = section.text(key, required=required)
    if value is not None and not _NO_SPACE.fullmatch(value):
        section.problems.invalid(section.at(key), f"{value!r} must be non-empty, without spaces")
        return None
    return value


def read_requests(section: Section) -> Requests:
    """``requests``: non-negative whole ``cpu``, ``gpu`` and ``memory`` (MB), with the 0.7.4 defaults.

    An explicit 0 for ``cpu`` or ``memory`` means the default, never "unlimited": no definition can opt out of
    the platform's limits. ``gpu: 0`` stays 0 (no GPU, the default anyway).
    """
    requests = section.section("requests")
    if requests is None:
        return Requests()
    requests.ignore_unknown(keys.REQUESTS)
    default = Requests()
    cpu = requests.integer("cpu", default.cpu, minimum=0)
    gpu = requests.integer("gpu", default.gpu, minimum=0)
    memory = requests.integer("memory", default.memory, minimum=0)
    return Requests(
        cpu=cpu or default.cpu,
        gpu=default.gpu if gpu is None else gpu,
        memory=memory or default.memory,
    )


def _read_timeout(section: Section, max_timeout: int) -> int | None:
    timeout = section.integer("timeout", None, minimum=1)
    return None if timeout is None else min(timeout, max_timeout)


def _read_path(section: Section, *, required: bool) -> str | None:
    """A container path: rooted, without NUL and without a ``..`` segment (``/a/../b``, ``/..``), since the
    runtime creates it as a mount point and ``..`` could climb out of the operator's root; ``//`` and a
    trailing ``/`` are harmless and accepted. A refused path is reported and read as None."""
    path = section.text("path", required=required)
    if path is None:
        return None
    if not path.startswith("/"):
        why = "must be rooted (start with '/')"
    elif "\0" in path:
        why = "must not contain a NUL character"
    elif ".." in path.split("/"):
        why = "must not contain a '..' segment"
    else:
        return path
    section.problems.invalid(section.at("path"), f"{path!r} {why}")
    return None


def _read_input(entry: object, where: Where, version: ApiVersion, problems: Problems) -> tuple[Where, OperatorInput]:
    section = Section.of(entry, where, problems)
    if section is None:
        return where, OperatorInput()
    section.ignore_unknown(keys.INPUT)
    typing = read_typing(section, version)
    return where, OperatorInput(
        path=_read_path(section, required=version < TYPED_IO or typing.on_disk),
        from_operator=section.name("from"),
        output_name=section.name("name"),
        type=typing.type,
        element_type=typing.element_type,
        shape=typing.shape,
    )


def _read_outputs(section: Section, version: ApiVersion) -> list[tuple[Where, OperatorOutput]]:
    entries = section.items("output")
    several = len(entries) > 1
    outputs = [_read_output(entry, where, version, section.problems, several) for where, entry in entries]
    _check_unique(section.problems, ((where.at("name"), out.name) for where, out in outputs), "output name")
    return outputs


def _read_output(
    entry: object, where: Where, version: ApiVersion, problems: Problems, several: bool
) -> tuple[Where, OperatorOutput]:
    """An output needs a ``name`` beside others, and when typed: a lone untyped output may stay unnamed even
    at api >= 0.5.0, as the documentation's own 0.6.0 examples do."""
    section = Section.of(entry, where, problems)
    if section is None:
        return where, OperatorOutput()
    section.ignore_unknown(keys.OUTPUT)
    typing = read_typing(section, version)
    return where, OperatorOutput(
        name=section.name("name", required=several or typing.type is not None),
        path=_read_path(section, required=version < TYPED_IO or typing.on_disk),
        type=typing.type,
        element_type=typing.element_type,
        shape=typing.shape,
    )


def _check_paths(paths: Iterable[tuple[Where, str | None]], problems: Problems) -> None:
    """Two mounts at one container path cannot both be honoured (``/out`` and ``/out/`` are one path)."""
    rooted = ((where, posixpath.normpath(path)) for where, path in paths if path and path.startswith("/"))
    _check_unique(problems, rooted, "path", fold=False)


def _check_unique(
    problems: Problems, named: Iterable[tuple[Where, str | None]], what: str, *, fold: bool = True
) -> None:
    """Report each value seen before in ``named`` (names compare case-insensitively, paths exactly)."""
    seen: dict[str, Where] = {}
    for where, value in named:
        if value is None:
            continue
        first = seen.setdefault(value.casefold() if fold else value, where)
        if first is not where:
            problems.invalid(where, f"{what} {value!r} is used twice (also at {first.key})")


def _read_models(section: Section) -> tuple[str, ...]:
    """``models``: a list of ``{name}`` (accepted before api 0.6.0 too, as NVIDIA's own tools do)."""
    names: list[tuple[Where, str]] = []
    for where, entry in section.items("models"):
        model = Section.of(entry, where, section.problems)
        found = model.text("name", required=True) if model is not None else None
        if found is None or model is None:
            continue
        model.ignore_unknown(keys.MODEL)
        if MODEL_NAME.fullmatch(found):
            names.append((where.at("name"), found))
        else:
            section.problems.invalid(model.at("name"), f"{found!r} is not a model name (no spaces or slashes)")
    _check_unique(section.problems, names, "model")
    return tuple(dict.fromkeys(found for _, found in names))


def _read_services(section: Section, declaration: Declaration, context: OperatorContext) -> tuple[Service, ...]:
    built: list[tuple[Where, Service]] = []
    for where, entry in section.items("services"):
        service = context.importer.service(entry, where, declaration.chain)
        if service is not None:
            built.append((where, build_service(service, where, context.problems)))
    _check_unique(context.problems, ((where.at("name"), s.name or None) for where, s in built), "service name")
    connections = (
        (where.at("connections"), name)
        for where, service in built
        for name, _ in (*service.http_connections, *service.volume_connections)
    )
    _check_unique(context.problems, connections, "connection name")
    return tuple(service for _, service in built)


def build_service(declaration: Declaration, where: Where, problems: Problems) -> Service:
    """One service: ``name``, ``container``, ``requests``, ``variables``, ``connections``."""
    section = Section(declaration.body, Where(declaration.home, where.scope, where.key), problems, declaration.origin)
    section.ignore_unknown(keys.SERVICE)
    read_version(section, required=False)
    name = section.name("name", required=True) or ""
    container, requests = read_container(section), read_requests(section)
    variables = section.string_map("variables")
    http, volumes = _read_connections(section)
    return Service(
        name=name,
        container=container,
        requests=requests,
        variables=variables,
        http_connections=http,
        volume_connections=volumes,
    )


Connections = tuple[tuple[tuple[str, int | None], ...], tuple[tuple[str, str], ...]]


def _read_connections(section: Section) -> Connections:
    """``connections``: ``http`` entries (``name``, an environment variable, and an optional ``port``) and
    ``volume`` entries (``name`` and ``path``, where the shared folder is mounted)."""
    connections = section.section("connections")
    if connections is None:
        return (), ()
    connections.ignore_unknown(keys.CONNECTIONS)
    http: list[tuple[str, int | None]] = []
    for entry in _entries(connections, "http", keys.HTTP):
        name = entry.name("name", required=True, env=True)
        port = entry.integer("port", None, minimum=_MIN_PORT, maximum=_MAX_PORT)
        if name is not None:
            http.append((name, port))
    volumes: list[tuple[str, str]] = []
    for entry in _entries(connections, "volume", keys.VOLUME):
        name = entry.name("name", required=True, env=True)
        path = _read_path(entry, required=True)
        if name is not None and path is not None:
            volumes.append((name, path))
    return tuple(http), tuple(volumes)


def _entries(connections: Section, kind: str, known: keys.Keys) -> Iterator[Section]:
    """The mappings listed under ``kind``, each warned of keys outside ``known``."""
    for where, entry in connections.items(kind):
        found = Section.of(entry, where, connections.problems)
        if found is not None:
            found.ignore_unknown(known)
            yield found
