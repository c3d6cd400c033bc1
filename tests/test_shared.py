"""Shared core: settings, ids and timestamps, metadata rules, the database and its migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from shared import ids, metadata
from shared.config import Settings
from shared.db import Database, migrations, split_statements
from shared.errors import ClaretError, ErrorCode


def test_settings_from_environment_and_options() -> None:
    env = {
        "CLARET_PORT": "4000",
        "CLARET_GPUS": "0, 1",
        "CLARET_STOP_GRACE": "2.5",
        "CLARET_DATA_DIR": "/srv/c",
        "CLARET_SERVICES": "jobs",
        "CLARET_METRICS_PORT": "9464",
        "CLARET_QUEUE": "database",
        "CLARET_TAKEOVER_AFTER": "4",
    }
    settings = Settings.load({"port": 5000, "host": None}, environ=env)
    assert settings.port == 5000  # an option wins over the environment
    assert settings.host == "127.0.0.1"  # None means "not given"
    assert settings.gpus == ("0", "1") and settings.stop_grace == 2.5 and settings.services == ("jobs",)
    assert settings.database_path == Path("/srv/c/claret.db") and settings.payload_path == Path("/srv/c/payloads")
    assert settings.metrics_port == 9464  # an optional int is an int too
    assert settings.queue == "database" and settings.takeover_after == 4.0
    assert Settings.load(environ={"CLARET_GPUS": ""}).gpus == ()  # declared: no GPU at all
    assert Settings.load(environ={"CLARET_DATABASE_URL": ""}).database_url is None  # compose's empty ${X:-}


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"CLARET_PORT": "http"}, "CLARET_PORT='http'"),
        ({"CLARET_RUNTIME": "podman"}, "runtime must be one of"),
        ({"CLARET_SERVICES": "jobs,bogus"}, "services must be"),
        ({"CLARET_SERVICES": "jobs,dicom"}, "the dicom service needs a configuration"),
        ({"CLARET_MAX_STORAGE_USAGE": "1.5"}, "max_storage_usage"),
        ({"CLARET_QUEUE": "redis"}, "queue must be one of"),
        ({"CLARET_QUEUE_POLL": "20"}, "queue_poll"),
        ({"CLARET_DATABASE_URL": "mysql://db"}, "database_url must be a postgresql:// URL"),
    ],
)
def test_bad_settings_are_refused_with_a_message(env: dict[str, str], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint.replace("(", r"\(")):
        Settings.load(environ=env)


def test_ids_accept_dashed_uuids_and_emit_hex() -> None:
    assert (
        ids.parse_id("4A1E0B5C-7D3F-4C2A-9E8B-1F2A3B4C5D6E", ErrorCode.INVALID_JOB_ID, "job")
        == "4a1e0b5c7d3f4c2a9e8b1f2a3b4c5d6e"
    )
    with pytest.raises(ClaretError) as caught:
        ids.parse_id("../etc", ErrorCode.INVALID_JOB_ID, "job")
    assert caught.value.code == ErrorCode.INVALID_JOB_ID and "'../etc'" in caught.value.messages[0]
    assert len(ids.new_id()) == 32


def test_dotnet_timestamps() -> None:
    assert ids.to_dotnet(None) == 0 and ids.from_dotnet(0) is None
    # The official client's own fixture: 63750823591 is 2021-03-08 18:06:31 UTC.
    assert ids.legacy_time(ids.from_dotnet(63750823591)) == "2021-03-08 18:06:31Z"
    assert ids.to_dotnet(ids.from_dotnet(63750823591)) == 63750823591


def test_metadata_rules() -> None:
    assert metadata.add({"A": "1"}, {"b": "2"}) == {"A": "1", "b": "2"}
    with pytest.raises(ClaretError, match="'a' already exists"):
        metadata.add({"A": "1"}, {"a": "2"})
    with pytest.raises(ClaretError, match="duplicates"):
        metadata.validate({"Key": "1", "KEY": "2"})
    with pytest.raises(ClaretError, match="longer than 256 bytes"):
        metadata.validate({"k": "é" * 129})
    assert metadata.remove({"A": "1", "b": "2"}, ["a", "missing"]) == {"b": "2"}


async def test_migrations_apply_once_even_when_replicas_race(tmp_path: Path) -> None:
    path = tmp_path / "claret.db"
    first, second = await asyncio.gather(Database.open(path), Database.open(path))
    try:
        rows = await first.read(lambda c: c.execute("SELECT version FROM schema_migrations").fetchall())
        assert [r[0] for r in rows] == [version for version, _, _ in migrations()]
        assert await second.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
    finally:
        await first.close()
        await second.close()


async def test_write_rolls_back_the_whole_unit_of_work(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "claret.db")

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO payloads (id, type, created) VALUES ('p1', 2, 0)")
        raise ClaretError(ErrorCode.STORAGE_FULL, "disk full")

    try:
        with pytest.raises(ClaretError):
            await db.write(half_then_fail)
        assert await db.read(lambda c: c.execute("SELECT count(*) FROM payloads").fetchone()[0]) == 0
    finally:
        await db.close()


def test_split_statements_refuses_a_truncated_migration() -> None:
    assert split_statements("CREATE TABLE a (x);\n-- note\nCREATE TABLE b (y);\n") == [
        "CREATE TABLE a (x);",
        "-- note\nCREATE TABLE b (y);",
    ]
    with pytest.raises(ValueError, match="incomplete"):
        split_statements("CREATE TABLE a (x")
