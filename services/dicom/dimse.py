"""DIMSE command sets (PS3.7 E), the little the SCP reads and writes of them, and the P-DATA-TF framing.

Command sets are always implicit VR little endian, group 0000: a handful of elements, parsed and encoded
here directly because each C-STORE passes through twice (the request in, the response out); building
pydicom datasets for them cost more than checking and storing a small instance.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from services.dicom.instances import even

C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
NO_DATA_SET = 0x0101
VERIFICATION = "1.2.840.10008.1.1"

_HEADER = struct.Struct("<HHI")
_US = struct.Struct("<H")
# Elements of group 0000, by element number
AFFECTED_SOP_CLASS, COMMAND_FIELD, MESSAGE_ID, RESPONDED_TO = 0x0002, 0x0100, 0x0110, 0x0120
DATA_SET_TYPE, STATUS, ERROR_COMMENT, AFFECTED_SOP_INSTANCE = 0x0800, 0x0900, 0x0902, 0x1000


class ProtocolError(Exception):
    """The peer broke the upper layer or DIMSE protocol: the association is aborted."""


@dataclass(frozen=True)
class Command:
    """What the SCP needs of a request's command set."""

    field: int
    message_id: int
    sop_class: str
    sop_instance: str
    has_data_set: bool


def parse_command(data: bytes) -> Command:
    elements: dict[int, bytes] = {}
    position, end = 0, len(data)
    while position < end:
        if end - position < 8:
            raise ProtocolError("a command set ends inside an element")
        group, element, length = _HEADER.unpack_from(data, position)
        position += 8
        if group != 0x0000 or position + length > end:
            raise ProtocolError(f"a command set with element ({group:04X},{element:04X}) of {length} bytes")
        elements[element] = data[position : position + length]
        position += length
    if COMMAND_FIELD not in elements or MESSAGE_ID not in elements:
        raise ProtocolError("a command set without its command field or message id")
    return Command(
        field=_unsigned(elements[COMMAND_FIELD]),
        message_id=_unsigned(elements[MESSAGE_ID]),
        sop_class=_text(elements.get(AFFECTED_SOP_CLASS, b"")),
        sop_instance=_text(elements.get(AFFECTED_SOP_INSTANCE, b"")),
        has_data_set=_unsigned(elements.get(DATA_SET_TYPE, _US.pack(NO_DATA_SET))) != NO_DATA_SET,
    )


def echo_response(request: Command) -> bytes:
    return _command_set(VERIFICATION, C_ECHO_RSP, request.message_id, 0x0000, "", "")


def store_response(request: Command, status: int, comment: str = "") -> bytes:
    return _command_set(request.sop_class, C_STORE_RSP, request.message_id, status, comment, request.sop_instance)


def p_data(context: int, command_set: bytes) -> bytes:
    """A P-DATA-TF PDU carrying a whole command set as one fragment (control header: command, last)."""
    item = bytes((context, 0x03)) + command_set
    return struct.pack(">BBII", 0x04, 0, len(item) + 4, len(item)) + item


def _command_set(sop_class: str, field: int, responded_to: int, status: int, comment: str, instance: str) -> bytes:
    body = b"".join(
        (
            _element(AFFECTED_SOP_CLASS, even(sop_class.encode(), b"\0")),
            _element(COMMAND_FIELD, _US.pack(field)),
            _element(RESPONDED_TO, _US.pack(responded_to)),
            _element(DATA_SET_TYPE, _US.pack(NO_DATA_SET)),
            _element(STATUS, _US.pack(status)),
            _element(ERROR_COMMENT, even(comment[:64].encode("ascii", "replace"), b" ")) if comment else b"",
            _element(AFFECTED_SOP_INSTANCE, even(instance.encode(), b"\0")) if instance else b"",
        )
    )
    return _element(0x0000, struct.pack("<I", len(body))) + body


def _element(element: int, value: bytes) -> bytes:
    return _HEADER.pack(0x0000, element, len(value)) + value


def _unsigned(value: bytes) -> int:
    if len(value) != 2:
        raise ProtocolError(f"a command element of {len(value)} bytes where 2 belong")
    return int(_US.unpack(value)[0])


def _text(value: bytes) -> str:
    return value.decode("ascii", errors="replace").rstrip("\0 ")
