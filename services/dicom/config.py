"""The DICOM service's configuration: a YAML file in the shape of the NVIDIA Clara DICOM Adapter's settings.

Shape (every key optional unless noted; the adapter's appsettings.json, JSON being YAML, parses too)::

    dicom:
      scp:                                  # receiving: C-ECHO and C-STORE
        port, maximumNumberOfAssociations, rejectUnknownSources, verification: {enabled}
        aeTitles:                           # the AE titles the service answers to, each starting pipelines
          - name, aeTitle (required), ignoredSopClasses, sources,
            processorSettings: {pipeline-<key>: <pipeline> (one or more), priority, grouping, timeout},
            export: {operators, destinations}
        sources:                            # the calling AE titles that may send
          - aeTitle (required), hostIp
      scu:                                  # sending results back
        aeTitle, maximumNumberOfAssociations, export: {maximumRetries, retryDelaySeconds}
        destinations:
          - name, aeTitle, hostIp, port (all required)
    storage:
      temporary, watermarkPercent, reserveSpaceGB

The whole document may instead sit under a top-level ``DicomAdapter`` key, beside other sections (``Logging``, ...)
that are ignored. Keys are matched ignoring case, ``-`` and ``_`` (the adapter spelled them several ways over its
versions); unknown keys are errors, except a few adapter keys that mean nothing here. The first problem found is
raised as :class:`ConfigError`, naming the file, the line and the key path.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar, get_args

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from services.dicom.instances import UID_PATTERN


class ConfigError(ValueError):
    """The configuration cannot be read or is invalid; the message says where and why."""


Grouping = Literal["association", "study"]
GROUPINGS: tuple[Grouping, ...] = get_args(Grouping)
PRIORITIES = ("lower", "normal", "higher", "immediate")

AE_TITLE_MAX_LENGTH = 16
PIPELINE_PREFIX = "pipeline-"


@dataclass(frozen=True)
class Source:
    """A calling AE title that may send instances (``dicom.scp.sources``)."""

    ae_title: str
    """The calling AE title, without leading or trailing spaces."""
    host: str | None
    """When given, associations with this AE title must also come from this address."""


@dataclass(frozen=True)
class Destination:
    """A DICOM peer results can be sent to (``dicom.scu.destinations``)."""

    name: str
    """The name export settings refer to."""
    ae_title: str
    """The peer's (called) AE title."""
    host: str
    """The peer's host name or IP address."""
    port: int
    """The peer's DICOM port."""


@dataclass(frozen=True)
class Export:
    """Which results of an AE title's jobs are sent back, and where."""

    operators: tuple[str, ...]
    """Operators whose outputs are searched for DICOM files."""
    destinations: tuple[str, ...]
    """Names of :class:`Destination` entries to send them to."""


@dataclass(frozen=True)
class AeTitle:
    """An AE title the service answers to, and the jobs that instances sent to it start."""

    ae_title: str
    """The called AE title, without leading or trailing spaces."""
    name: str
    """A name for logs and messages; the AE title unless given."""
    pipelines: tuple[tuple[str, str], ...]
    """(key after ``pipeline-``, pipeline id or name) in file order: each batch starts a job per entry."""
    priority: str
    """Job priority, one of :data:`PRIORITIES`."""
    grouping: Grouping
    """How instances are batched into jobs: per association, or per study."""
    timeout: float
    """Seconds without new instances of a study before its batch closes (grouping ``study``)."""
    ignored_sop_classes: frozenset[str]
    """SOP class UIDs whose instances are accepted but not stored."""
    sources: tuple[str, ...]
    """Calling AE titles allowed to use this AE title; empty: any the service accepts."""
    export: Export | None
    """Where results are sent back; None: nowhere."""


