"""PayloadStore on real temporary directories: round trips, names, case rules, atomicity, space, memory."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import resource
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ClaretError, ErrorCode
from shared.payload_store import RESERVED_PREFIX, TEMP_PREFIX, FileInfo, PayloadStore, normalise_name

KIB = 1024
MIB = 1024 * KIB
JOB = "0" * 32
OTHER = "1" * 32
THIRD = "2" * 32


@pytest.fixture
def store(tmp_path: Path) -> PayloadStore:
    store = PayloadStore(tmp_path / "payloads", max_usage=1.0)
    store.create(JOB)
    return store


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def write(store: PayloadStore, name: str, data: bytes, payload_id: str = JOB) -> FileInfo:
    return await store.write_file(payload_id, name, chunked(data, 64 * KIB))


async def read(store: PayloadStore, name: str, payload_id: str = JOB) -> tuple[FileInfo, bytes]:
    info, chunks = await store.read_file(payload_id, name)
    return info, b"".join([chunk async for chunk in chunks])


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry below root: file contents, None for directories (and links, by target text)."""
    entries: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            entries[key] = os.readlink(path).encode()
        else:
            entries[key] = None if path.is_dir() else path.read_bytes()
    return entries


def leftovers(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.startswith(RESERVED_PREFIX)]


def assert_error(excinfo: pytest.ExceptionInfo[ClaretError], code: ErrorCode, *fragments: str) -> None:
    """The error has ``code`` and its message names every fragment (the bad value, the payload...)."""
    assert excinfo.value.code == code, excinfo.value
    for fragment in fragments:
        assert fragment in str(excinfo.value), (fragment, str(excinfo.value))


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "chunk"),
    [(5 * MIB + 3, 64 * KIB), (5 * MIB, MIB), (64 * KIB + 5, 1), (9 * MIB + 11, 3 * MIB + 7), (0, 64 * KIB)],
)
async def test_round_trip_is_byte_exact(store: PayloadStore, size: int, chunk: int) -> None:
    data = random.Random(size).randbytes(size)

    written = await store.write_file(JOB, "input/scan.raw", chunked(data, chunk))

    assert written == FileInfo("/input/scan.raw", size, written.mode)
    info, back = await read(store, "/input/scan.raw")
    assert back == data
    assert info == written


async def test_read_hands_out_full_chunks_but_the_last(tmp_path: Path) -> None:
    store = PayloadStore(tmp_path, chunk_size=1000, max_usage=1.0)
    store.create(JOB)
    await write(store, "f", bytes(3500))

    _, chunks = await store.read_file(JOB, "f")

    assert [len(chunk) async for chunk in chunks] == [1000, 1000, 1000, 500]


async def test_nested_names_and_listing(store: PayloadStore) -> None:
    await write(store, "input/a/b/c.dcm", b"c" * 10)
    await write(store, "input/top.txt", b"t" * 3)
    await write(store, "z", b"")
    os.chmod(store.path(JOB) / "input/top.txt", 0o600)
    (store.path(JOB) / "input/a" / f"{TEMP_PREFIX}leftover").write_bytes(b"half")
    (store.path(JOB) / "input/link").symlink_to(store.path(JOB) / "z")
    umask_mode = 0o666 & ~_umask()

    assert store.list_files(JOB) == [
        FileInfo("/input/a/b/c.dcm", 10, umask_mode),
        FileInfo("/input/top.txt", 3, 0o600),
        FileInfo("/z", 0, umask_mode),
    ]
    assert store.resolve(JOB, "./input/a/b/c.dcm") == FileInfo("/input/a/b/c.dcm", 10, umask_mode)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_name", "expected"),
    [
        ("input/a.dcm", "input/a.dcm"),
        ("/input/a.dcm", "input/a.dcm"),
        ("./input/a.dcm", "input/a.dcm"),
        ("//././/a", "a"),
        ("Input/A.DCM", "Input/A.DCM"),
        ("a\\b", "a\\b"),
        ("..a/b..", "..a/b.."),
        (".hidden", ".hidden"),
        ("1.2.840/1.2.840.1.dcm", "1.2.840/1.2.840.1.dcm"),
        ("é/ü", "é/ü"),
    ],
)
def test_normalise_name_accepts(given_name: str, expected: str) -> None:
    assert normalise_name(given_name) == expected


