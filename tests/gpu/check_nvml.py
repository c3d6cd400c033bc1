"""GPU check, for a machine with an NVIDIA GPU and driver (CI has none; run by hand where one is lent).

What the CPU-only suite cannot show: NVML discovery (``shared.gpus.discover`` with nothing declared) finds
the GPUs, and ``Clara.Utilization`` served over real gRPC reports them, with compute utilization and used
memory that move while a CUDA load (PyTorch, if installed) runs. Prints one JSON document; exits non-zero
when a check fails.

    python tests/gpu/check_nvml.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protos.nvidia.clara.platform import clara_pb2, clara_pb2_grpc
from services.jobs.clara_servicer import ClaraServicer
from shared import gpus
from shared.metrics import Metrics


def cuda_load(seconds: float, running: threading.Event, stop: threading.Event) -> str:
    """Keep the first GPU busy with matrix products (PyTorch), holding 4 GiB; what it did, in words.
    ``running`` is set once the first product is done (CUDA's start takes seconds)."""
    try:
        import torch
    except ImportError:
        running.set()
        return "no PyTorch: no load"
    held = torch.empty(4 * 1024**3, dtype=torch.uint8, device="cuda")
    a = torch.randn(8192, 8192, device="cuda")
    deadline = time.monotonic() + seconds
    products = 0
    while time.monotonic() < deadline and not stop.is_set():
        a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()
        products += 1
        running.set()
    del held
    return f"{products} products of 8192x8192 on {torch.cuda.get_device_name(0)}"


async def main() -> int:
    found = gpus.discover(None)
    server = grpc.aio.server()
    clara_pb2_grpc.add_ClaraServicer_to_server(ClaraServicer(Metrics()), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    report: dict[str, object] = {"discovered": list(found)}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            clara = clara_pb2_grpc.ClaraStub(channel)
            idle = [r async for r in clara.Utilization(clara_pb2.ClaraUtilizationRequest(watch=False))]
            report["idle"] = [_metrics(reply) for reply in idle]
            running, stop = threading.Event(), threading.Event()
            load = asyncio.create_task(asyncio.to_thread(cuda_load, 60.0, running, stop))
            await asyncio.to_thread(running.wait, 60)
            busy: list[list[dict[str, object]]] = []
            async for reply in clara.Utilization(clara_pb2.ClaraUtilizationRequest(watch=True)):
                busy.append(_metrics(reply))
                if len(busy) == 5:
                    break
            stop.set()
            report["load"] = await load
            report["busy"] = busy
    finally:
        await server.stop(1)
    first_idle = report["idle"][0] if report["idle"] else []  # type: ignore[index]
    checks = {
        "NVML found at least one GPU": len(found) >= 1,
        "Utilization reports every GPU found": len(first_idle) == len(found),
        "free memory is reported": all(m["memory_free_mb"] > 0 for m in first_idle),
        "compute utilization rose under load": any(m["compute_utilization"] > 0 for s in busy for m in s),
        "used memory rose under load": max(m["memory_used_mb"] for s in busy for m in s)
        > min(m["memory_used_mb"] for m in first_idle),
    }
    report["checks"] = checks
    print(json.dumps(report, indent=1))
    return 0 if all(checks.values()) else 1


def _metrics(reply: clara_pb2.ClaraUtilizationResponse) -> list[dict[str, object]]:
    assert reply.header.code == 0, reply.header.messages
    return [
        {
            "node": m.node_id,
            "pcie_bus": m.pcie_id,
            "compute_utilization": m.compute_utilization,
            "memory_utilization": m.memory_utilization,
            "memory_free_mb": m.memory_free,
            "memory_used_mb": m.memory_used,
        }
        for m in reply.gpu_metrics
    ]


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