@dataclass(frozen=True)
class DicomConfig:
    """The DICOM service's configuration; the defaults are those of an empty section."""

    port: int = 11112
    """The port the SCP listens on."""
    max_associations: int = 25
    """Most associations the SCP serves at once."""
    reject_unknown_sources: bool = True
    """Refuse calling AE titles missing from :attr:`sources` (only when sources are listed)."""
    verification: bool = True
    """Answer C-ECHO."""
    ae_titles: tuple[AeTitle, ...] = ()
    """The AE titles the SCP answers to; none: every association is refused."""
    sources: tuple[Source, ...] = ()
    """The calling AE titles known to the SCP."""
    scu_ae_title: str = "CLARASCU"
    """The calling AE title used when sending results."""
    scu_max_associations: int = 2
    """Most associations the SCU opens at once."""
    max_retries: int = 3
    """Attempts to send after the first fails."""
    retry_delay: float = 2.0
    """Seconds before the first retry; doubled after each failed attempt."""
    destinations: tuple[Destination, ...] = ()
    """The peers results can be sent to."""
    storage: Path | None = None
    """Where received instances wait for their jobs; None: the service's own choice."""
    watermark_percent: float = 85.0
    """Associations are refused while the storage volume is fuller than this."""
    reserve_space_gb: float = 5.0
    """Associations are refused while less than this many GB are free."""

    def ae_title(self, called: str) -> AeTitle | None:
        """The configured AE title ``called`` (compared without leading or trailing spaces), or None."""
        called = called.strip(" ")
        return next((entry for entry in self.ae_titles if entry.ae_title == called), None)

    def destination(self, name: str) -> Destination | None:
        """The destination named ``name``, or None."""
        return next((entry for entry in self.destinations if entry.name == name), None)

    def calling_refusal(self, called: AeTitle, calling: str, address: str) -> str | None:
        """Why an association from ``calling`` (AE title) at IP ``address`` to ``called`` is refused, or None.

        With ``reject_unknown_sources`` and a non-empty ``sources``, ``calling`` must be a source's AE title, and
        that source's host (when given) must be ``address``. A non-empty ``called.sources`` must list ``calling``.
        """
        calling = calling.strip(" ")
        if self.reject_unknown_sources and self.sources:
            known = [source for source in self.sources if source.ae_title == calling]
            if not known:
                return f"calling AE title {calling!r} is not a known source (from {address})"
            if not any(source.host is None or _same_address(source.host, address) for source in known):
                hosts = ", ".join(sorted({source.host for source in known if source.host is not None}))
                return f"calling AE title {calling!r} may not call from {address} (only from {hosts})"
        if called.sources and calling not in called.sources:
            return f"calling AE title {calling!r} (from {address}) may not use AE title {called.ae_title!r}"
        return None


def parse(text: str, origin: str, *, folder: Path | None = None) -> DicomConfig:
    """Parse and validate a configuration; ``origin`` names it in errors, ``folder`` anchors a relative storage."""
    try:
        return _read_document(_load_yaml(text), folder)
    except _Problem as problem:
        where = f"{origin}:{problem.line}"
        raise ConfigError(
            f"{where}: {problem.path}: {problem.message}" if problem.path else f"{where}: {problem.message}"
        ) from None


def load(path: Path) -> DicomConfig:
    """Read and parse the configuration file ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the DICOM configuration: {error.strerror or error}") from None
    return parse(text, str(path), folder=path.absolute().parent)


def _same_address(expected: str, address: str) -> bool:
    """Whether two addresses are the same; as IP addresses when both are, so that IPv4-mapped IPv6 matches IPv4."""
    try:
        return _ip(expected) == _ip(address)
    except ValueError:
        return expected.strip() == address.strip()


def _ip_text(value: _Value) -> str:
    """A source's address: an IP address, since a caller is matched by the address it calls from (a host
    name would never match)."""
    text = _text(value)
    try:
        _ip(text)
    except ValueError:
        raise value.problem(
            f"{text!r} is not an IP address (sources are matched by the address they call from)"
        ) from None
    return text


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# --- YAML with lines ------------------------------------------------------------------------------------------


class _Problem(Exception):
    """An invalid value: where it was written (line, key path) and what is wrong with it."""

    def __init__(self, line: int, path: str, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.path = path
        self.message = message


class _Mapping(dict[str, object]):
    """A YAML mapping that remembers its own line, each key's line, and the source text of plain scalar values."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}
        self.plain_texts: dict[str, str] = {}


class _Sequence(list[object]):
    """A YAML sequence that remembers its own line, each item's line, and the source text of plain scalar items."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []
        self.plain_texts: list[str | None] = []


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader building :class:`_Mapping` and :class:`_Sequence`, so that errors can name lines."""


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _plain_text(node: Node) -> str | None:
    """The text of an unquoted scalar: YAML 1.1 reads ``NO`` as false and ``0123`` as 83, not as an AE title."""
    return node.value if isinstance(node, ScalarNode) and node.style is None else None


