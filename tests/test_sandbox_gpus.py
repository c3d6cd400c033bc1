"""A sandboxed operator sees exactly the GPUs it was granted: their device nodes and the driver's control
nodes, nothing else. These machines have no GPU, so the nodes are real character devices made with the
NVIDIA driver's numbers in a folder of the test (``SandboxRuntime(devices=...)``); bwrap binds them as it
would the host's. Whether CUDA then works is for a machine with a GPU (docs/untested.md)."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from services.jobs.runtimes import sandbox
from services.jobs.runtimes.base import RuntimeFailure
from shared import gpus
from tests.test_sandbox_runtime import spec

NVIDIA_MAJOR = 195
"""The driver's character-device major number (nvidia0 is 195:0, nvidiactl 195:255)."""


@pytest.fixture
def devices(tmp_path: Path) -> Path:
    """nvidia0, nvidia1, nvidiactl and nvidia-uvm as real character devices."""
    if os.geteuid() != 0:
        pytest.skip("making device nodes needs root")
    folder = tmp_path / "dev"
    folder.mkdir()
    for name, minor in (("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255), ("nvidia-uvm", 254)):
        os.mknod(folder / name, 0o666 | stat.S_IFCHR, os.makedev(NVIDIA_MAJOR, minor))
    return folder


async def listed_devices(tmp_path: Path, devices: Path, gpu_ids: tuple[str, ...]) -> list[str]:
    """What ``ls /dev`` shows an operator granted ``gpu_ids``, NVIDIA nodes only, with their numbers."""
    runtime = sandbox.SandboxRuntime(devices=devices)
    command = 'for d in /dev/nvidia*; do [ -c "$d" ] && stat -c \'%n %t:%T\' "$d"; done; true'
    operator = dataclasses.replace(spec(tmp_path, command), gpu_ids=gpu_ids)
    handle = await runtime.start(operator)
    assert (await handle.wait()).code == 0
    return operator.log_path.read_text().split("\n")[:-1]


async def test_an_operator_sees_its_granted_gpu_and_the_control_nodes_only(tmp_path: Path, devices: Path) -> None:
    # stat prints the numbers in hex: 195 is c3; 255 ff; 254 fe
    assert await listed_devices(tmp_path, devices, ("1",)) == [
        "/dev/nvidia-uvm c3:fe",
        "/dev/nvidia1 c3:1",
        "/dev/nvidiactl c3:ff",
    ]


async def test_an_operator_without_gpus_sees_no_nvidia_node(tmp_path: Path, devices: Path) -> None:
    assert await listed_devices(tmp_path, devices, ()) == []


async def test_a_granted_gpu_without_a_device_node_is_a_start_failure(tmp_path: Path, devices: Path) -> None:
    runtime = sandbox.SandboxRuntime(devices=devices)
    with pytest.raises(RuntimeFailure, match=r"GPU 7 was granted but .*/nvidia7 does not exist"):
        await runtime.start(dataclasses.replace(spec(tmp_path), gpu_ids=("7",)))


def test_device_nodes_are_the_gpus_then_the_control_nodes_present(devices: Path) -> None:
    assert gpus.device_nodes(("0", "1"), devices) == [
        devices / "nvidia0",
        devices / "nvidia1",
        devices / "nvidiactl",
        devices / "nvidia-uvm",
    ]
    assert gpus.device_nodes((), devices) == []
    with pytest.raises(gpus.MissingDevice, match="neither known to NVML nor a device number"):
        gpus.device_nodes(("GPU-unknown",), devices)


async def test_declared_gpus_on_a_node_without_the_driver_bind_nothing(tmp_path: Path) -> None:
    """GPUs declared by configuration (CLARET_GPUS) on a machine without the NVIDIA driver exercise the
    scheduler only: the operator runs, with no NVIDIA node."""
    no_driver = tmp_path / "dev-without-driver"
    no_driver.mkdir()
    assert await listed_devices(tmp_path, no_driver, ("0",)) == []