REFUSED = [
    "",
    "/",
    "./",
    ".",
    "..",
    "../x",
    "/../x",
    "a/../b",
    "a/..",
    "a/./b",
    "a//b",
    "a/",
    "a\x00b",
    "a\nb",
    "a\x7fb",
    "x" * 256,
    "a/" * 2048 + "b",
    ".claret-upload-1234",
    "d/.CLARET-deleted-x",
]


@pytest.mark.parametrize("name", REFUSED)
async def test_refused_names_write_nothing(store: PayloadStore, name: str) -> None:
    before = snapshot(store.root)

    with pytest.raises(ClaretError) as excinfo:
        await write(store, name, b"data")

    assert_error(excinfo, ErrorCode.INVALID_FILE_NAME, repr(name)[:40])
    assert snapshot(store.root) == before
    for lookup in (store.resolve, store.remove_file):
        with pytest.raises(ClaretError) as excinfo:
            lookup(JOB, name)
        assert_error(excinfo, ErrorCode.INVALID_FILE_NAME)


@given(st.text(alphabet=st.sampled_from("ab./\\\x00 é"), max_size=12))
def test_normalised_names_stay_inside(name: str) -> None:
    try:
        result = normalise_name(name)
    except ClaretError as error:
        assert error.code == ErrorCode.INVALID_FILE_NAME
        return
    segments = result.split("/")
    assert all(segment not in ("", ".", "..") for segment in segments)
    assert "\x00" not in result
    assert normalise_name(result) == result
    assert name.endswith(result)


async def test_parent_that_is_a_file_or_target_that_is_a_directory(store: PayloadStore) -> None:
    await write(store, "input/a", b"file")
    await write(store, "input/d/x", b"x")
    before = snapshot(store.root)

    for name in ("input/a/b", "input/a/b/c", "input/d"):
        with pytest.raises(ClaretError) as excinfo:
            await write(store, name, b"new")
        assert_error(excinfo, ErrorCode.INVALID_FILE_NAME, name)

    assert snapshot(store.root) == before


