"""GPUs of this node: which ids the scheduler may grant, and their utilization.

GPUs are discovered with NVML (nvidia-ml-py) or declared by configuration (``CLARET_GPUS=0,1``), which
also lets scheduling be tested on machines without any GPU. No GPU (or no NVML library) is not an
error: the node simply has none and utilization snapshots are empty.

A process granted GPUs needs their device nodes (``/dev/nvidia<minor>``) and the driver's control nodes:
:func:`device_nodes` names them for runtimes that bind devices themselves (the sandbox; Docker has the
NVIDIA runtime do it from the device request).

Untested here: the NVML paths (``_nvml_*``) need an NVIDIA driver; CI machines have none.
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
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


CONTROL_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
"""Driver nodes a CUDA program opens besides its GPUs' own (those present are bound)."""


class MissingDevice(Exception):
    """A granted GPU has no device node on this node (the driver is not loaded, or the id is wrong)."""


def device_nodes(gpu_ids: Sequence[str], dev: Path = Path("/dev")) -> list[Path]:
    """The device nodes a process granted ``gpu_ids`` needs: each GPU's ``nvidia<minor>``, then the control
    nodes that exist; nothing for no GPU, nor on a node without the NVIDIA driver (no ``nvidiactl``: GPUs
    declared by configuration there only exercise scheduling). :class:`MissingDevice` when the driver is
    there but a granted GPU's node is not."""
    if not gpu_ids or not (dev / CONTROL_DEVICES[0]).exists():
        return []
    nodes = []
    for gpu_id in gpu_ids:
        node = dev / f"nvidia{_minor(gpu_id)}"
        if not node.exists():
            raise MissingDevice(f"GPU {gpu_id} was granted but {node} does not exist on this node")
        nodes.append(node)
    return nodes + [dev / name for name in CONTROL_DEVICES if (dev / name).exists()]


def _minor(gpu_id: str) -> int:
    """The device minor number of a GPU id: NVML's, by index or UUID, where a driver answers; else the id
    itself when it is a number (GPUs declared by configuration are numbered as their device nodes)."""
    minor = _nvml_minors().get(gpu_id)
    if minor is not None:
        return minor
    if gpu_id.isdigit():
        return int(gpu_id)
    raise MissingDevice(f"GPU {gpu_id!r} is neither known to NVML nor a device number")


@functools.cache
def _nvml_minors() -> dict[str, int]:
    """Index and UUID of every GPU NVML sees -> its device minor number; empty without a driver (asked once:
    NVML's start-up is slow and GPUs do not come and go while the service runs)."""
    try:
        with _nvml() as nvml:
            minors = {}
            for index in range(nvml.nvmlDeviceGetCount()):
                device = nvml.nvmlDeviceGetHandleByIndex(index)
                minor = int(nvml.nvmlDeviceGetMinorNumber(device))
                minors[str(index)] = minors[str(nvml.nvmlDeviceGetUUID(device))] = minor
            return minors
    except Exception:
        return {}


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
