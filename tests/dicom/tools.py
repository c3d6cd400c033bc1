"""Real DICOM peers for tests and benchmarks: an Orthanc PACS, dcmtk's ``echoscu``/``storescu``, raw pynetdicom sends.

Everything here is synchronous (tests call it from threads or plain code) and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dsutils import split_dataset

from tests.helpers import free_port, lasting_port

__all__ = [
    "AssociationFailed",
    "Orthanc",
    "abort_after_store",
    "ct_file",
    "dcmtk_env",
    "echo",
    "free_port",
    "make_instances",
    "mr_file",
    "send_raw",
    "store",
    "write_raw_instance",
]

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
ECHOSCU = "echoscu"
STORESCU = "storescu"
VERIFICATION = "1.2.840.10008.1.1"


def dcmtk_env() -> dict[str, str]:
    """The environment for a dcmtk-based program (Orthanc, echoscu, storescu): this one, with ``TCP_NODELAY=1``.

    dcmtk leaves Nagle's algorithm on unless ``TCP_NODELAY`` is set; on loopback every C-STORE then waits for
    delayed ACKs: about 90 ms an instance between storescu and storescp (500 instances: 45 s), under 2 ms with it.
    """
    return {**os.environ, "TCP_NODELAY": "1"}


def _testdata(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    assert isinstance(found, str), f"pydicom's test file {name} is missing"
    path = Path(found)
    assert path.is_file(), f"pydicom's test file {path} is missing"
    return path


def ct_file() -> Path:
    """pydicom's ``CT_small.dcm``: CT Image Storage, Explicit VR Little Endian, 128x128, about 39 KB."""
    return _testdata("CT_small.dcm")


def mr_file() -> Path:
    """pydicom's ``MR_small.dcm``: MR Image Storage, Explicit VR Little Endian, 64x64, about 10 KB."""
    return _testdata("MR_small.dcm")