def _construct_mapping(loader: _LineLoader, node: MappingNode) -> Iterator[_Mapping]:
    mapping = _Mapping(_line(node))
    yield mapping  # PyYAML builds containers in two steps, so that aliases to them resolve
    _reject_duplicate_keys(node)
    loader.flatten_mapping(node)  # merge keys (<<) first: the mapping's own keys then win
    for key_node, value_node in node.value:
        key = _key_text(loader, key_node)
        mapping[key] = loader.construct_object(value_node)
        mapping.key_lines[key] = _line(key_node)
        text = _plain_text(value_node)
        if text is None:
            mapping.plain_texts.pop(key, None)
        else:
            mapping.plain_texts[key] = text


def _construct_sequence(loader: _LineLoader, node: SequenceNode) -> Iterator[_Sequence]:
    sequence = _Sequence(_line(node))
    yield sequence
    for item_node in node.value:
        sequence.append(loader.construct_object(item_node))
        sequence.item_lines.append(_line(item_node))
        sequence.plain_texts.append(_plain_text(item_node))


def _reject_duplicate_keys(node: MappingNode) -> None:
    """PyYAML keeps the last of repeated keys silently; a repeated key is a mistake worth reporting."""
    seen: set[str] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in seen:
                raise ConstructorError(None, None, f"duplicate key {key_node.value!r}", key_node.start_mark)
            seen.add(key_node.value)


def _key_text(loader: _LineLoader, key_node: Node) -> str:
    if not isinstance(key_node, ScalarNode):
        raise ConstructorError(None, None, "a key must be plain text", key_node.start_mark)
    key = loader.construct_object(key_node)
    return key if isinstance(key, str) else key_node.value  # `1:` or `yes:` as written


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


@dataclass(frozen=True)
class _Value:
    """One value of the file and where it was written."""

    data: object
    line: int
    path: str
    plain: str | None = None
    """The source text when the value was an unquoted scalar."""

    def problem(self, message: str) -> _Problem:
        return _Problem(self.line, self.path, message)


def _load_yaml(text: str) -> _Value:
    try:
        loader = _LineLoader(text)  # the reader refuses unprintable characters here already
    except yaml.reader.ReaderError as error:
        raise _reader_problem(text, error) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise _Problem(1, "", "the file is empty: expected a mapping with a `dicom` section")
        return _Value(loader.construct_document(node), _line(node), "")
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        detail = f" ({error.context})" if error.context and error.problem else ""
        message = f"invalid YAML: {error.problem or error.context}{detail}"
        raise _Problem(mark.line + 1 if mark else 1, "", message) from None
    except yaml.reader.ReaderError as error:
        raise _reader_problem(text, error) from None
    except yaml.YAMLError as error:
        raise _Problem(1, "", f"invalid YAML: {error}") from None
    finally:
        loader.dispose()


def _reader_problem(text: str, error: yaml.reader.ReaderError) -> _Problem:
    code = error.character if isinstance(error.character, int) else ord(error.character)
    line = text.count("\n", 0, error.position) + 1
    return _Problem(line, "", f"invalid YAML: character #x{code:04x}: {error.reason}")


# --- reading values -------------------------------------------------------------------------------------------

_T = TypeVar("_T")


def _canonical(key: str) -> str:
    """Keys compare ignoring case, `-` and `_`: `aeTitle`, `ae-title` and `ae_title` are one key."""
    return key.lower().replace("-", "").replace("_", "")


def _child_path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _describe(data: object) -> str:
    if data is None:
        return "nothing"
    if isinstance(data, bool):
        return f"a boolean ({str(data).lower()})"
    if isinstance(data, int):
        return f"an integer ({data})"
    if isinstance(data, float):
        return f"a number ({data})"
    if isinstance(data, str):
        return f"a string ({data[:40]!r}{'...' if len(data) > 40 else ''})"
    if isinstance(data, list):
        return "a list"
    if isinstance(data, dict):
        return "a mapping"
    return f"a {type(data).__name__}"


