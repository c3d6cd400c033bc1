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
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")

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


def inspect(body: bytes, transfer_syntax: str) -> Instance:
    """Walk every top-level element of ``body`` (a data set encoded in ``transfer_syntax``) and return its
    UIDs; :class:`InvalidInstance` when the encoding is broken or a UID is missing or malformed."""
    syntax = UID(transfer_syntax)
    if syntax.is_deflated:
        try:
            body = zlib.decompress(body, -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise InvalidInstance(f"the deflated data set does not inflate: {exc}") from None
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
            _element(0x0002, b"UI", _padded(instance.sop_class, b"\0")),
            _element(0x0003, b"UI", _padded(instance.sop_instance, b"\0")),
            _element(0x0010, b"UI", _padded(transfer_syntax, b"\0")),
            _element(0x0012, b"UI", _padded(IMPLEMENTATION_CLASS_UID, b"\0")),
            _element(0x0013, b"SH", _padded(IMPLEMENTATION_VERSION, b" ")),
            _element(0x0016, b"AE", _padded(source_ae[:16], b" ")),
        )
    )
    return PREAMBLE + _element(0x0000, b"UL", struct.pack("<I", len(elements))) + elements


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    """One group 0002 element, explicit VR little endian."""
    if vr == b"OB":
        return struct.pack("<HH2sHI", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    raw = text.encode("ascii")
    return raw + pad if len(raw) % 2 else raw


def _walk(body: bytes, implicit: bool, little: bool) -> dict[int, bytes]:
    """The raw values of the identifying tags, after checking every element is whole."""
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
    if len(value) > 64 or not _UID.fullmatch(value):
        raise InvalidInstance(f"{_NAMES[tag]} {value[:70]!r} is not a UID")
    return value
