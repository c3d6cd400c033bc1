"""YAML text to plain Python data, safely and with the scalar text kept for numbers.

* PyYAML's safe constructor only (no object construction), with bounds on file size, nesting, aliases and the
  alias-expanded node count, and recursive aliases refused, so hostile documents fail fast.
* Booleans follow YAML 1.2 (only ``true``/``false``): ``on``, ``yes``, ``n`` stay strings.
* Dates stay strings, and numbers remember their source text (``tag: 18.10`` is the string ``18.10``
  where a string is wanted, not ``18.1``); see :func:`scalar_text`.
* Mappings remember the line of each key (:class:`ParsedMapping`), so warnings can say where a key is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Protocol

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import Event
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from shared.errors import ErrorCode
from shared.pipeline_definition import limits
from shared.pipeline_definition.problems import Problems, Where

_BOOL_TAG = "tag:yaml.org,2002:bool"


class SourceInt(int):
    """An int parsed from YAML, with the text it was written as."""

    source: str


class SourceFloat(float):
    """A float parsed from YAML, with the text it was written as."""

    source: str


def scalar_text(value: object) -> str | None:
    """The text of a scalar as the author wrote it (booleans as ``true``/``false``); None for non-scalars."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, SourceInt | SourceFloat):
        return value.source
    if isinstance(value, str | int | float):
        return str(value)
    return None


class ParsedMapping(dict[object, object]):
    """A mapping parsed from YAML, with the line (1-based) each of its keys was written on."""

    __slots__ = ("key_lines",)

    def __init__(
        self, items: Mapping[object, object] | None = None, key_lines: Mapping[object, int] | None = None
    ) -> None:
        super().__init__(items or {})
        self.key_lines: dict[object, int] = dict(key_lines or {})


def key_line(mapping: Mapping[object, object], key: object) -> int | None:
    """The line ``key`` of ``mapping`` was written on; None when the mapping was not parsed from YAML."""
    return mapping.key_lines.get(key) if isinstance(mapping, ParsedMapping) else None


def keep_lines(items: Mapping[object, object], *sources: Mapping[object, object]) -> ParsedMapping:
    """``items`` (a copy or a merge of ``sources``) with each key's line from the last source that has it.

    Template filling and import overrides build new mappings; this keeps the lines the author wrote.
    """
    lines = {
        key: line
        for source in sources
        if isinstance(source, ParsedMapping)
        for key, line in source.key_lines.items()
        if key in items
    }
    return ParsedMapping(items, lines)


class _LimitExceeded(yaml.YAMLError):
    """A bound of :mod:`limits` was crossed while composing."""


class _EventSource(Protocol):
    def check_event(self, *choices: type[Event]) -> bool: ...
    def peek_event(self) -> Event | None: ...
    def get_event(self) -> Event | None: ...
    def dispose(self) -> None: ...


def _events(stream: str) -> _EventSource:
    """libyaml's scanner and parser when available (several times faster), else PyYAML's own."""
    try:
        from yaml._yaml import CParser
    except ImportError:  # pragma: no cover - PyYAML built without libyaml
        return yaml.SafeLoader(stream)  # used only as an event source
    return CParser(stream)


