"""Typed inputs and outputs (api >= 0.5.0): ``type``, ``element-type``, ``shape`` and their compatibility."""

from __future__ import annotations

from dataclasses import dataclass

from shared.pipeline_definition.fields import Section, integer
from shared.pipeline_definition.versions import TYPED_IO, ApiVersion

ARRAY, STRING, STREAM = "array", "string", "stream"
_WIDTHS = {"int": ("8", "16", "32", "64"), "uint": ("8", "16", "32", "64"), "float": ("16", "32", "64")}
PRIMITIVES: dict[str, str] = {
    alias: f"{family}{bits}"
    for family, widths in _WIDTHS.items()
    for bits in widths
    for alias in (f"{family}{bits}", f"{family[0]}{bits}")
}
"""Every primitive spelling (``u8``, ``uint8``, ...) to its long form."""

SHARED_MEMORY = frozenset({ARRAY, STRING, *PRIMITIVES.values()})
"""Types passed in shared memory, hence without a ``path``."""


@dataclass(frozen=True)
class Typing:
    """The typed attributes of an input or output; all None when untyped. Primitives in long form."""

    type: str | None = None
    element_type: str | None = None
    shape: tuple[int, ...] | None = None

    @property
    def on_disk(self) -> bool:
        """Untyped data and streams live in folders, so they need a ``path``."""
        return self.type not in SHARED_MEMORY

    def canonical(self) -> tuple[str | None, str | None, tuple[int, ...] | None]:
        """``string`` as ``array<uint8>[-1]`` and a primitive as ``array<T>[1]``, as the docs equate them."""
        if self.type == STRING:
            return ARRAY, "uint8", (-1,)
        if self.type in PRIMITIVES.values():
            return ARRAY, self.type, (1,)
        return self.type, self.element_type, self.shape


def read_typing(section: Section, version: ApiVersion) -> Typing:
    """The typed attributes of an ``input``/``output`` entry; ignored (untyped) before api-version 0.5.0."""
    if version < TYPED_IO:
        return Typing()
    raw = section.text("type")
    if raw is None:
        for key in ("element-type", "shape"):
            if section.has(key):
                section.problems.invalid(section.at(key), "needs a 'type'")
        return Typing()
    kind = PRIMITIVES.get(raw.strip().lower(), raw.strip().lower())
    if kind not in (ARRAY, STREAM) and kind not in SHARED_MEMORY:
        expected = "array, string, stream or a primitive such as uint8 or float32"
        section.problems.invalid(section.at("type"), f"unknown type {raw!r}: expected {expected}")
        return Typing()
    return Typing(kind, _element_type(section, kind), _shape(section, kind))


def _element_type(section: Section, kind: str) -> str | None:
    if kind not in (ARRAY, STREAM):
        _must_omit(section, "element-type", kind)
        return None
    raw = section.text("element-type", required=True)
    if raw is None or kind == STREAM:
        return raw
    element = PRIMITIVES.get(raw.strip().lower())
    if element is None:
        section.problems.invalid(section.at("element-type"), f"{raw!r} is not a primitive type such as float32")
    return element


def _shape(section: Section, kind: str) -> tuple[int, ...] | None:
    if kind != ARRAY:
        _must_omit(section, "shape", kind)
        return None
    if section.get("shape") in (None, []):
        section.problems.invalid(section.at("shape"), "is required for arrays: a list of sizes, -1 for any size")
        return None
    entries = section.items("shape")
    dims = [integer(value, where, section.problems, minimum=-1) for where, value in entries]
    for (where, _), dim in zip(entries, dims, strict=True):
        if dim == 0:
            section.problems.invalid(where, "a dimension is -1 (any size) or positive")
    return tuple(dim for dim in dims if dim is not None)


def _must_omit(section: Section, key: str, kind: str) -> None:
    if section.has(key):
        section.problems.invalid(section.at(key), f"must be omitted for type {kind!r}")


def mismatch(produced: Typing, consumed: Typing) -> str | None:
    """Why an output cannot feed a typed input, or None when it can (-1 matches any size)."""
    if consumed.type is None:
        return None
    if produced.type is None:
        return "the upstream output is untyped"
    out_kind, out_element, out_shape = produced.canonical()
    in_kind, in_element, in_shape = consumed.canonical()
    if (out_kind, out_element) != (in_kind, in_element):
        return f"expects {_describe(consumed)} but the upstream output is {_describe(produced)}"
    if out_shape is not None and in_shape is not None and not _shapes_match(out_shape, in_shape):
        return f"expects shape {list(in_shape)} but the upstream output has shape {list(out_shape)}"
    return None


def _shapes_match(left: tuple[int, ...], right: tuple[int, ...]) -> bool:
    return len(left) == len(right) and all(-1 in (a, b) or a == b for a, b in zip(left, right, strict=True))


def _describe(typing: Typing) -> str:
    if typing.element_type is None:
        return repr(typing.type)
    return f"{typing.type}<{typing.element_type}>"