class _Section:
    """A mapping of the file whose keys were checked: each known key once, unknown keys refused."""

    def __init__(
        self,
        value: _Value,
        known: tuple[str, ...],
        ignored: tuple[str, ...] = (),
        also_accepts: Callable[[str], bool] | None = None,
    ) -> None:
        if value.data is None:  # `section:` with everything commented out
            value = _Value(_Mapping(value.line), value.line, value.path)
        if not isinstance(value.data, _Mapping):
            raise value.problem(f"expected a mapping, got {_describe(value.data)}")
        self.mapping = value.data
        self.path = value.path
        self.line = value.line  # the section's key (or list item): where a missing key is missed
        by_canonical = {_canonical(name): name for name in known}
        ignored_canonical = {_canonical(name) for name in ignored}
        self._written: dict[str, str] = {}  # known name -> key as written
        for key in self.mapping:
            name = by_canonical.get(_canonical(key))
            if name is None:
                if _canonical(key) in ignored_canonical or (also_accepts is not None and also_accepts(key)):
                    continue
                raise self.entry(key).problem(self._unknown(key, known, also_accepts is not None))
            if name in self._written:
                raise self.entry(key).problem(f"repeats the key {self._written[name]!r}")
            self._written[name] = key

    def get(self, name: str) -> _Value | None:
        """The value of the known key ``name`` (in any spelling); None when absent."""
        key = self._written.get(name)
        return None if key is None else self.entry(key)

    def require(self, name: str) -> _Value:
        value = self.get(name)
        if value is None:
            raise _Problem(self.line, self.path, f"missing required key {name!r}")
        return value

    def entry(self, key: str) -> _Value:
        """The value of ``key`` exactly as written (pipeline keys, which are not known names)."""
        mapping = self.mapping
        return _Value(mapping[key], mapping.key_lines[key], _child_path(self.path, key), mapping.plain_texts.get(key))

    @staticmethod
    def _unknown(key: str, known: tuple[str, ...], pipelines: bool) -> str:
        close = difflib.get_close_matches(_canonical(key), [_canonical(name) for name in known], n=1)
        hint = next((f"; did you mean {name!r}?" for name in known if close and _canonical(name) == close[0]), "")
        expected = ", ".join((*known, f"{PIPELINE_PREFIX}<key>") if pipelines else known)
        return f"unknown key {key!r}{hint} (expected one of: {expected})"


def _optional(section: _Section, name: str, read: Callable[[_Value], _T], default: _T) -> _T:
    value = section.get(name)
    return default if value is None else read(value)


def _required(section: _Section, name: str, read: Callable[[_Value], _T]) -> _T:
    return read(section.require(name))


def _items(value: _Value, *, non_empty: bool = False) -> list[_Value]:
    """The items of a list, each with its own line and path (`key[0]`); nothing written reads as no items."""
    data = value.data
    if data is None:
        data = _Sequence(value.line)
    if not isinstance(data, _Sequence):
        raise value.problem(f"expected a list, got {_describe(data)}")
    if non_empty and not data:
        raise value.problem("expected a non-empty list")
    return [
        _Value(item, line, f"{value.path}[{index}]", plain)
        for index, (item, line, plain) in enumerate(zip(data, data.item_lines, data.plain_texts, strict=True))
    ]


def _string(value: _Value) -> str:
    if isinstance(value.data, str):
        return value.data
    if value.plain is not None and value.data is not None and not isinstance(value.data, dict | list):
        return value.plain  # an unquoted number, boolean or date where text is expected: take it as written
    raise value.problem(f"expected a string, got {_describe(value.data)}")


def _text(value: _Value) -> str:
    text = _string(value).strip()
    if not text:
        raise value.problem("must not be empty")
    return text


def _texts(value: _Value) -> tuple[str, ...]:
    return tuple(_text(item) for item in _items(value, non_empty=True))


OPERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""An operator's name as a path segment of the payload (``operators/<name>``): never ``..`` nor a path."""


def _operator_names(value: _Value) -> tuple[str, ...]:
    names = []
    for item in _items(value, non_empty=True):
        name = _text(item)
        if not OPERATOR_NAME.fullmatch(name) or name.startswith(".."):
            raise item.problem(f"{name!r} is not an operator name (letters, digits, '_', '.', '-'; no path)")
        names.append(name)
    return tuple(names)


