"""The DICOM test peers themselves (tests/dicom/tools.py), against real Orthanc, dcmtk storescp and pynetdicom."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.dsutils import split_dataset
from pynetdicom.events import EventHandlerType

from tests.dicom.tools import (
    AssociationFailed,
    Orthanc,
    abort_after_store,
    ct_file,
    dcmtk_env,
    echo,
    free_port,
    make_instances,
    mr_file,
    send_raw,
    store,
    write_raw_instance,
)
from tests.helpers import wait_for_port

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def test_orthanc_stores_and_keeps_instances_across_a_restart(tmp_path: Path) -> None:
    with Orthanc(tmp_path / "pacs", ae_title="PACS") as pacs:
        assert echo(pacs.dicom_port, "PACS").returncode == 0
        sent = store(pacs.dicom_port, "PACS", [ct_file(), mr_file()])
        assert sent.returncode == 0, sent.stderr
        uids = {pacs.instance_tags(i)["SOPInstanceUID"] for i in pacs.instances()}
        assert uids == {pydicom.dcmread(f).SOPInstanceUID for f in (ct_file(), mr_file())}

        # the real dataset bytes of a new instance, sent verbatim
        (made,) = make_instances(tmp_path / "made", 1)
        _, offset = split_dataset(made)
        uid = pydicom.dcmread(made).SOPInstanceUID
        raw = write_raw_instance(tmp_path / "raw.dcm", CT_IMAGE_STORAGE, uid, made.read_bytes()[offset:])
        assert send_raw(pacs.dicom_port, "PACS", raw) == 0
        assert len(pacs.studies()) == 3

        ports = (pacs.dicom_port, pacs.http_port)
        pacs.stop()
        pacs.stop()
        assert echo(pacs.dicom_port, "PACS").returncode != 0
        assert store(pacs.dicom_port, "PACS", [ct_file()]).returncode != 0
        pacs.start()
        pacs.start()
        assert (pacs.dicom_port, pacs.http_port) == ports
        assert len(pacs.instances()) == 3


@contextmanager
def storescp(folder: Path, *options: str) -> Iterator[int]:
    """dcmtk's storescp, writing into ``folder``: its port."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = ["storescp", "-aet", "SCP", "-od", str(folder), *options, str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dcmtk_env())
    try:
        wait_for_port(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_storescu_exit_status_reports_rejections_and_failure_statuses(tmp_path: Path) -> None:
    with storescp(tmp_path / "refusing", "--refuse") as port:
        rejected = store(port, "SCP", [ct_file()])
        assert rejected.returncode == 1
        assert "Association Rejected" in rejected.stderr

    with storescp(tmp_path / "gone") as port:
        (tmp_path / "gone").rmdir()  # storescp cannot write: 0xA700 Out of Resources
        failed = store(port, "SCP", [ct_file(), mr_file()])
        assert failed.returncode == 0xA7, failed.stderr
        assert failed.stderr.count("Sending Store Request") == 1  # stops at the first failure

    with storescp(tmp_path / "ok") as port:
        assert store(port, "SCP", [ct_file(), mr_file()]).returncode == 0
        assert len(list((tmp_path / "ok").iterdir())) == 2


def test_send_raw_sends_the_body_verbatim_and_abort_after_store_aborts(tmp_path: Path) -> None:
    received: list[bytes] = []
    aborted = threading.Event()

    def on_store(event: evt.Event) -> int:
        received.append(event.request.DataSet.getvalue())  # type: ignore[union-attr]
        return 0

    ae = AE("SCP")
    ae.supported_contexts = AllStoragePresentationContexts
    ae.require_called_aet = True
    port = free_port()
    handlers: list[EventHandlerType] = [(evt.EVT_C_STORE, on_store), (evt.EVT_ABORTED, lambda _: aborted.set())]
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    try:
        body = b"\x08\x00\x16\x00UI\x04\x001.2\x00not DICOM at all \xff\xfe\x00"
        raw = write_raw_instance(tmp_path / "raw.dcm", CT_IMAGE_STORAGE, "1.2.3.4", body)
        assert send_raw(port, "SCP", raw) == 0
        assert received == [body]

        assert abort_after_store(port, "SCP", [raw, ct_file()]) == [0, 0]
        assert aborted.wait(10)

        with pytest.raises(AssociationFailed, match="Called AE title not recognised"):
            send_raw(port, "ELSEWHERE", raw)
    finally:
        assert server is not None
        server.shutdown()
