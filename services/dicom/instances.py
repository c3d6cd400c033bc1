"""What the SCP checks of a received C-STORE data set before storing it as received.

Instances are stored byte for byte as the peer encoded them (no transcoding), but only once their
encoding has been walked to the end: non-DICOM bytes, a data set cut short (an element whose value holds
fewer bytes than its length says, or bytes left over that make no element) and an instance without the
identifying UIDs are refused with a failure status, and nothing is kept. The UIDs become folder and file
names, so they must be UIDs: digits and dots, at most 64 characters.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass

from pydicom.filereader import data_element_generator
from pydicom.tag import Tag
from pydicom.uid import UID

UNDEFINED_LENGTH = 0xFFFFFFFF
UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")
"""A UID: digits and dots (PS3.5 9.1); at most 64 characters."""
MAX_DATA_SET_BYTES = 512 * 1024**2
"""A data set (inflated, if deflated) larger than this is refused: it is held in memory to be checked."""

SOP_CLASS = Tag(0x0008, 0x0016)
SOP_INSTANCE = Tag(0x0008, 0x0018)
STUDY = Tag(0x0020, 0x000D)
SERIES = Tag(0x0020, 0x000E)
_NAMES: dict[int, str] = {
    SOP_CLASS: "SOPClassUID",
    SOP_INSTANCE: "SOPInstanceUID",
    STUDY: "StudyInstanceUID",
    SERIES: "SeriesInstanceUID",
}


class InvalidInstance(ValueError):
    """The data set cannot be stored; the message says why (it goes to the log and the C-STORE response)."""


@dataclass(frozen=True)
class Instance:
    """The identifying UIDs of a received instance."""

    sop_class: str
    sop_instance: str
    study: str
    series: str


def readable(transfer_syntax: str) -> bool:
    """Whether :func:`inspect` can walk data sets in this transfer syntax (pydicom knows how it encodes
    them); the SCP accepts a presentation context only in such a syntax."""
    return UID(transfer_syntax).is_transfer_syntax


def inspect(body: bytes, transfer_syntax: str) -> Instance:
    """Walk every top-level element of ``body`` (a data set encoded in ``transfer_syntax``, one that is
    :func:`readable`) and return its UIDs; :class:`InvalidInstance` when the encoding is broken or a UID
    is missing or malformed."""
    syntax = UID(transfer_syntax)
    if syntax.is_deflated:
        body = _inflate(body)
    if syntax.is_little_endian:
        found = walk_little_endian(body, syntax.is_implicit_VR)
    else:
        found = _walk(body, syntax.is_implicit_VR, syntax.is_little_endian)
    values = {tag: _uid(found, tag) for tag in _NAMES}
    return Instance(values[SOP_CLASS], values[SOP_INSTANCE], values[STUDY], values[SERIES])


IMPLEMENTATION_CLASS_UID = "2.25.198449051992290229376058420390246404874"
"""Written into the File Meta of stored instances as the implementation that wrote them (a UUID-derived UID,
PS3.5 B.2: no registered root needed)."""
IMPLEMENTATION_VERSION = "CLARET_DICOM_1"
PREAMBLE = b"\0" * 128 + b"DICM"


def file_header(instance: Instance, transfer_syntax: str, source_ae: str) -> bytes:
    """The preamble and File Meta group that make a received data set a DICOM file (PS3.10), encoded here
    rather than through pydicom's datasets: this is per C-STORE, on the hot path."""
    elements = b"".join(
        (
            _element(0x0001, b"OB", b"\0\1"),
            _element(0x0002, b"UI", even(instance.sop_class.encode(), b"\0")),
            _element(0x0003, b"UI", even(instance.sop_instance.encode(), b"\0")),
            _element(0x0010, b"UI", even(transfer_syntax.encode(), b"\0")),
            _element(0x0012, b"UI", even(IMPLEMENTATION_CLASS_UID.encode(), b"\0")),
            _element(0x0013, b"SH", even(IMPLEMENTATION_VERSION.encode(), b" ")),
            _element(0x0016, b"AE", even(source_ae[:16].encode("ascii", "replace"), b" ")),
        )
    )
    return PREAMBLE + _element(0x0000, b"UL", struct.pack("<I", len(elements))) + elements


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    """One group 0002 element, explicit VR little endian."""
    if vr == b"OB":
        return struct.pack("<HH2sHI", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def even(value: bytes, pad: bytes) -> bytes:
    """A value padded to an even length, as every DICOM value is (PS3.5 7.1.1)."""
    return value + pad if len(value) % 2 else value


def _inflate(body: bytes) -> bytes:
    """The inflated data set, refused once it grows past :data:`MAX_DATA_SET_BYTES` (a small deflate
    stream can inflate a thousandfold)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(body, MAX_DATA_SET_BYTES)
    except zlib.error as exc:
        raise InvalidInstance(f"the deflated data set does not inflate: {exc}") from None
    if inflater.unconsumed_tail:
        raise InvalidInstance(f"the deflated data set inflates past {MAX_DATA_SET_BYTES} bytes")
    return inflated


_HEADER = struct.Struct("<HHI")
_EXPLICIT_HEADER = struct.Struct("<HH2sH")
_LONG = struct.Struct("<I")
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
"""Explicit VRs whose length takes 4 bytes after 2 reserved ones (PS3.5 7.1.2)."""
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
MAX_DEPTH = 32
"""Sequences nested deeper than this are refused (a hostile data set could nest until the stack ends)."""


def walk_little_endian(body: bytes, implicit: bool) -> dict[int, bytes]:
    """The raw values of the identifying tags of a little-endian data set, after checking every element,
    nested items included, is whole. The common syntaxes, on the C-STORE hot path: a struct-based walk
    several times cheaper than pydicom's element reader, which the others keep (``_walk``)."""
    found: dict[int, bytes] = {}
    if not implicit and len(body) >= 6 and not _looks_like_vr(body[4:6]):
        implicit = True  # a data set written implicit under an explicit syntax: read as it is, as pydicom does
    _elements(body, 0, implicit, found, 0)
    return found


def _looks_like_vr(raw: bytes) -> bool:
    return raw.isalpha() and raw.isupper()


def _elements(body: bytes, position: int, implicit: bool, found: dict[int, bytes] | None, depth: int) -> int:
    """Walk elements from ``position``: to the end of ``body`` at the top (``depth`` 0), to the item's end
    delimiter inside an undefined-length item. Returns the position after them."""
    end = len(body)
    while position < end:
        if end - position < 8:
            raise InvalidInstance(
                f"the data set ends inside an element ({end - position} bytes after the last whole one)"
            )
        group, element, length = _HEADER.unpack_from(body, position)
        tag = group << 16 | element
        if tag == ITEM_END and depth:
            return position + 8
        vr = b""
        if implicit or group == 0xFFFE:
            position += 8
        else:
            vr = body[position + 4 : position + 6]
            if vr in LONG_VRS:
                if end - position < 12:
                    raise InvalidInstance("the data set ends inside an element header")
                (length,) = _LONG.unpack_from(body, position + 8)
                position += 12
            else:
                length = _EXPLICIT_HEADER.unpack_from(body, position)[3]
                position += 8
        if length == UNDEFINED_LENGTH:  # the items of UN are implicit VR whatever the syntax (PS3.5 6.2.2)
            position = _items(body, position, implicit or vr == b"UN", depth + 1)
            continue
        if position + length > end:
            raise InvalidInstance(
                f"element ({group:04X},{element:04X}) says {length} bytes but the data set ends after {end - position}"
            )
        if found is not None and tag in _NAMES:
            found[tag] = body[position : position + length]
        position += length
    if depth:
        raise InvalidInstance("the data set ends inside a sequence item")
    return position


def _items(body: bytes, position: int, implicit: bool, depth: int) -> int:
    """Skip the items of an undefined-length sequence (or encapsulated pixel data) up to its delimiter."""
    if depth > MAX_DEPTH:
        raise InvalidInstance(f"sequences nested more than {MAX_DEPTH} deep")
    end = len(body)
    while True:
        if end - position < 8:
            raise InvalidInstance("the data set ends inside a sequence")
        group, element, length = _HEADER.unpack_from(body, position)
        tag = group << 16 | element
        position += 8
        if tag == SEQUENCE_END:
            return position
        if tag != ITEM:
            raise InvalidInstance(f"({group:04X},{element:04X}) where a sequence item belongs")
        if length == UNDEFINED_LENGTH:
            position = _elements(body, position, implicit, None, depth)
        elif position + length > end:
            raise InvalidInstance(f"a sequence item says {length} bytes but the data set ends after {end - position}")
        else:
            position += length


def _walk(body: bytes, implicit: bool, little: bool) -> dict[int, bytes]:
    """The raw values of the identifying tags, after checking every element is whole (pydicom's reader:
    big endian)."""
    stream = io.BytesIO(body)
    found: dict[int, bytes] = {}
    end = 0
    try:
        for element in data_element_generator(stream, implicit, little):
            value = element.value
            length = getattr(element, "length", UNDEFINED_LENGTH)
            if isinstance(value, bytes) and length != UNDEFINED_LENGTH and len(value) != length:
                raise InvalidInstance(
                    f"element {element.tag} says {length} bytes but the data set ends after {len(value)}"
                )
            end = stream.tell()
            if element.tag in _NAMES and isinstance(value, bytes):
                found[element.tag] = value
    except InvalidInstance:
        raise
    except Exception as exc:  # pydicom's reader fails in many ways on bytes that are not DICOM
        raise InvalidInstance(f"not a DICOM data set: {type(exc).__name__}: {exc}") from None
    if end != len(body):
        raise InvalidInstance(f"the data set ends inside an element ({len(body) - end} bytes after the last whole one)")
    return found


def _uid(found: dict[int, bytes], tag: int) -> str:
    raw = found.get(tag)
    if raw is None:
        raise InvalidInstance(f"the data set has no {_NAMES[tag]}")
    value = raw.decode("ascii", errors="replace").rstrip("\x00 ")
    if len(value) > 64 or not UID_PATTERN.fullmatch(value):
        raise InvalidInstance(f"{_NAMES[tag]} {value[:70]!r} is not a UID")
    return value