def _ae_title(value: _Value) -> str:
    """An AE title: 1 to 16 characters, no backslash or control characters; surrounding spaces do not count."""
    title = _string(value).strip(" ")
    if not title:
        raise value.problem("an AE title must not be empty or only spaces")
    if len(title) > AE_TITLE_MAX_LENGTH:
        raise value.problem(f"{title!r} is longer than {AE_TITLE_MAX_LENGTH} characters")
    if "\\" in title:
        raise value.problem(f"{title!r} contains a backslash")
    if any(ord(character) < 32 or ord(character) == 127 for character in title):
        raise value.problem(f"{title!r} contains a control character")
    return title


def _integer(value: _Value, low: int, high: int | None = None) -> int:
    data = value.data
    if isinstance(data, bool) or not isinstance(data, int):  # bool is an int to Python, not to a reader
        raise value.problem(f"expected an integer, got {_describe(data)}")
    if data < low or (high is not None and data > high):
        raise value.problem(
            f"{data} is out of range {low}..{high}" if high is not None else f"{data} is less than {low}"
        )
    return data


def _number(value: _Value, valid: Callable[[float], bool], rule: str) -> float:
    data = value.data
    if isinstance(data, bool) or not isinstance(data, int | float):
        raise value.problem(f"expected a number, got {_describe(data)}")
    number = float(data)
    if not math.isfinite(number):
        raise value.problem(f"{data} is not a finite number")
    if not valid(number):
        raise value.problem(f"{data} {rule}")
    return number


def _boolean(value: _Value) -> bool:
    if not isinstance(value.data, bool):
        raise value.problem(f"expected true or false, got {_describe(value.data)}")
    return value.data


def _choice(value: _Value, choices: tuple[str, ...]) -> str:
    word = _string(value).strip().lower()
    if word not in choices:
        raise value.problem(f"{_string(value)!r} is not one of: {', '.join(choices)}")
    return word


def _port(value: _Value) -> int:
    return _integer(value, 1, 65535)


def _associations(value: _Value) -> int:
    return _integer(value, 1, 1000)


def _positive(value: _Value) -> float:
    return _number(value, lambda number: number > 0, "is not greater than 0")


def _grouping(value: _Value) -> Grouping:
    return "study" if _choice(value, GROUPINGS) == "study" else "association"


def _sop_classes(value: _Value) -> frozenset[str]:
    classes = set()
    for item in _items(value):
        uid = _text(item)
        if not UID_PATTERN.fullmatch(uid):
            raise item.problem(f"{uid!r} is not a UID (digits separated by dots)")
        classes.add(uid)
    return frozenset(classes)


# --- the sections -----------------------------------------------------------------------------------------------


def _read_document(root: _Value, folder: Path | None) -> DicomConfig:
    if not isinstance(root.data, _Mapping):
        raise root.problem(f"expected a mapping with a `dicom` section, got {_describe(root.data)}")
    wrapper = next((key for key in root.data if _canonical(key) == "dicomadapter"), None)
    if wrapper is None:
        document = _Section(root, ("dicom", "storage"))
    else:  # appsettings.json: the adapter's settings beside .NET's own sections (Logging, ...), which are not ours
        inner = _Value(root.data[wrapper], root.data.key_lines[wrapper], wrapper)
        document = _Section(inner, ("dicom", "storage"), ("services", "readAeTitlesFromCrd", "crdReadIntervals"))
    dicom = _Section(_subsection(document, "dicom"), ("scp", "scu"))
    scu = _read_scu(_subsection(dicom, "scu"))
    scp = _read_scp(_subsection(dicom, "scp"), scu.destinations)
    storage = _read_storage(_subsection(document, "storage"), folder)
    return DicomConfig(
        port=scp.port,
        max_associations=scp.max_associations,
        reject_unknown_sources=scp.reject_unknown_sources,
        verification=scp.verification,
        ae_titles=scp.ae_titles,
        sources=scp.sources,
        scu_ae_title=scu.ae_title,
        scu_max_associations=scu.max_associations,
        max_retries=scu.max_retries,
        retry_delay=scu.retry_delay,
        destinations=scu.destinations,
        storage=storage.temporary,
        watermark_percent=storage.watermark_percent,
        reserve_space_gb=storage.reserve_space_gb,
    )


