"""Fixtures the console's browser tests share."""

from __future__ import annotations

import pytest

from services.console import gpus as console_gpus
from services.console import queue as console_queue

GPU_EVERY_S = 0.3


@pytest.fixture
def fast_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live pages in tenths of a second, not seconds: the GPUs page sampled (and refreshed) every 0.3 s
    over 6 s, so a test sees a graph across its width in seconds, not minutes; the queue and services pages
    every 0.3 s."""
    monkeypatch.setattr(console_gpus, "SAMPLE_EVERY_S", GPU_EVERY_S)
    monkeypatch.setattr(console_gpus, "HISTORY_S", 6.0)
    monkeypatch.setattr(console_queue, "REFRESH_MS", int(GPU_EVERY_S * 1000))