class _GuardedLoader(Composer, SafeConstructor, Resolver):
    """PyYAML's composer (so aliases and nesting are counted as nodes are built) over a parser's events.

    libyaml's own composer is not used: it recurses in C with no depth bound.
    """

    def __init__(self, stream: str) -> None:
        self._source = _events(stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._aliases = 0
        self._depth = 0

    def check_event(self, *choices: type[Event]) -> bool:
        return self._source.check_event(*choices)

    def peek_event(self) -> Event | None:
        return self._source.peek_event()

    def get_event(self) -> Event | None:
        return self._source.get_event()

    def dispose(self) -> None:
        self._source.dispose()

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > limits.MAX_ALIASES:
                raise _LimitExceeded(f"more than {limits.MAX_ALIASES} aliases")
        self._depth += 1
        try:
            if self._depth > limits.MAX_NESTING:
                raise _LimitExceeded(f"nested deeper than {limits.MAX_NESTING} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_int(loader: SafeConstructor, node: ScalarNode) -> SourceInt:
    value = SourceInt(loader.construct_yaml_int(node))
    value.source = str(node.value)
    return value


def _construct_float(loader: SafeConstructor, node: ScalarNode) -> SourceFloat:
    value = SourceFloat(loader.construct_yaml_float(node))
    value.source = str(node.value)
    return value


def _construct_text(loader: SafeConstructor, node: ScalarNode) -> str:
    return str(node.value)


def _construct_mapping(loader: SafeConstructor, node: MappingNode) -> Iterator[ParsedMapping]:
    """PyYAML's two-step construction (the empty mapping first, for aliases), keeping each key's line."""
    mapping = ParsedMapping()
    yield mapping
    mapping.update(loader.construct_mapping(node))
    # construct_mapping has flattened ``<<`` merges into node.value, merged keys first, so a key written in
    # the mapping itself keeps its own line over the merged one (as its value wins too).
    mapping.key_lines = {loader.construct_object(key): key.start_mark.line + 1 for key, _ in node.value}


def _yaml12_resolvers() -> dict[str, list[tuple[str, re.Pattern[str]]]]:
    """PyYAML's implicit resolvers with YAML 1.2 booleans: ``yes``, ``no``, ``on``, ``off`` stay strings."""
    resolvers = {
        first: [(tag, rx) for tag, rx in entries if tag != _BOOL_TAG]
        for first, entries in Resolver.yaml_implicit_resolvers.items()
    }
    booleans = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
    for first in "tTfF":
        resolvers.setdefault(first, []).insert(0, (_BOOL_TAG, booleans))
    return resolvers


_GuardedLoader.yaml_implicit_resolvers = _yaml12_resolvers()
_GuardedLoader.yaml_constructors = {
    **SafeConstructor.yaml_constructors,
    "tag:yaml.org,2002:int": _construct_int,
    "tag:yaml.org,2002:float": _construct_float,
    "tag:yaml.org,2002:timestamp": _construct_text,
    "tag:yaml.org,2002:map": _construct_mapping,
}


def parse_yaml(path: str, content: str, problems: Problems) -> object:
    """The single YAML document of ``content`` as Python data (None when empty); stops the load on errors."""
    where = Where(path)
    too_large = f"file larger than {limits.MAX_FILE_BYTES} bytes"
    if len(content) > limits.MAX_FILE_BYTES:
        problems.fail(ErrorCode.PIPELINE_LOAD, where, too_large)
    try:
        size = len(content.encode("utf-8"))
    except UnicodeEncodeError as error:  # lone surrogates: not text any client could have sent
        problems.fail(ErrorCode.PIPELINE_LOAD, where, f"not valid Unicode text (character {error.start})")
    if size > limits.MAX_FILE_BYTES:
        problems.fail(ErrorCode.PIPELINE_LOAD, where, too_large)
    try:
        return _load_single(content)
    except yaml.MarkedYAMLError as error:
        problems.fail(ErrorCode.PIPELINE_LOAD, where, f"invalid YAML: {_describe(error)}")
    except yaml.YAMLError as error:
        problems.fail(ErrorCode.PIPELINE_LOAD, where, f"invalid YAML: {' '.join(str(error).split())}")
    except RecursionError:
        problems.fail(ErrorCode.PIPELINE_LOAD, where, "invalid YAML: nested too deeply")


def _load_single(content: str) -> object:
    loader = _GuardedLoader(content)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _describe(error: yaml.MarkedYAMLError) -> str:
    what = " ".join(part for part in (error.context, error.problem) if part) or "syntax error"
    mark = error.problem_mark or error.context_mark
    return f"{what} (line {mark.line + 1}, column {mark.column + 1})" if mark else what


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: Node) -> None:
    """Refuse recursive aliases and graphs whose alias-expanded size passes ``MAX_NODES``.

    Iterative depth-first walk: sizes are memoised per node, so shared (aliased) nodes cost once here
    while counting as often as they are referenced.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > limits.MAX_NODES:
                raise _LimitExceeded(f"more than {limits.MAX_NODES} nodes once aliases are expanded")
        elif key in open_nodes:
            raise _LimitExceeded("an alias refers to a node that contains it (recursive alias)")
        elif key not in sizes:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
