"""What the SCP checks of a received data set (services/dicom/instances.py), and the file header it writes,
read back by pydicom and by dcmtk's dcmdump."""

from __future__ import annotations

import io
import subprocess
import zlib
from pathlib import Path

import pydicom
import pytest
from pynetdicom.dsutils import split_dataset

from services.dicom import instances
from services.dicom.instances import InvalidInstance, _walk, file_header, inspect, walk_little_endian
from tests.dicom.tools import ct_file, mr_file

EXPLICIT = "1.2.840.10008.1.2.1"


def dataset_bytes(path: Path) -> tuple[bytes, str]:
    meta, offset = split_dataset(path)
    return path.read_bytes()[offset:], str(meta.TransferSyntaxUID)


@pytest.mark.parametrize("path", [ct_file(), mr_file()], ids=["CT", "MR"])
def test_a_whole_data_set_gives_its_uids(path: Path) -> None:
    body, syntax = dataset_bytes(path)
    original = pydicom.dcmread(path, stop_before_pixels=True)
    instance = inspect(body, syntax)
    assert (instance.sop_class, instance.sop_instance) == (original.SOPClassUID, original.SOPInstanceUID)
    assert (instance.study, instance.series) == (original.StudyInstanceUID, original.SeriesInstanceUID)


@pytest.mark.parametrize(
    ("cut", "reason"),
    [(-1000, "says 32768 bytes but the data set ends"), (999, "ends inside an element"), (300, "no StudyInstanceUID")],
)
def test_a_data_set_cut_short_is_invalid(cut: int, reason: str) -> None:
    body, syntax = dataset_bytes(ct_file())
    with pytest.raises(InvalidInstance, match=reason):
        inspect(body[:cut], syntax)


def test_bytes_that_are_not_dicom_are_invalid() -> None:
    with pytest.raises(InvalidInstance):
        inspect(b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n" * 8, EXPLICIT)


def test_the_file_header_makes_a_file_pydicom_and_dcmtk_read(tmp_path: Path) -> None:
    body, syntax = dataset_bytes(ct_file())
    instance = inspect(body, syntax)
    path = tmp_path / "stored.dcm"
    path.write_bytes(file_header(instance, syntax, "STORESCU") + body)
    stored = pydicom.dcmread(io.BytesIO(path.read_bytes()))
    assert stored.file_meta.MediaStorageSOPInstanceUID == instance.sop_instance
    assert stored.file_meta.TransferSyntaxUID == syntax and stored.file_meta.SourceApplicationEntityTitle == "STORESCU"
    assert stored.PixelData == pydicom.dcmread(ct_file()).PixelData
    dump = subprocess.run(["dcmdump", str(path)], capture_output=True, text=True, check=True).stdout
    assert f"[{instance.sop_instance}]" in dump and "(0002,0013) SH [CLARET_DICOM_1]" in dump


def little_endian_test_files() -> list[tuple[Path, bool]]:
    """pydicom's own test files in a little-endian syntax: (path, implicit VR)."""
    found = []
    for path in sorted((Path(pydicom.__file__).parent / "data" / "test_files").rglob("*.dcm")):
        try:
            meta, _ = split_dataset(path)
            syntax = pydicom.uid.UID(str(meta.TransferSyntaxUID))
        except Exception:  # no File Meta group: not what a C-STORE carries
            continue
        if syntax.is_little_endian and not syntax.is_deflated:
            found.append((path, syntax.is_implicit_VR))
    return found


def test_the_fast_walk_agrees_with_pydicoms_reader_on_pydicoms_test_files() -> None:
    """Every whole data set: the same UIDs as pydicom's element reader finds (sequences, encapsulated pixel
    data, implicit and explicit VR); and a data set cut anywhere in its last element is refused."""
    files = [(path, implicit) for path, implicit in little_endian_test_files() if "truncated" not in path.name]
    assert len(files) > 50
    for path, implicit in files:
        body = path.read_bytes()[split_dataset(path)[1] :]
        assert walk_little_endian(body, implicit) == _walk(body, implicit, True), path.name
        with pytest.raises(InvalidInstance):
            walk_little_endian(body[:-1], implicit)


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan_truncated.dcm"])
def test_pydicoms_truncated_test_files_are_refused(name: str) -> None:
    [(path, implicit)] = [(p, i) for p, i in little_endian_test_files() if p.name == name]
    with pytest.raises(InvalidInstance, match=r"says \d+ bytes but the data set ends"):
        walk_little_endian(path.read_bytes()[split_dataset(path)[1] :], implicit)


def test_sequences_nested_without_end_are_refused() -> None:
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"  # an item of undefined length
    sequence = b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff"  # (0008,1115) SQ of undefined length
    with pytest.raises(InvalidInstance, match="nested more than"):
        walk_little_endian((sequence + item) * 40, implicit=False)


def test_a_deflated_data_set_that_inflates_past_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instances, "MAX_DATA_SET_BYTES", 1024 * 1024)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = packer.compress(b"\0" * (8 * 1024 * 1024)) + packer.flush()  # 8 MiB from a few KiB
    assert len(bomb) < 20_000
    with pytest.raises(InvalidInstance, match="inflates past"):
        inspect(bomb, "1.2.840.10008.1.2.1.99")
