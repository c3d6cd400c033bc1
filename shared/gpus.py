"""GPUs of this node: which ids the scheduler may grant, and their utilization.

GPUs are discovered with NVML (nvidia-ml-py) or declared by configuration (``CLARET_GPUS=0,1``), which
also lets scheduling be tested on machines without any GPU. No GPU (or no NVML library) is not an
error: the node simply has none and utilization snapshots are empty.

Untested here: the NVML paths (``_nvml_*``) need an NVIDIA driver; CI machines have none.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from shared.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class GpuSample:
    """One GPU's utilization at one moment (memory in MB, utilizations as 0..1)."""

    node_id: str
    pcie_id: int
    compute_utilization: float
    memory_utilization: float
    memory_free_mb: int
    memory_used_mb: int
    timestamp: float


def node_name() -> str:
    return socket.gethostname()


@contextmanager
def _nvml() -> Iterator[Any]:
    """Initialise NVML for the block; raises whatever pynvml raises when there is no driver."""
    import pynvml

    pynvml.nvmlInit()
    try:
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


def discover(declared: tuple[str, ...] | None) -> tuple[str, ...]:
    """GPU ids to schedule: the declared ones, else every device NVML sees, else none."""
    if declared is not None:
        return declared
    try:
        with _nvml() as nvml:
            return tuple(str(index) for index in range(nvml.nvmlDeviceGetCount()))
    except Exception as exc:  # no driver, no library: a node without GPUs
        log.info("no GPUs found with NVML", reason=str(exc))
        return ()


def utilization() -> list[GpuSample]:
    """A snapshot of every GPU NVML sees; empty where there is no NVIDIA driver."""
    try:
        with _nvml() as nvml:
            return [_nvml_sample(nvml, index) for index in range(nvml.nvmlDeviceGetCount())]
    except Exception:
        return []


def _nvml_sample(nvml: Any, index: int) -> GpuSample:
    device = nvml.nvmlDeviceGetHandleByIndex(index)
    rates = nvml.nvmlDeviceGetUtilizationRates(device)
    memory = nvml.nvmlDeviceGetMemoryInfo(device)
    pci = nvml.nvmlDeviceGetPciInfo(device)
    mb = 1024 * 1024
    return GpuSample(
        node_id=node_name(),
        pcie_id=int(pci.bus),
        compute_utilization=rates.gpu / 100.0,
        memory_utilization=rates.memory / 100.0,
        memory_free_mb=int(memory.free // mb),
        memory_used_mb=int(memory.used // mb),
        timestamp=time.time(),
    )
