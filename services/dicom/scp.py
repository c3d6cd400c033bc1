"""The DICOM SCP: pynetdicom's threaded server answering C-ECHO and C-STORE on the configured AE titles.

pynetdicom runs each association on threads of its own and calls the handlers here on them. They decide
(at association time) whom to refuse, check and store each instance (:mod:`.instances`, :mod:`.incoming`),
and hand what happened to the event loop through ``post``: a released association's instances to the
grouping, every association's record to the table. Nothing here touches the database or the event loop.

Any SOP class is accepted, with the first transfer syntax the peer proposes for it (stored as received,
never transcoded): pynetdicom's unrestricted storage mode.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated at import time
from pynetdicom.transport import ThreadedAssociationServer

from services.dicom.config import DicomConfig
from services.dicom.incoming import IncomingStore, Released
from services.dicom.instances import InvalidInstance, file_header, inspect
from services.dicom.scu import no_delay
from services.dicom.tables import AssociationRow, Outcome
from shared.logging import get_logger
from shared.metrics import Metrics

log = get_logger("claret.dicom.scp")

ALL_SYNTAXES = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
]
"""Transfer syntaxes offered for C-ECHO (storage takes whatever the peer proposes)."""

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

CONNECTION_POLL_S = 0.0001

# A-ASSOCIATE-RJ (result, source, reason): permanent for who is asking, transient for how busy we are.
CALLED_UNKNOWN = (0x01, 0x01, 0x07)
CALLING_UNKNOWN = (0x01, 0x01, 0x03)
CONGESTED = (0x02, 0x03, 0x01)

Post = Callable[[Callable[..., None], Any], object]
"""Run ``fn(arg)`` on the event loop (``loop.call_soon_threadsafe``)."""


@dataclass
class _Receiving:
    """An accepted association, while it is open."""

    id: str
    called: str
    calling: str
    address: str
    started: float
    studies: dict[str, dict[str, int]] = field(default_factory=dict)
    bytes: int = 0
    released: bool = False


class StoreScp:
    """Serves ``(host, port)``; ``config()`` is read at each association, so a reload applies to the next one."""

    def __init__(
        self,
        config: Callable[[], DicomConfig],
        incoming: IncomingStore,
        metrics: Metrics,
        *,
        on_released: Callable[[Released], None],
        on_recorded: Callable[[AssociationRow], None],
        post: Post,
    ) -> None:
        self._config = config
        self._incoming = incoming
        self._metrics = metrics
        self._on_released = on_released
        self._on_recorded = on_recorded
        self._post = post
        self._open: dict[int, _Receiving] = {}
        self._lock = threading.Lock()
        self._server: ThreadedAssociationServer | None = None

    def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (``port`` 0 picks one)."""
        config = self._config()
        _config.UNRESTRICTED_STORAGE_SERVICE = True  # any SOP class: this process's only acceptor is this one
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # a line per message; ours say what happened
        ae = AE(ae_title=config.scu_ae_title)
        ae.maximum_associations = config.max_associations
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 60
        if config.verification:
            ae.add_supported_context(Verification, ALL_SYNTAXES)
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, _connected),
            (evt.EVT_REQUESTED, self._requested),
            (evt.EVT_ACCEPTED, self._accepted),
            (evt.EVT_REJECTED, self._over_limit),
            (evt.EVT_C_ECHO, self._echo),
            (evt.EVT_C_STORE, self._store),
            (evt.EVT_RELEASED, self._released),
            (evt.EVT_CONN_CLOSE, self._closed),
        ]
        server = ae.start_server((host, port), block=False, evt_handlers=handlers)
        assert server is not None  # not blocking: the server is returned
        self._server = server
        return int(server.server_address[1])

    def stop(self) -> None:
        """Stop listening and abort the open associations (their instances are removed: the peer was not
        told they were kept, so it sends them again)."""
        if self._server is not None:
            self._server.ae.shutdown()
            self._server = None

    def apply(self, config: DicomConfig) -> None:
        """A reloaded configuration's association limit (the rest is read per association)."""
        if self._server is not None:
            self._server.ae.maximum_associations = config.max_associations

    # Handlers: on pynetdicom's threads.

    def _requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        called, calling, address = _peer(assoc)
        refusal = self._refusal(called, calling, address)
        if refusal is None:
            assoc.acceptor.ae_title = called  # answer as the AE title asked for
            return
        rejection, reason = refusal
        log.info("association rejected", called=called, calling=calling, address=address, reason=reason)
        assoc.acse.send_reject(*rejection)
        assoc.kill()  # waits until the rejection went out, as pynetdicom's own rejections do
        now = time.time()
        self._record(AssociationRow(_new_id(), called, calling, address, "rejected", reason, 0, 0, now, now))

    def _over_limit(self, event: evt.Event) -> None:
        """pynetdicom's own rejection (ours above never reach it): too many associations at once."""
        called, calling, address = _peer(event.assoc)
        reason = f"the limit of {event.assoc.ae.maximum_associations} simultaneous associations is reached"
        log.info("association rejected", called=called, calling=calling, address=address, reason=reason)
        now = time.time()
        self._record(AssociationRow(_new_id(), called, calling, address, "rejected", reason, 0, 0, now, now))

    def _refusal(self, called: str, calling: str, address: str) -> tuple[tuple[int, int, int], str] | None:
        config = self._config()
        ae_title = config.ae_title(called)
        if ae_title is None:
            return CALLED_UNKNOWN, f"called AE title {called!r} is not configured"
        why = config.calling_refusal(ae_title, calling, address)
        if why is not None:
            return CALLING_UNKNOWN, why
        full = self._incoming.space_problem(config.watermark_percent, config.reserve_space_gb * 2**30)
        if full is not None:
            return CONGESTED, full
        return None

    def _accepted(self, event: evt.Event) -> None:
        called, calling, address = _peer(event.assoc)
        with self._lock:
            self._open[id(event.assoc)] = _Receiving(_new_id(), called, calling, address, time.time())

    def _echo(self, event: evt.Event) -> int:
        return SUCCESS

    def _store(self, event: evt.Event) -> int | Dataset:
        receiving = self._receiving(event.assoc)
        if receiving is None:  # not accepted through _accepted: cannot happen, but never store blindly
            return _failure(CANNOT_UNDERSTAND, "association unknown")
        config = self._config()
        ae_title = config.ae_title(receiving.called)
        request = cast(C_STORE, event.request)
        body = request.DataSet.getvalue() if request.DataSet is not None else b""
        try:
            instance = inspect(body, event.context.transfer_syntax)
        except InvalidInstance as exc:
            return self._refused(receiving, CANNOT_UNDERSTAND, str(exc))
        if instance.sop_instance != request.AffectedSOPInstanceUID or instance.sop_class != request.AffectedSOPClassUID:
            return self._refused(
                receiving, DOES_NOT_MATCH, "the data set's SOP class or instance UID is not the request's"
            )
        if ae_title is not None and instance.sop_class in ae_title.ignored_sop_classes:
            self._metrics.dicom_instances.labels("ignored").inc()
            return SUCCESS
        full = self._incoming.space_problem(config.watermark_percent, config.reserve_space_gb * 2**30)
        if full is not None:
            return self._refused(receiving, OUT_OF_RESOURCES, full)
        try:
            header = file_header(instance, event.context.transfer_syntax, receiving.calling)
            self._incoming.write(receiving.id, instance, header, body)
        except OSError as exc:
            return self._refused(receiving, OUT_OF_RESOURCES, f"cannot store the instance: {exc.strerror}")
        series = receiving.studies.setdefault(instance.study, {})
        series[instance.series] = series.get(instance.series, 0) + 1
        receiving.bytes += len(body)
        self._metrics.dicom_instances.labels("stored").inc()
        return SUCCESS

    def _refused(self, receiving: _Receiving, status: int, reason: str) -> Dataset:
        log.warning("instance refused", association=receiving.id, calling=receiving.calling, reason=reason)
        self._metrics.dicom_instances.labels("refused").inc()
        return _failure(status, reason)

    def _released(self, event: evt.Event) -> None:
        receiving = self._receiving(event.assoc)
        if receiving is None:
            return
        receiving.released = True
        released = Released(
            receiving.id,
            receiving.called,
            receiving.calling,
            receiving.address,
            receiving.studies,
            receiving.started,
            time.time(),
        )
        if released.instances:
            self._incoming.release(released)  # before the loop hears of it: a crash now keeps the instances
            self._post(self._on_released, released)

    def _closed(self, event: evt.Event) -> None:
        with self._lock:
            receiving = self._open.pop(id(event.assoc), None)
        if receiving is None:
            return  # rejected, or never accepted
        outcome: Outcome = "released" if receiving.released else "aborted"
        if not receiving.released:
            self._incoming.remove(receiving.id)  # an aborted association leaves nothing
        instances = sum(sum(s.values()) for s in receiving.studies.values())
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
            time.time(),
        )
        log.info("association ended", association=row.id, outcome=outcome, calling=row.calling, instances=instances)
        self._record(row)

    def _record(self, row: AssociationRow) -> None:
        self._metrics.dicom_associations.labels(row.outcome).inc()
        self._post(self._on_recorded, row)

    def _receiving(self, assoc: Association) -> _Receiving | None:
        with self._lock:
            return self._open.get(id(assoc))


def _connected(event: evt.Event) -> None:
    no_delay(event)
    # pynetdicom's connection thread sleeps this long between looks at an idle socket (1 ms by default), and
    # a sender that waits for each answer waits that long for every instance (bench/dicom_ingest.py).
    dul = event.assoc.dul
    if hasattr(dul, "_run_loop_delay"):
        dul._run_loop_delay = CONNECTION_POLL_S


def _peer(assoc: Association) -> tuple[str, str, str]:
    primitive = assoc.requestor.primitive
    called = str(primitive.called_ae_title if primitive is not None else "").strip()
    calling = str(primitive.calling_ae_title if primitive is not None else "").strip()
    return called, calling, str(assoc.requestor.address)


def _failure(status: int, comment: str) -> Dataset:
    reply = Dataset()
    reply.Status = status
    reply.ErrorComment = comment[:64]  # LO: at most 64 characters
    return reply


def _new_id() -> str:
    return secrets.token_hex(8)
