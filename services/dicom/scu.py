"""The DICOM SCU side: find a job's DICOM results and send them to a destination by C-STORE.

Results are operator outputs, written by code we do not trust: they are walked by directory descriptor
without following links, and only regular files that carry the DICOM preamble (``DICM`` at byte 128) are
taken, so a link planted in the outputs cannot send a host file to a PACS. Instances are sent as stored,
in their own transfer syntax (no transcoding).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config, evt

from services.dicom.config import Destination

MAGIC_AT = 128
MAGIC = b"DICM"
MAX_CONTEXTS = 128
"""An association proposes at most 128 presentation contexts (one per SOP class and transfer syntax)."""


def no_delay(event: evt.Event) -> None:
    """Turn Nagle's algorithm off on an association's socket (``EVT_CONN_OPEN``): DIMSE is small requests
    and answers, and with Nagle and delayed acknowledgements each C-STORE waits tens of milliseconds."""
    transport = event.assoc.dul.socket
    if transport is not None and transport.socket is not None:
        transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ExportError(Exception):
    """Sending failed; the message says where and why."""


def find_results(payload: Path, operators: tuple[str, ...]) -> list[Path]:
    """The DICOM files in the outputs of ``operators`` (``operators/<name>/...`` of the payload), sorted."""
    found: list[Path] = []
    for name in operators:
        folder = payload / "operators" / name
        if folder.is_symlink() or not folder.is_dir():
            continue
        for top, _dirs, files, dir_fd in os.fwalk(folder, follow_symlinks=False):
            found.extend(Path(top) / file for file in files if _is_dicom(file, dir_fd))
    return sorted(found)


def _is_dicom(name: str, dir_fd: int) -> bool:
    with contextlib.suppress(OSError):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return False
            head = os.pread(fd, MAGIC_AT + len(MAGIC), 0)
        finally:
            os.close(fd)
        return head[MAGIC_AT:] == MAGIC
    return False


def send(destination: Destination, calling: str, files: list[Path], timeout: float = 30.0) -> None:
    """C-STORE every file to ``destination`` over one association; :class:`ExportError` on the first failure."""
    contexts = _contexts(files)
    if len(contexts) > MAX_CONTEXTS:
        raise ExportError(f"{len(contexts)} kinds of instance do not fit one association ({MAX_CONTEXTS})")
    # Each file's bytes after its File Meta group go out in PDU-sized chunks as stored: never decoded and
    # re-encoded, never read whole into memory (operator outputs may be large, and are not trusted).
    _config.STORE_SEND_CHUNKED_DATASET = True
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class, syntax in sorted(contexts):
        ae.add_requested_context(sop_class, syntax)
    where = f"{destination.name} ({destination.ae_title} at {destination.host}:{destination.port})"
    assoc = ae.associate(
        destination.host, destination.port, ae_title=destination.ae_title, evt_handlers=[(evt.EVT_CONN_OPEN, no_delay)]
    )
    if not assoc.is_established:
        raise ExportError(f"{where}: {_refusal(assoc)}")
    try:
        for path in files:
            reply = assoc.send_c_store(path)
            status = getattr(reply, "Status", None)
            if status is None:
                raise ExportError(f"{where}: no answer to the C-STORE of {path.name}")
            if status != 0x0000 and not 0xB000 <= status <= 0xBFFF:  # warnings are stored instances
                raise ExportError(f"{where}: C-STORE of {path.name} failed with status 0x{status:04X}")
    finally:
        if assoc.is_established:
            assoc.release()


def _contexts(files: list[Path]) -> set[tuple[str, str]]:
    contexts = set()
    for path in files:
        try:
            meta = read_file_meta_info(path)
            contexts.add((str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
        except Exception as exc:  # an output that only looks like DICOM
            raise ExportError(f"{path.name} has no readable file meta information: {exc}") from None
    return contexts


def _refusal(assoc: object) -> str:
    if getattr(assoc, "is_rejected", False):
        return "the association was rejected"
    # pynetdicom tells a refused connection from an abort only in its log
    return "no association: nothing answered, or the destination aborted it"