class Orthanc:
    """A real Orthanc PACS for a test, on free ports, with everything under ``folder``.

    ``with Orthanc(tmp_path) as pacs:`` starts it and stops it. ``stop()`` and ``start()`` may be called any number
    of times in between (each is a no-op when already in that state): the PACS comes back on the same ports with
    the same storage, so a test can take a destination down and bring it back.
    """

    START_TIMEOUT = 30.0

    def __init__(self, folder: Path, ae_title: str = "ORTHANC") -> None:
        self.folder = folder
        self.ae_title = ae_title
        self.dicom_port = lasting_port()  # it may be stopped and started again on them: see lasting_port
        self.http_port = lasting_port()
        while self.http_port == self.dicom_port:
            self.http_port = lasting_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.folder / "orthanc.json"

    @property
    def log_path(self) -> Path:
        return self.folder / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Orthanc:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _write_config(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": f"claret-test-{self.ae_title}",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "SaveJobs": False,
            "Plugins": [],
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    def start(self) -> None:
        """Start Orthanc (unless it runs) and wait until its REST API answers; raise with the log's tail if not."""
        if self.running:
            return
        self._write_config()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [ORTHANC, str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dcmtk_env(),
            )
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                self._get("/system")
                return
            except (OSError, ValueError):
                time.sleep(0.05)
        code = self._process.poll()
        self.stop()
        state = f"did not answer within {self.START_TIMEOUT:.0f} s" if code is None else f"exited with {code}"
        raise RuntimeError(f"Orthanc {state}; the end of {self.log_path}:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop Orthanc (if it runs): terminate, and kill after 10 s."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of Orthanc's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def instances(self) -> list[str]:
        """The ids (Orthanc's, not SOP Instance UIDs) of the stored instances."""
        return [str(item) for item in self._get("/instances")]

    def studies(self) -> list[str]:
        """The ids (Orthanc's) of the stored studies."""
        return [str(item) for item in self._get("/studies")]

    def instance_tags(self, instance: str) -> dict[str, Any]:
        """An instance's main tags by keyword (``SOPInstanceUID``, ``StudyInstanceUID``...), as Orthanc gives them."""
        tags = self._get(f"/instances/{instance}/simplified-tags")
        assert isinstance(tags, dict)
        return tags


def echo(port: int, called: str, calling: str = "ECHOSCU") -> subprocess.CompletedProcess[str]:
    """C-ECHO with dcmtk's ``echoscu``: the completed process (not checked; 0 when the peer answered Success)."""
    return subprocess.run(
        [ECHOSCU, "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=dcmtk_env(),
    )


def store(port: int, called: str, files: Sequence[Path], calling: str = "STORESCU") -> subprocess.CompletedProcess[str]:
    """C-STORE ``files``, in order, on one association with dcmtk's ``storescu -v``: the finished process, unchecked.

    It proposes exactly each file's own (SOP class, transfer syntax) pair, one presentation context per
    distinct pair (at most 128), through an association profile written for the call (``-xf``). No command-line
    option does that: ``-x?`` picks one preferred syntax for every file (default Explicit VR Little Endian, then
    Big Endian and Implicit as fallbacks), storescu cannot convert compressed data (a JPEG 2000 or RLE file then
    fails with "unable to convert dataset"), and without a profile only dcmtk's short list of known storage classes
    is proposed; ``-R`` proposes the files' classes, but refuses a file of an unknown SOP class before associating
    ("unknown storage SOP class", exit 1). With the profile a file of any SOP class, in any transfer syntax, goes
    out as stored (storescu still parses it: a file it cannot read is "Bad DICOM file"; use :func:`send_raw`).

    Exit status (dcmtk 3.6.7, checked against storescp and Orthanc): 0 only when every file got Success (or a
    Warning); storescu stops at the first file that fails. Non-zero when the association is rejected (1,
    "Association Rejected" with result, source and reason), nobody listens (1, "Connection refused"), the peer
    accepts no proposed context (1, "No Acceptable Presentation Contexts") or none for a file (1, "No presentation
    context for"), the peer aborts (10, "Peer aborted Association"), or a C-STORE answers a failure status: then
    the status's high byte (0xA700 Out of Resources gives 167). ``-nh`` (not used) would go on past failures and
    exit 0. Orthanc 1.10 answers Success even for an instance its Lua filter drops.
    """
    with tempfile.TemporaryDirectory(prefix="storescu-") as scratch:
        profile = Path(scratch) / "storescu.cfg"
        profile.write_text(_storescu_profile(files))
        options = ["-v", "-xf", str(profile), "FILES", "-td", "60", "-aet", calling, "-aec", called]
        return subprocess.run(
            [STORESCU, *options, "127.0.0.1", str(port), *map(str, files)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=dcmtk_env(),
        )


def _storescu_profile(files: Sequence[Path]) -> str:
    """A dcmtk association configuration (see dcmnet's asconfig.txt) whose profile FILES proposes each distinct
    (SOP class, transfer syntax) pair of ``files`` in its own presentation context. Unreadable files are left to
    storescu to report."""
    pairs: dict[tuple[str, str], None] = {}
    for path in files:
        try:
            pairs[_context(path)] = None
        except Exception:  # not DICOM, or no File Meta group: storescu says so
            continue
    if not pairs:  # storescu needs a context to associate, and then reports each file
        pairs[(VERIFICATION, str(ExplicitVRLittleEndian))] = None
    assert len(pairs) <= 128, f"{len(pairs)} (SOP class, transfer syntax) pairs: one association proposes 128 at most"
    syntaxes = list(dict.fromkeys(syntax for _, syntax in pairs))
    lines = ["[[TransferSyntaxes]]"]
    for number, syntax in enumerate(syntaxes, 1):
        lines += [f"[Syntax{number}]", f"TransferSyntax1 = {syntax}"]
    lines += ["[[PresentationContexts]]", "[Files]"]
    for number, (sop_class, syntax) in enumerate(pairs, 1):
        lines.append(f"PresentationContext{number} = {sop_class}\\Syntax{syntaxes.index(syntax) + 1}")
    lines += ["[[Profiles]]", "[Files]", "PresentationContexts = Files", ""]
    return "\n".join(lines)


def make_instances(folder: Path, count: int, *, study_uid: str | None = None) -> list[Path]:
    """Write ``count`` distinct small CT instances into ``folder``: one new series in ``study_uid`` (or a new study).

    Each is CT_small with a new SOP Instance UID and an Instance Number from 1; the paths come back in that order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(ct_file())
    template.StudyInstanceUID = study_uid or generate_uid()
    template.SeriesInstanceUID = generate_uid()
    paths = []
    for number in range(1, count + 1):
        uid = generate_uid()
        template.SOPInstanceUID = uid
        template.file_meta.MediaStorageSOPInstanceUID = uid
        template.InstanceNumber = number
        path = folder / f"{number:06d}.dcm"
        template.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_raw_instance(
    path: Path, sop_class: str, sop_instance: str, body: bytes, transfer_syntax: str = ExplicitVRLittleEndian
) -> Path:
    """Write a DICOM file whose dataset is ``body``, verbatim: anything, a truncated dataset or not DICOM at all.

    The file is a 128-byte preamble, ``DICM`` and a valid File Meta group (SOP class and instance, transfer
    syntax, implementation class), then ``body``. :func:`send_raw` sends such a body as it is.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    encoded = DicomBytesIO()
    write_file_meta_info(encoded, meta, enforce_standard=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + encoded.getvalue() + body)
    return path


class AssociationFailed(RuntimeError):
    """The peer rejected or aborted the association, or never answered a request."""


_VERBATIM = threading.Lock()


@contextmanager
def _verbatim_sends() -> Iterator[None]:
    """Make pynetdicom send a file's dataset bytes as they are, for the ``send_c_store(path)`` calls inside.

    With ``_config.STORE_SEND_CHUNKED_DATASET`` (read once, at the start of ``send_c_store``) pynetdicom sends a
    file's bytes after its File Meta group in PDU-sized chunks, never decoding them, on a presentation context with
    exactly the file's transfer syntax. It is a module-wide switch, so it is set only for the call, under a lock
    (concurrent raw sends take turns), then put back; pynetdicom code sending a path in this process meanwhile
    (an in-process server exporting, say) would send verbatim too.
    """
    with _VERBATIM:
        previous = _config.STORE_SEND_CHUNKED_DATASET
        _config.STORE_SEND_CHUNKED_DATASET = True
        try:
            yield
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = previous


def _context(path: Path) -> tuple[str, str]:
    """A file's SOP class and transfer syntax, from its File Meta group only."""
    meta, _ = split_dataset(path)
    return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)


def _associate(port: int, called: str, calling: str, files: Sequence[Path]) -> Association:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for sop_class, transfer_syntax in dict.fromkeys(_context(path) for path in files):
        ae.add_requested_context(sop_class, transfer_syntax)
    rejections: list[str] = []

    def received(event: evt.Event) -> None:
        primitive: Any = getattr(event, "primitive", None)  # an A-ASSOCIATE, A-RELEASE or A-ABORT primitive
        if getattr(primitive, "result", None) in (1, 2):
            rejections.append(f"{primitive.result_str}, {primitive.source_str}: {primitive.reason_str}")

    assoc = ae.associate("127.0.0.1", port, ae_title=called, evt_handlers=[(evt.EVT_ACSE_RECV, received)])
    if assoc.is_established and assoc.dul.socket is not None and assoc.dul.socket.socket is not None:
        # pynetdicom leaves Nagle on: each C-STORE would then wait ~40 ms for the peer's delayed ACK on loopback
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not assoc.is_established:
        reason = rejections[0] if rejections else "aborted or unreachable" if assoc.is_aborted else "no answer"
        raise AssociationFailed(f"association with {called} at 127.0.0.1:{port} failed: {reason}")
    return assoc


def _send(assoc: Association, path: Path) -> int:
    with _verbatim_sends():
        response = assoc.send_c_store(path)
    if "Status" not in response:
        raise AssociationFailed(f"no C-STORE response for {path}: the association was aborted or timed out")
    return int(response.Status)


def send_raw(port: int, called: str, path: Path, calling: str = "PYNETDICOM") -> int:
    """C-STORE a file's dataset bytes verbatim with pynetdicom, then release: the response's Status.

    The association proposes only the file's SOP class with its transfer syntax (from the File Meta group).
    Raises :class:`AssociationFailed` when the association is rejected (with the reason) or gets no response.
    """
    assoc = _associate(port, called, calling, [path])
    try:
        return _send(assoc, path)
    finally:
        if assoc.is_established:
            assoc.release()


def abort_after_store(port: int, called: str, files: Sequence[Path], calling: str = "PYNETDICOM") -> list[int]:
    """C-STORE ``files`` verbatim on one association, then A-ABORT it instead of releasing: the Statuses."""
    assoc = _associate(port, called, calling, files)
    try:
        return [_send(assoc, path) for path in files]
    finally:
        assoc.abort()
