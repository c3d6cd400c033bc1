"""The SCP's own upper layer and DIMSE handling against peers that break the protocol, over real sockets;
and its command sets read back by pynetdicom's decoder. (Well-behaved peers: test_dicom_service.py.)"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path

import pytest
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import decode
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
from pynetdicom.presentation import build_context

from services.dicom.config import parse
from services.dicom.dimse import VERIFICATION, Command, p_data, parse_command, store_response
from services.dicom.incoming import IncomingStore, Released
from services.dicom.scp import StoreScp
from services.dicom.tables import AssociationRow
from shared.metrics import Metrics
from tests.dicom.tools import echo

CONFIG = """dicom:
  scp:
    aeTitles: [{aeTitle: CLARA_CT, processorSettings: {pipeline-x: x}}]
storage: {reserveSpaceGB: 0, watermarkPercent: 99.9}
"""


class Scp:
    def __init__(self, port: int, incoming: Path) -> None:
        self.port = port
        self.incoming = incoming
        self.released: list[Released] = []
        self.recorded: list[AssociationRow] = []


@pytest.fixture
async def scp(tmp_path: Path) -> AsyncIterator[Scp]:
    config = parse(CONFIG, "dicom.yaml")
    incoming = IncomingStore(tmp_path / "incoming")
    found = Scp(0, incoming.root)
    server = StoreScp(
        lambda: config, incoming, Metrics(), on_released=found.released.append, on_recorded=found.recorded.append
    )
    found.port = await server.start("127.0.0.1", 0)
    yield found
    await server.stop()


def association_request(called: str = "CLARA_CT") -> bytes:
    request = A_ASSOCIATE()
    request.application_context_name = "1.2.840.10008.3.1.1.1"
    request.calling_ae_title, request.called_ae_title = "HOSTILE", called
    context = build_context(VERIFICATION)
    context.context_id = 1
    request.presentation_context_definition_list = [context]
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = 16382
    request.user_information = [maximum]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(request)
    return pdu.encode()


async def exchange(port: int, *sends: bytes) -> list[int]:
    """Send each chunk, reading a PDU after the first; return the types of all PDUs the SCP sent until it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    kinds = []
    try:
        for send in sends:
            writer.write(send)
            await writer.drain()
        async with asyncio.timeout(5):
            while header := await reader.read(6):
                if len(header) < 6:
                    break
                kinds.append(header[0])
                await reader.readexactly(int.from_bytes(header[2:6], "big"))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
    return kinds


async def test_a_pdu_longer_than_announced_is_never_read(scp: Scp) -> None:
    claims_4_gib = bytes([1, 0]) + struct.pack(">I", 0xFFFFFFFF)
    assert await exchange(scp.port, claims_4_gib) == [7]  # A-ABORT, nothing allocated for the claim
    assert (await asyncio.to_thread(echo, scp.port, "CLARA_CT")).returncode == 0  # and it still serves


async def test_data_before_an_association_is_aborted(scp: Scp) -> None:
    assert await exchange(scp.port, p_data(1, b"\0" * 8)) == [7]


async def test_a_message_on_a_context_never_accepted_aborts_the_association(scp: Scp) -> None:
    kinds = await exchange(scp.port, association_request(), p_data(99, b"\0" * 8))
    assert kinds == [2, 7]  # A-ASSOCIATE-AC, then A-ABORT
    await asyncio.sleep(0.1)
    assert [(row.outcome, row.calling) for row in scp.recorded] == [("aborted", "HOSTILE")]


def command_set(*elements: tuple[int, bytes]) -> bytes:
    """A command set as a peer might encode it (implicit VR little endian, group 0000)."""
    body = b"".join(struct.pack("<HHI", 0, tag, len(value)) + value for tag, value in elements)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


async def test_a_command_the_scp_does_not_answer_aborts_the_association(scp: Scp) -> None:
    c_find = command_set(
        (0x0002, b"1.2.840.10008.1.1\0"),
        (0x0100, struct.pack("<H", 0x0020)),  # C-FIND-RQ
        (0x0110, struct.pack("<H", 7)),
        (0x0800, struct.pack("<H", 0x0101)),
    )
    assert parse_command(c_find).field == 0x0020  # a well-formed command: refused for what it asks
    kinds = await exchange(scp.port, association_request(), p_data(1, c_find))
    assert kinds == [2, 7]
    c_echo = c_find.replace(struct.pack("<H", 0x0020), struct.pack("<H", 0x0030))
    release = bytes([5, 0, 0, 0, 0, 4, 0, 0, 0, 0])
    assert await exchange(scp.port, association_request(), p_data(1, c_echo), release) == [2, 4, 6]  # answered


def test_command_sets_read_back_by_pynetdicom() -> None:
    request = Command(0x0001, 42, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", has_data_set=True)
    answer = decode(BytesIO(store_response(request, 0xC000, "not a DICOM data set: at all")), True, True)
    assert (answer.CommandField, answer.MessageIDBeingRespondedTo, answer.Status) == (0x8001, 42, 0xC000)
    assert (answer.AffectedSOPClassUID, answer.AffectedSOPInstanceUID) == (request.sop_class, request.sop_instance)
    assert answer.ErrorComment == "not a DICOM data set: at all"
    assert answer.CommandGroupLength == len(store_response(request, 0xC000, "not a DICOM data set: at all")) - 12


def test_a_request_pynetdicom_encodes_parses() -> None:
    primitive = C_STORE()
    primitive.MessageID, primitive.Priority = 42, 0
    primitive.AffectedSOPClassUID, primitive.AffectedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4"
    primitive.DataSet = BytesIO(b"\0" * 4)
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    command = b"".join(
        value[1:]
        for data in message.encode_msg(1, 16382)
        for _, value in data.presentation_data_value_list
        if value[0] & 1
    )
    parsed = parse_command(command)
    assert parsed == Command(0x0001, 42, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", has_data_set=True)


async def test_a_context_in_a_transfer_syntax_claret_cannot_read_is_refused(scp: Scp) -> None:
    """Only the syntax it can check a data set in is accepted; a context offering none gets result 4."""
    request = A_ASSOCIATE()
    request.application_context_name = "1.2.840.10008.3.1.1.1"
    request.calling_ae_title, request.called_ae_title = "PRIVATE", "CLARA_CT"
    ct = "1.2.840.10008.5.1.4.1.1.2"
    private_only = build_context(ct, ["1.2.3.4.5.6.7"])  # a vendor's syntax pydicom does not know
    mixed = build_context(ct, ["1.2.3.4.5.6.7", "1.2.840.10008.1.2.1"])
    private_only.context_id, mixed.context_id = 1, 3
    request.presentation_context_definition_list = [private_only, mixed]
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = 16382
    request.user_information = [maximum]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(request)
    reader, writer = await asyncio.open_connection("127.0.0.1", scp.port)
    writer.write(pdu.encode())
    header = await reader.readexactly(6)
    body = await reader.readexactly(int.from_bytes(header[2:6], "big"))
    writer.close()
    answer = A_ASSOCIATE_AC()
    answer.decode(header + body)
    results = {
        cx.context_id: (cx.result, cx.transfer_syntax[0])
        for cx in answer.to_primitive().presentation_context_definition_results_list
    }
    assert results[1][0] == 0x04  # transfer syntaxes not supported
    assert results[3] == (0x00, "1.2.840.10008.1.2.1")  # the readable one, though offered second