def _subsection(parent: _Section, name: str) -> _Value:
    """The value of ``name``, or an empty one where it would have been, so that absent sections give defaults."""
    return parent.get(name) or _Value(None, parent.line, _child_path(parent.path, name))


@dataclass(frozen=True)
class _Scp:
    port: int
    max_associations: int
    reject_unknown_sources: bool
    verification: bool
    ae_titles: tuple[AeTitle, ...]
    sources: tuple[Source, ...]


def _read_scp(value: _Value, destinations: tuple[Destination, ...]) -> _Scp:
    scp = _Section(
        value,
        ("port", "maximumNumberOfAssociations", "rejectUnknownSources", "verification", "aeTitles", "sources"),
        ("logDimseDatasets", "logDataPdus"),
    )
    verification = _Section(_subsection(scp, "verification"), ("enabled",), ("transferSyntaxes",))
    sources = tuple(_read_source(item) for item in _items(_subsection(scp, "sources")))
    return _Scp(
        port=_optional(scp, "port", _port, 11112),
        max_associations=_optional(scp, "maximumNumberOfAssociations", _associations, 25),
        reject_unknown_sources=_optional(scp, "rejectUnknownSources", _boolean, True),
        verification=_optional(verification, "enabled", _boolean, True),
        ae_titles=_read_ae_titles(
            _subsection(scp, "aeTitles"),
            frozenset(source.ae_title for source in sources),
            frozenset(destination.name for destination in destinations),
        ),
        sources=sources,
    )


def _read_source(value: _Value) -> Source:
    source = _Section(value, ("aeTitle", "hostIp"))
    return Source(ae_title=_required(source, "aeTitle", _ae_title), host=_optional(source, "hostIp", _ip_text, None))


def _read_ae_titles(value: _Value, sources: frozenset[str], destinations: frozenset[str]) -> tuple[AeTitle, ...]:
    titles_seen: dict[str, str] = {}  # AE title -> path of its first use
    names_seen: dict[str, str] = {}
    ae_titles = []
    for item in _items(value):
        entry = _Section(
            item,
            ("name", "aeTitle", "ignoredSopClasses", "sources", "processorSettings", "export"),
            ("processor", "overwriteSameInstance"),
        )
        title_value = entry.require("aeTitle")
        title = _ae_title(title_value)
        _claim(titles_seen, title, title_value, "AE title")
        name_value = entry.get("name") or title_value
        name = _text(name_value)
        _claim(names_seen, name, name_value, "name")
        settings = _read_processor_settings(entry.require("processorSettings"))
        ae_titles.append(
            AeTitle(
                ae_title=title,
                name=name,
                pipelines=settings.pipelines,
                priority=settings.priority,
                grouping=settings.grouping,
                timeout=settings.timeout,
                ignored_sop_classes=_optional(entry, "ignoredSopClasses", _sop_classes, frozenset()),
                sources=_read_allowed_sources(entry.get("sources"), sources),
                export=_read_export(entry.get("export"), destinations),
            )
        )
    return tuple(ae_titles)


def _claim(seen: dict[str, str], key: str, value: _Value, what: str) -> None:
    if key in seen:
        raise value.problem(f"{what} {key!r} is already used by {seen[key]}")
    seen[key] = value.path


@dataclass(frozen=True)
class _ProcessorSettings:
    pipelines: tuple[tuple[str, str], ...]
    priority: str
    grouping: Grouping
    timeout: float


def _is_pipeline_key(key: str) -> bool:
    return key.lower().startswith(PIPELINE_PREFIX)


