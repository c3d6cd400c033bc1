"""Model archives are hostile input: what unpack accepts, and what it refuses with a message naming why."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from services.models.archive import unpack
from shared.errors import ClaretError, ErrorCode

CONFIG = b'name: "adder"\nbackend: "python"\n'
MODEL = {"config.pbtxt": CONFIG, "1/model.py": b"print('hi')\n"}


def zipped(path: Path, files: dict[str, bytes], *, links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16  # a symbolic link, as `zip --symlinks` stores one
            archive.writestr(info, target)
    return path


def tarred(path: Path, files: dict[str, bytes], *, links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return path


def refused(archive: Path, into: Path, *words: str, name: str = "adder", max_bytes: int = 1 << 20) -> None:
    with pytest.raises(ClaretError) as caught:
        unpack(archive, into, name, max_bytes)
    assert caught.value.code == ErrorCode.INVALID_MODEL
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_a_zip_of_the_model_folder_and_a_tar_of_its_contents_unpack(tmp_path: Path) -> None:
    folder = unpack(
        zipped(tmp_path / "m.zip", {f"adder/{k}": v for k, v in MODEL.items()}), tmp_path / "a", "adder", 1 << 20
    )
    assert folder.folder == tmp_path / "a" / "adder" and folder.versions == (1,)
    assert (folder.folder / "1" / "model.py").read_bytes() == MODEL["1/model.py"]
    flat = unpack(tarred(tmp_path / "m.tgz", {**MODEL, "3/model.py": b""}), tmp_path / "b", "adder", 1 << 20)
    assert flat.folder == tmp_path / "b" and flat.versions == (1, 3) and flat.size == sum(map(len, MODEL.values()))


@pytest.mark.parametrize("pack", [zipped, tarred])
def test_members_outside_the_folder_or_not_plain_files_are_refused(tmp_path: Path, pack: object) -> None:
    for number, (files, links, words) in enumerate(
        [
            ({**MODEL, "../escape": b"x"}, None, ("'../escape'", "outside the model folder")),
            ({**MODEL, "/etc/cron.d/x": b"x"}, None, ("'/etc/cron.d/x'", "outside")),
            ({**MODEL, "1/../../x": b"x"}, None, ("outside",)),
            (MODEL, {"1/link": "/etc/shadow"}, ("'1/link'", "not a plain file or folder")),
        ]
    ):
        archive = pack(tmp_path / f"m{number}", files, links=links)  # type: ignore[operator]
        refused(archive, tmp_path / f"out{number}", *words)
    assert not (tmp_path / "escape").exists()


def test_a_model_that_is_not_a_triton_model_is_refused_with_the_reason(tmp_path: Path) -> None:
    refused(zipped(tmp_path / "a.zip", {"1/model.py": b""}), tmp_path / "a", "no config.pbtxt")
    refused(zipped(tmp_path / "b.zip", {"config.pbtxt": CONFIG}), tmp_path / "b", "no version folder")
    refused(zipped(tmp_path / "c.zip", MODEL), tmp_path / "c", "names the model 'adder', not 'other'", name="other")
    (tmp_path / "d.bin").write_bytes(b"neither zip nor tar")
    refused(tmp_path / "d.bin", tmp_path / "d", "neither a zip nor a tar archive")


def test_an_archive_too_large_unpacked_or_with_too_many_entries_is_refused_before_writing(tmp_path: Path) -> None:
    big = zipped(tmp_path / "big.zip", {**MODEL, "1/weights": bytes(4096)})
    refused(big, tmp_path / "out", "over the 1000 accepted", max_bytes=1000)
    assert not (tmp_path / "out").exists()


def test_a_duplicate_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "dup.tar"
    with tarfile.open(archive, "w") as tarred_file:
        for data in (b"one", b"two"):
            info = tarfile.TarInfo("1/model.py")
            info.size = len(data)
            tarred_file.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("config.pbtxt")
        info.size = len(CONFIG)
        tarred_file.addfile(info, io.BytesIO(CONFIG))
    refused(archive, tmp_path / "out", "'1/model.py' cannot be unpacked")