async def test_links_are_never_followed(store: PayloadStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (store.path(JOB) / "input/link").symlink_to(outside / "secret")
    (store.path(JOB) / "input/ldir").symlink_to(outside)

    assert store.list_files(JOB) == []
    for name in ("input/link", "input/LINK", "input/ldir/secret"):
        with pytest.raises(ClaretError) as excinfo:
            await store.read_file(JOB, name)
        assert_error(excinfo, ErrorCode.NO_SUCH_FILE)
    with pytest.raises(ClaretError) as excinfo:
        await write(store, "input/ldir/planted", b"x")
    assert_error(excinfo, ErrorCode.INVALID_FILE_NAME, "link")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


# -- case rules ----------------------------------------------------------------------------------


async def test_single_case_insensitive_match_is_found(store: PayloadStore) -> None:
    await write(store, "input/Series/Scan.DCM", b"scan")

    assert store.resolve(JOB, "/INPUT/series/scan.dcm").name == "/input/Series/Scan.DCM"
    info, data = await read(store, "./input/SERIES/scan.Dcm")
    assert (info.name, data) == ("/input/Series/Scan.DCM", b"scan")


async def test_exact_spelling_wins_and_otherwise_several_matches_are_ambiguous(store: PayloadStore) -> None:
    await write(store, "input/scan.dcm", b"lower")
    await write(store, "input/SCAN.dcm", b"upper")

    assert [info.name for info in store.list_files(JOB)] == ["/input/SCAN.dcm", "/input/scan.dcm"]
    assert (await read(store, "input/scan.dcm"))[1] == b"lower"
    assert (await read(store, "input/SCAN.dcm"))[1] == b"upper"
    with pytest.raises(ClaretError) as excinfo:
        store.resolve(JOB, "input/Scan.dcm")
    assert_error(excinfo, ErrorCode.AMBIGUOUS_NAME, "'input/Scan.dcm'", JOB, "/input/SCAN.dcm", "/input/scan.dcm")


async def test_case_variants_of_directories_are_ambiguous_too(store: PayloadStore) -> None:
    await write(store, "input/Dir/f", b"1")
    await write(store, "input/dir/f", b"2")

    with pytest.raises(ClaretError) as excinfo:
        store.resolve(JOB, "input/DIR/f")
    assert_error(excinfo, ErrorCode.AMBIGUOUS_NAME)


async def test_missing_file(store: PayloadStore) -> None:
    await write(store, "input/a", b"a")

    with pytest.raises(ClaretError) as excinfo:
        await store.read_file(JOB, "/input/b")
    assert_error(excinfo, ErrorCode.NO_SUCH_FILE, "'/input/b'", JOB)
    with pytest.raises(ClaretError) as excinfo:
        store.resolve(JOB, "input")  # a directory is not a file
    assert_error(excinfo, ErrorCode.NO_SUCH_FILE)


# -- atomicity -----------------------------------------------------------------------------------


async def test_stream_failing_half_way_leaves_nothing(store: PayloadStore) -> None:
    await write(store, "input/keep", b"old")
    before = snapshot(store.root)

    async def failing() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 64 * KIB
        raise RuntimeError("client went away")

    for name in ("input/keep", "input/new/deep/file"):
        with pytest.raises(RuntimeError, match="client went away"):
            await store.write_file(JOB, name, failing())

    assert snapshot(store.root) == before
    assert leftovers(store.root) == []


async def test_cancelled_upload_leaves_nothing(store: PayloadStore) -> None:
    before = snapshot(store.root)
    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 64 * KIB
        started.set()
        await asyncio.Event().wait()
        yield b"never"

    task = asyncio.create_task(store.write_file(JOB, "input/sub/big", stalled()))
    await started.wait()
    assert leftovers(store.root) != []  # the temporary exists while the stream is open
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert snapshot(store.root) == before
    assert leftovers(store.root) == []


async def test_concurrent_writers_last_to_finish_wins_whole(store: PayloadStore) -> None:
    async def slow(letter: bytes, count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield letter * 64 * KIB
            await asyncio.sleep(0)

    long, short = slow(b"A", 48), slow(b"B", 32)
    await asyncio.gather(store.write_file(JOB, "input/f", long), store.write_file(JOB, "input/f", short))

    info, data = await read(store, "input/f")
    assert data == b"A" * 48 * 64 * KIB
    assert info.size == len(data)
    assert leftovers(store.root) == []


async def test_reader_keeps_the_version_it_opened(store: PayloadStore) -> None:
    await write(store, "input/f", b"old" * MIB)
    _, chunks = await store.read_file(JOB, "input/f")

    await write(store, "input/f", b"new" * MIB)

    assert b"".join([chunk async for chunk in chunks]) == b"old" * MIB
    assert (await read(store, "input/f"))[1] == b"new" * MIB


async def test_reader_survives_delete_and_aclose_releases_the_file(store: PayloadStore) -> None:
    await write(store, "input/f", b"payload" * MIB)
    _, chunks = await store.read_file(JOB, "input/f")
    _, abandoned = await store.read_file(JOB, "input/f")

    store.delete(JOB)

    assert b"".join([chunk async for chunk in chunks]) == b"payload" * MIB
    await abandoned.aclose()
    assert [chunk async for chunk in abandoned] == []


async def test_payload_deleted_during_upload_stays_deleted(store: PayloadStore) -> None:
    async def deleting() -> AsyncIterator[bytes]:
        yield b"first"
        store.delete(JOB)
        yield b"second"

    with pytest.raises(ClaretError) as excinfo:
        await store.write_file(JOB, "input/new/f", deleting())

    assert_error(excinfo, ErrorCode.NO_SUCH_PAYLOAD, JOB)
    assert not store.exists(JOB)
    assert os.listdir(store.root) == []


# -- payloads ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["A" * 32, "0" * 31, "0" * 33, "0" * 32 + "\n", "../" + "0" * 29, ""])
async def test_malformed_payload_ids_are_no_such_payload(store: PayloadStore, bad_id: str) -> None:
    assert not store.exists(bad_id)
    with pytest.raises(ClaretError) as excinfo:
        store.create(bad_id)
    assert_error(excinfo, ErrorCode.NO_SUCH_PAYLOAD)
    with pytest.raises(ClaretError) as excinfo:
        await write(store, "f", b"x", payload_id=bad_id)
    assert_error(excinfo, ErrorCode.NO_SUCH_PAYLOAD)


async def test_missing_payload(store: PayloadStore) -> None:
    checks: Iterable[Callable[[], object]] = (
        lambda: store.path(OTHER),
        lambda: store.list_files(OTHER),
        lambda: store.resolve(OTHER, "f"),
        lambda: store.remove_file(OTHER, "f"),
        lambda: store.delete(OTHER),
        lambda: store.copy_into(OTHER, JOB),
        lambda: store.copy_into(JOB, OTHER),
    )
    for check in checks:
        with pytest.raises(ClaretError) as excinfo:
            check()
        assert_error(excinfo, ErrorCode.NO_SUCH_PAYLOAD, OTHER)
    with pytest.raises(ClaretError) as excinfo:
        await store.read_file(OTHER, "f")
    assert_error(excinfo, ErrorCode.NO_SUCH_PAYLOAD)


def test_create_is_idempotent(store: PayloadStore) -> None:
    (store.path(JOB) / "input/kept").write_bytes(b"k")

    assert store.create(JOB) == store.root / JOB
    assert (store.root / JOB / "input/kept").read_bytes() == b"k"
    assert store.exists(JOB)
    assert not store.exists(OTHER)


async def test_delete(store: PayloadStore) -> None:
    await write(store, "input/a/b", b"b")

    store.delete(JOB)

    assert not store.exists(JOB)
    assert os.listdir(store.root) == []  # no tombstone left
    with pytest.raises(ClaretError) as excinfo:
        store.delete(JOB)
    assert_error(excinfo, ErrorCode.NO_SUCH_PAYLOAD)


async def test_remove_file_prunes_empty_directories_but_not_input(store: PayloadStore) -> None:
    await write(store, "input/a/b/c.dcm", b"c")
    await write(store, "input/a/keep", b"k")
    await write(store, "out/x/y", b"y")

    store.remove_file(JOB, "/INPUT/A/B/C.DCM")
    store.remove_file(JOB, "./input/a/keep")
    store.remove_file(JOB, "out/x/y")

    assert sorted(os.listdir(store.path(JOB))) == ["input"]
    assert os.listdir(store.path(JOB) / "input") == []
    with pytest.raises(ClaretError) as excinfo:
        store.remove_file(JOB, "input/a/keep")
    assert_error(excinfo, ErrorCode.NO_SUCH_FILE, "'input/a/keep'", JOB)


async def test_copy_into_from_several_sources(store: PayloadStore) -> None:
    for payload_id in (OTHER, THIRD):
        store.create(payload_id)
    await write(store, "a.dcm", b"a", OTHER)
    await write(store, "series/b.dcm", b"b", OTHER)
    os.chmod(store.path(OTHER) / "series/b.dcm", 0o640)
    await write(store, "c.dcm", b"c", THIRD)

    store.copy_into(OTHER, JOB)
    store.copy_into(THIRD, JOB)

    files = {info.name: info for info in store.list_files(JOB)}
    assert sorted(files) == ["/input/a.dcm", "/input/c.dcm", "/input/series/b.dcm"]
    assert files["/input/series/b.dcm"].mode == 0o640
    assert (await read(store, "input/series/b.dcm"))[1] == b"b"
    assert [info.name for info in store.list_files(OTHER)] == ["/a.dcm", "/series/b.dcm"]
    assert leftovers(store.root) == []


@pytest.mark.parametrize(
    ("existing", "incoming", "clash"),
    [
        ("A.DCM", "a.dcm", "/input/a.dcm"),  # same name but for case
        ("series", "Series/b.dcm", "/input/Series/b.dcm"),  # needs a directory where a file is
        ("x/y", "X", "/input/X"),  # a file where a directory is
    ],
)
async def test_copy_into_collision_copies_nothing_of_that_source(
    store: PayloadStore, existing: str, incoming: str, clash: str
) -> None:
    for payload_id in (OTHER, THIRD):
        store.create(payload_id)
    await write(store, existing, b"first", OTHER)
    await write(store, "unrelated.dcm", b"u", THIRD)
    await write(store, incoming, b"second", THIRD)
    store.copy_into(OTHER, JOB)
    before = snapshot(store.path(JOB))

    with pytest.raises(ClaretError) as excinfo:
        store.copy_into(THIRD, JOB)

    assert_error(excinfo, ErrorCode.INVALID_FILE_NAME, clash, THIRD, JOB)
    assert snapshot(store.path(JOB)) == before


# -- storage -------------------------------------------------------------------------------------


def _statvfs_used(share: float) -> Callable[[object], os.statvfs_result]:
    blocks = 1000
    free = round(blocks * (1 - share))
    result = os.statvfs_result((4096, 4096, blocks, free, free, 100, 50, 50, 0, 255))
    return lambda _path: result


async def test_storage_guard_refuses_uploads(store: PayloadStore, monkeypatch: pytest.MonkeyPatch) -> None:
    guarded = PayloadStore(store.root)  # default limit: 80 %
    monkeypatch.setattr(os, "statvfs", _statvfs_used(0.9))
    before = snapshot(store.root)

    with pytest.raises(ClaretError) as excinfo:
        await write(guarded, "input/f", b"data")

    assert_error(excinfo, ErrorCode.STORAGE_FULL, "90.0%", "80%")
    assert snapshot(store.root) == before
    monkeypatch.setattr(os, "statvfs", _statvfs_used(0.5))
    await write(guarded, "input/f", b"data")


def test_storage_guard_on_the_real_filesystem(tmp_path: Path) -> None:
    PayloadStore(tmp_path, max_usage=1.0).check_space()
    with pytest.raises(ClaretError) as excinfo:
        PayloadStore(tmp_path, max_usage=0.0).check_space()
    assert_error(excinfo, ErrorCode.STORAGE_FULL, "limit of 0%")


def test_sweep_temporaries_removes_crash_leftovers(store: PayloadStore) -> None:
    nested = store.path(JOB) / "input/a"
    nested.mkdir()
    old = [store.path(JOB) / "input" / f"{TEMP_PREFIX}1", nested / f"{TEMP_PREFIX}2"]
    for path in old:
        path.write_bytes(b"half")
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    fresh = nested / f"{TEMP_PREFIX}3"  # another replica's upload in flight
    fresh.write_bytes(b"busy")
    tombstone = store.root / f".claret-deleted-{OTHER}-abcd"
    (tombstone / "input").mkdir(parents=True)
    (tombstone / "input/f").write_bytes(b"f")
    (nested / "real").write_bytes(b"r")

    assert store.sweep_temporaries() == 3
    assert leftovers(store.root) == [fresh]
    assert store.sweep_temporaries(min_age=0) == 1
    assert leftovers(store.root) == []
    assert (nested / "real").read_bytes() == b"r"


# -- memory --------------------------------------------------------------------------------------


async def test_half_a_gigabyte_streams_in_flat_memory(tmp_path: Path) -> None:
    store = PayloadStore(tmp_path, max_usage=1.0)
    store.create(JOB)
    block = random.Random(7).randbytes(64 * KIB)
    count = 512 * MIB // len(block)
    expected = hashlib.sha256()
    for _ in range(count):
        expected.update(block)

    async def lazily() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield block

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB
    tracemalloc.start()
    try:
        info = await store.write_file(JOB, "input/big", lazily())
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest, size = hashlib.sha256(), 0
        _, chunks = await store.read_file(JOB, "input/big")
        async for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB - rss_before

    assert info.size == size == 512 * MIB
    assert digest.digest() == expected.digest()
    assert write_peak < 8 * MIB
    assert read_peak < 8 * MIB
    assert rss_growth < 64 * MIB