def _read_processor_settings(value: _Value) -> _ProcessorSettings:
    settings = _Section(value, ("priority", "grouping", "timeout"), also_accepts=_is_pipeline_key)
    pipelines: list[tuple[str, str]] = []
    for key in settings.mapping:
        if not _is_pipeline_key(key):
            continue
        entry = settings.entry(key)
        name = key[len(PIPELINE_PREFIX) :]
        if not name:
            raise entry.problem(f"needs a key after {PIPELINE_PREFIX!r}, e.g. {PIPELINE_PREFIX}segmentation")
        if any(name == earlier for earlier, _ in pipelines):
            raise entry.problem(f"repeats the pipeline key {name!r}")
        pipelines.append((name, _text(entry)))
    if not pipelines:
        raise value.problem(f"needs at least one `{PIPELINE_PREFIX}<key>: <pipeline>` entry")
    # A timeout only means something when batching by study: giving one asks for that.
    default_grouping: Grouping = "association" if settings.get("timeout") is None else "study"
    return _ProcessorSettings(
        pipelines=tuple(pipelines),
        priority=_optional(settings, "priority", lambda priority: _choice(priority, PRIORITIES), "normal"),
        grouping=_optional(settings, "grouping", _grouping, default_grouping),
        timeout=_optional(settings, "timeout", _positive, 5.0),
    )


def _read_allowed_sources(value: _Value | None, sources: frozenset[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    allowed = []
    for item in _items(value):
        title = _ae_title(item)
        if title not in sources:
            known = ", ".join(sorted(sources)) or "none are defined"
            raise item.problem(f"{title!r} is not an aeTitle of dicom.scp.sources ({known})")
        allowed.append(title)
    return tuple(allowed)


def _read_export(value: _Value | None, destinations: frozenset[str]) -> Export | None:
    if value is None or value.data is None:
        return None
    export = _Section(value, ("operators", "destinations"))
    operators = _required(export, "operators", _operator_names)
    names = []
    for item in _items(export.require("destinations"), non_empty=True):
        name = _text(item)
        if name not in destinations:
            known = ", ".join(sorted(destinations)) or "none are defined"
            raise item.problem(f"{name!r} is not a name of dicom.scu.destinations ({known})")
        names.append(name)
    return Export(operators=operators, destinations=tuple(names))


@dataclass(frozen=True)
class _Scu:
    ae_title: str
    max_associations: int
    max_retries: int
    retry_delay: float
    destinations: tuple[Destination, ...]


def _read_scu(value: _Value) -> _Scu:
    scu = _Section(
        value,
        ("aeTitle", "maximumNumberOfAssociations", "export", "destinations"),
        ("logDimseDatasets", "logDataPdus"),
    )
    export = _Section(
        _subsection(scu, "export"), ("maximumRetries", "retryDelaySeconds"), ("failureThreshold", "pollFrequencyMs")
    )
    destinations: list[Destination] = []
    names_seen: dict[str, str] = {}
    for item in _items(_subsection(scu, "destinations")):
        entry = _Section(item, ("name", "aeTitle", "hostIp", "port"))
        name_value = entry.require("name")
        name = _text(name_value)
        _claim(names_seen, name, name_value, "destination name")
        destinations.append(
            Destination(
                name=name,
                ae_title=_required(entry, "aeTitle", _ae_title),
                host=_required(entry, "hostIp", _text),
                port=_required(entry, "port", _port),
            )
        )
    return _Scu(
        ae_title=_optional(scu, "aeTitle", _ae_title, "CLARASCU"),
        max_associations=_optional(scu, "maximumNumberOfAssociations", _associations, 2),
        max_retries=_optional(export, "maximumRetries", lambda retries: _integer(retries, 0), 3),
        retry_delay=_optional(export, "retryDelaySeconds", _positive, 2.0),
        destinations=tuple(destinations),
    )


@dataclass(frozen=True)
class _Storage:
    temporary: Path | None
    watermark_percent: float
    reserve_space_gb: float


def _read_storage(value: _Value, folder: Path | None) -> _Storage:
    storage = _Section(value, ("temporary", "watermarkPercent", "reserveSpaceGB"))
    temporary = _optional(storage, "temporary", lambda path: Path(_text(path)), None)
    if temporary is not None and folder is not None and not temporary.is_absolute():
        temporary = folder / temporary  # relative to the configuration file, not to wherever the service started
    return _Storage(
        temporary=temporary,
        watermark_percent=_optional(
            storage,
            "watermarkPercent",
            lambda percent: _number(percent, lambda p: 0 < p <= 100, "is not in (0, 100]"),
            85.0,
        ),
        reserve_space_gb=_optional(
            storage, "reserveSpaceGB", lambda space: _number(space, lambda gb: gb >= 0, "is less than 0"), 5.0
        ),
    )
