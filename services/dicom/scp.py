"""The DICOM SCP: C-ECHO and C-STORE on the configured AE titles, one asyncio task per association.

The DICOM upper layer (PS3.8) of an acceptor, on the event loop: read the A-ASSOCIATE-RQ, refuse it or
negotiate it, then answer the DIMSE messages that P-DATA-TF PDUs carry until the peer releases or aborts.
pynetdicom does the association PDUs and presentation context negotiation, :mod:`.dimse` the command sets;
the connection handling is ours because pynetdicom's own server polls each association from two threads
and so adds about a millisecond to every answer a waiting sender needs (docs/performance.md).

Any SOP class is accepted, with the first transfer syntax the peer proposes for it; instances are stored
as received (:mod:`.instances` checks them, :mod:`.incoming` keeps them). Whatever the peer sends is
hostile until checked: PDUs larger than announced, unknown contexts, messages out of order abort the
association; nothing of an association that did not end in a release is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.uid import UID
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import PresentationContext, build_context, negotiate_unrestricted
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated at import time

from services.dicom.config import DicomConfig
from services.dicom.dimse import (
    C_ECHO_RQ,
    C_STORE_RQ,
    VERIFICATION,
    Command,
    ProtocolError,
    echo_response,
    p_data,
    parse_command,
    store_response,
)
from services.dicom.incoming import IncomingStore, Released
from services.dicom.instances import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION,
    MAX_DATA_SET_BYTES,
    InvalidInstance,
    file_header,
    inspect,
    readable,
)
from services.dicom.tables import AssociationRow, Outcome
from shared.logging import get_logger
from shared.metrics import Metrics

log = get_logger("claret.dicom.scp")

ECHO_SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"]
MAX_PDU = 256 * 1024
"""The P-DATA-TF length Claret announces it receives (fewer, larger PDUs than pynetdicom's 16 KB)."""
MAX_REQUEST_PDU = 64 * 1024
"""An A-ASSOCIATE-RQ longer than this is not one: the connection is dropped before reading it."""
MAX_HELD_BYTES = 2 * 1024**3
"""Bytes of instances held in memory across associations until checked (each at most MAX_DATA_SET_BYTES)."""
NETWORK_TIMEOUT_S = 60.0
ASSOCIATION_TIMEOUT_S = 30.0
"""How long a new connection may take to send its A-ASSOCIATE-RQ."""
BIG_INSTANCE = 256 * 1024
"""Instances larger than this (or deflated) are checked and written on a worker thread, not on the event
loop: walking a data set of many tiny elements costs about 0.1 s a MiB."""

# PDU types (PS3.8 9.3)
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, DATA, RELEASE_RQ, RELEASE_RP, ABORT = range(1, 8)
RELEASE_RP_PDU = bytes([RELEASE_RP, 0, 0, 0, 0, 4, 0, 0, 0, 0])
ABORT_PDU = bytes([ABORT, 0, 0, 0, 0, 4, 0, 0, 2, 0])  # source: service provider, no reason given

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

# A-ASSOCIATE-RJ (result, source, reason): permanent for who is asking, transient for how busy we are.
CALLED_UNKNOWN = (0x01, 0x01, 0x07)
CALLING_UNKNOWN = (0x01, 0x01, 0x03)
CONGESTED = (0x02, 0x03, 0x01)
OVER_LIMIT = (0x02, 0x03, 0x02)


@dataclass
class _Receiving:
    """An accepted association, while it is open."""

    id: str
    called: str
    calling: str
    address: str
    started: float
    contexts: dict[int, PresentationContext]
    """The accepted presentation contexts, by id."""
    studies: dict[str, dict[str, int]] = field(default_factory=dict)
    bytes: int = 0
    released: bool = False
    held: int = 0
    """Bytes of its messages not yet answered (see :meth:`StoreScp._hold`)."""


@dataclass
class _Message:
    """A DIMSE message being reassembled from its fragments."""

    context: int
    command: list[bytes] = field(default_factory=list)
    data_set: list[bytes] = field(default_factory=list)
    size: int = 0
    header: Command | None = None


class StoreScp:
    """Serves ``(host, port)``; ``config()`` is read for each association, so a reload applies to the next one."""

    def __init__(
        self,
        config: Callable[[], DicomConfig],
        incoming: IncomingStore,
        metrics: Metrics,
        *,
        on_released: Callable[[Released], None],
        on_recorded: Callable[[AssociationRow], None],
    ) -> None:
        self._config = config
        self._incoming = incoming
        self._metrics = metrics
        self._on_released = on_released
        self._on_recorded = on_recorded
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._accepted = 0
        self._held = 0
        self._stopping = False

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (``port`` 0 picks one)."""
        self._server = await asyncio.start_server(self._serve, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and abort the open associations (their instances are removed: the peer was not
        told the association completed, so it sends them again)."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopping:  # accepted just before the stop, started after it
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else "?"
        with contextlib.suppress(OSError):  # DIMSE is small requests and answers: no Nagle delays
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        receiving: _Receiving | None = None
        try:
            receiving = await self._associate(reader, writer, address)
            if receiving is not None:
                receiving.released = await self._exchange(reader, writer, receiving)
        except (ProtocolError, InvalidInstance) as exc:
            log.warning("association aborted", address=address, reason=str(exc))
            writer.write(ABORT_PDU)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
            log.info("connection lost", address=address, reason=type(exc).__name__)
        except Exception:  # a bug here must not leave the peer waiting, nor keep what it sent
            log.exception("association failed", address=address)
            writer.write(ABORT_PDU)
        finally:
            self._connections.discard(task)
            if receiving is not None:
                self._accepted -= 1
                self._held -= receiving.held
                try:
                    self._ended(receiving)
                except Exception:
                    log.exception("association not handed on", association=receiving.id)
            writer.close()

    # Association

    async def _associate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str
    ) -> _Receiving | None:
        async with asyncio.timeout(ASSOCIATION_TIMEOUT_S):
            kind, pdu = await _read_pdu(reader, MAX_REQUEST_PDU)
        if kind != ASSOCIATE_RQ:
            raise ProtocolError(f"expected an A-ASSOCIATE-RQ, got PDU type {kind}")
        request_pdu = A_ASSOCIATE_RQ()
        try:
            request_pdu.decode(pdu)
            request = request_pdu.to_primitive()
        except Exception as exc:
            raise ProtocolError(f"an A-ASSOCIATE-RQ that does not decode: {exc}") from None
        called, calling = str(request.called_ae_title).strip(), str(request.calling_ae_title).strip()
        config = self._config()
        refusal = self._refusal(config, called, calling, address)
        if refusal is not None:
            rejection, reason = refusal
            writer.write(_reject(*rejection))
            await _drain(writer)
            log.info("association rejected", called=called, calling=calling, address=address, reason=reason)
            now = time.time()
            self._record(AssociationRow(_new_id(), called, calling, address, "rejected", reason, 0, 0, now, now))
            return None
        proposed, unreadable = _readable_syntaxes(request.presentation_context_definition_list)
        contexts, roles = negotiate_unrestricted(proposed, _echo_contexts(config.verification))
        contexts = sorted([*contexts, *unreadable], key=lambda cx: int(cx.context_id or 0))
        writer.write(_accept(request, contexts, roles))
        self._accepted += 1
        accepted = {int(cx.context_id or 0): cx for cx in contexts if cx.result == 0x00}
        return _Receiving(_new_id(), called, calling, address, time.time(), accepted)

    def _refusal(
        self, config: DicomConfig, called: str, calling: str, address: str
    ) -> tuple[tuple[int, int, int], str] | None:
        ae_title = config.ae_title(called)
        if ae_title is None:
            return CALLED_UNKNOWN, f"called AE title {called!r} is not configured"
        why = config.calling_refusal(ae_title, calling, address)
        if why is not None:
            return CALLING_UNKNOWN, why
        full = self._incoming.space_problem(config.watermark_percent, config.reserve_space_gb * 2**30)
        if full is not None:
            return CONGESTED, full
        if self._accepted >= config.max_associations:
            return OVER_LIMIT, f"the limit of {config.max_associations} simultaneous associations is reached"
        return None

    # Messages

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, receiving: _Receiving
    ) -> bool:
        """Answer DIMSE messages until the peer releases (True) or aborts (False)."""
        contexts = receiving.contexts
        message: _Message | None = None
        while True:
            async with asyncio.timeout(NETWORK_TIMEOUT_S):
                kind, pdu = await _read_pdu(reader, MAX_PDU)
            if kind == RELEASE_RQ:
                if message is not None:
                    raise ProtocolError("a release in the middle of a message")
                writer.write(RELEASE_RP_PDU)
                await _drain(writer)
                return True
            if kind == ABORT:
                return False
            if kind != DATA:
                raise ProtocolError(f"unexpected PDU type {kind} in an association")
            for context, control, fragment in _fragments(pdu):
                if context not in contexts:
                    raise ProtocolError(f"presentation context {context} was not accepted")
                message = message or _Message(context)
                if context != message.context:
                    raise ProtocolError("fragments of two messages interleaved")
                self._hold(receiving, len(fragment))
                if _add_fragment(message, control, fragment):
                    await self._answer(message, contexts[context], receiving, writer)
                    self._hold(receiving, -message.size)
                    message = None
            await _drain(writer)

    def _hold(self, receiving: _Receiving, size: int) -> None:
        """Count bytes held in messages not yet answered, across associations: past :data:`MAX_HELD_BYTES`
        the association that asks for more is aborted (many peers sending large instances at once must not
        exhaust memory)."""
        receiving.held += size
        self._held += size
        if self._held > MAX_HELD_BYTES:
            raise ProtocolError(f"more than {MAX_HELD_BYTES} bytes of instances are being received at once")

    async def _answer(
        self, message: _Message, context: PresentationContext, receiving: _Receiving, writer: asyncio.StreamWriter
    ) -> None:
        command = message.header
        assert command is not None
        if command.field == C_ECHO_RQ:
            writer.write(p_data(message.context, echo_response(command)))
            return
        if command.field != C_STORE_RQ or context.abstract_syntax == VERIFICATION:
            raise ProtocolError(f"DIMSE command 0x{command.field:04X} is not answered on {context.abstract_syntax}")
        body = b"".join(message.data_set)
        syntax = str(context.transfer_syntax[0])
        if len(body) > BIG_INSTANCE or UID(syntax).is_deflated:
            status, comment = await asyncio.to_thread(self._store, receiving, command, body, syntax)
        else:
            status, comment = self._store(receiving, command, body, syntax)
        writer.write(p_data(message.context, store_response(command, status, comment)))

    def _store(self, receiving: _Receiving, command: Command, body: bytes, syntax: str) -> tuple[int, str]:
        """Check and keep one instance: the C-STORE status and, on failure, why."""
        config = self._config()
        try:
            instance = inspect(body, syntax)
        except InvalidInstance as exc:
            return self._refused(receiving, CANNOT_UNDERSTAND, str(exc))
        if (instance.sop_instance, instance.sop_class) != (command.sop_instance, command.sop_class):
            return self._refused(
                receiving, DOES_NOT_MATCH, "the data set's SOP class or instance UID is not the request's"
            )
        ae_title = config.ae_title(receiving.called)
        if ae_title is not None and instance.sop_class in ae_title.ignored_sop_classes:
            self._metrics.dicom_instances.labels("ignored").inc()
            return SUCCESS, ""
        full = self._incoming.space_problem(config.watermark_percent, config.reserve_space_gb * 2**30)
        if full is not None:
            return self._refused(receiving, OUT_OF_RESOURCES, full)
        try:
            new = self._incoming.write(receiving.id, instance, file_header(instance, syntax, receiving.calling), body)
        except OSError as exc:
            return self._refused(receiving, OUT_OF_RESOURCES, f"cannot store the instance: {exc.strerror}")
        series = receiving.studies.setdefault(instance.study, {})
        series[instance.series] = series.get(instance.series, 0) + int(new)  # an instance sent again counts once
        receiving.bytes += len(body)
        self._metrics.dicom_instances.labels("stored").inc()
        return SUCCESS, ""

    def _refused(self, receiving: _Receiving, status: int, reason: str) -> tuple[int, str]:
        log.warning("instance refused", association=receiving.id, calling=receiving.calling, reason=reason)
        self._metrics.dicom_instances.labels("refused").inc()
        return status, reason

    # Endings

    def _ended(self, receiving: _Receiving) -> None:
        """Hand a released association's instances on; remove anything else's. Record it either way."""
        now = time.time()
        instances = sum(sum(series.values()) for series in receiving.studies.values())
        if receiving.released and instances:
            released = Released(
                receiving.id,
                receiving.called,
                receiving.calling,
                receiving.address,
                receiving.studies,
                receiving.started,
                now,
            )
            self._incoming.release(released)  # before grouping: a crash from here on keeps the instances
            self._on_released(released)
        elif not receiving.released:
            self._incoming.remove(receiving.id)  # an aborted association leaves nothing
        outcome: Outcome = "released" if receiving.released else "aborted"
        row = AssociationRow(
            receiving.id,
            receiving.called,
            receiving.calling,
            receiving.address,
            outcome,
            "",
            instances,
            receiving.bytes,
            receiving.started,
            now,
        )
        log.info("association ended", association=row.id, outcome=outcome, calling=row.calling, instances=instances)
        self._record(row)

    def _record(self, row: AssociationRow) -> None:
        self._metrics.dicom_associations.labels(row.outcome).inc()
        self._on_recorded(row)


async def _read_pdu(reader: asyncio.StreamReader, limit: int) -> tuple[int, bytes]:
    """One PDU, header included: (type, bytes). A length over ``limit`` is refused before it is read."""
    header = await reader.readexactly(6)
    length = int.from_bytes(header[2:6], "big")
    if length > limit:
        raise ProtocolError(f"a PDU of {length} bytes (at most {limit} were announced)")
    return header[0], header + await reader.readexactly(length)


def _fragments(pdu: bytes) -> list[tuple[int, int, bytes]]:
    """The presentation data values of a P-DATA-TF PDU: (context id, message control header, fragment)."""
    found = []
    position, end = 6, len(pdu)
    while position < end:
        if end - position < 6:
            raise ProtocolError("a P-DATA-TF PDU ends inside an item header")
        length = int.from_bytes(pdu[position : position + 4], "big")
        if length < 2 or position + 4 + length > end:
            raise ProtocolError(f"a presentation data value item of {length} bytes does not fit its PDU")
        found.append((pdu[position + 4], pdu[position + 5], pdu[position + 6 : position + 4 + length]))
        position += 4 + length
    return found


def _add_fragment(message: _Message, control: int, fragment: bytes) -> bool:
    """Add a fragment to ``message``; True once the message is whole (its command, and data set if any)."""
    is_command, is_last = bool(control & 0x01), bool(control & 0x02)
    message.size += len(fragment)
    if message.size > MAX_DATA_SET_BYTES:
        raise ProtocolError(f"a message larger than {MAX_DATA_SET_BYTES} bytes")
    if is_command:
        if message.header is not None:
            raise ProtocolError("a command fragment after the command was complete")
        message.command.append(fragment)
        if not is_last:
            return False
        message.header = parse_command(b"".join(message.command))
        return not message.header.has_data_set
    if message.header is None:
        raise ProtocolError("a data set fragment before its command")
    message.data_set.append(fragment)
    return is_last


async def _drain(writer: asyncio.StreamWriter) -> None:
    """Wait for what was written to go out; a peer that stops reading is a lost connection."""
    async with asyncio.timeout(NETWORK_TIMEOUT_S):
        await writer.drain()


def _readable_syntaxes(
    proposed: list[PresentationContext],
) -> tuple[list[PresentationContext], list[PresentationContext]]:
    """The proposed contexts with only the transfer syntaxes Claret can check a data set in, and the
    contexts with none of those, answered 'transfer syntaxes not supported' (PS3.8 9.3.3.2)."""
    kept: list[PresentationContext] = []
    refused: list[PresentationContext] = []
    for context in proposed:
        syntaxes: list[str | bytes | UID] = [syntax for syntax in context.transfer_syntax if _readable(syntax)]
        copy = PresentationContext()
        copy.context_id, copy.abstract_syntax = context.context_id, context.abstract_syntax
        copy.transfer_syntax = syntaxes or list(context.transfer_syntax[:1])
        if syntaxes:
            kept.append(copy)
        else:
            copy.result = 0x04
            refused.append(copy)
    return kept, refused


def _readable(syntax: str) -> bool:
    try:
        return readable(syntax)
    except ValueError:
        return False


def _echo_contexts(verification: bool) -> list[PresentationContext]:
    return [build_context(Verification, ECHO_SYNTAXES)] if verification else []


def _accept(
    request: A_ASSOCIATE, contexts: list[PresentationContext], roles: list[SCP_SCU_RoleSelectionNegotiation]
) -> bytes:
    reply = A_ASSOCIATE()
    reply.application_context_name = request.application_context_name
    reply.calling_ae_title = request.calling_ae_title
    reply.called_ae_title = request.called_ae_title
    reply.result = 0x00
    reply.presentation_context_definition_results_list = contexts
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = MAX_PDU
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = IMPLEMENTATION_VERSION
    reply.user_information = [maximum, implementation, version, *roles]
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(reply)
    return pdu.encode()


def _reject(result: int, source: int, diagnostic: int) -> bytes:
    reply = A_ASSOCIATE()
    reply.result, reply.result_source, reply.diagnostic = result, source, diagnostic
    pdu = A_ASSOCIATE_RJ()
    pdu.from_primitive(reply)
    return pdu.encode()


def _new_id() -> str:
    return secrets.token_hex(8)
