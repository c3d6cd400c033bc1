"""A short run of bench/load.py: the three services and 32 concurrent clients, zero errors, flat memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

BENCH = Path(__file__).resolve().parent.parent / "bench" / "load.py"


def test_thirty_two_clients_for_fifteen_seconds() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "15", "--clients", "32"], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "errors 0" in result.stdout and ": met" in result.stdout
