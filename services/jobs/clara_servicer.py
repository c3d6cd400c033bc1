"""The Clara service: Version, Utilization and Stop of the platform."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from protos.nvidia.clara.platform import clara_pb2, clara_pb2_grpc, common_pb2
from shared import gpus
from shared.metrics import Metrics
from shared.wire import Context, Servicer, ok_header, streaming, timestamp, unary

CLARA_VERSION = (0, 7, 4)
VERSION_LABEL = "claret"
WATCH_INTERVAL_S = 1.0


class ClaraServicer(Servicer, clara_pb2_grpc.ClaraServicer):
    """``stop_all`` is what Clara.Stop does (the topology halts the node's pipeline services; no job ends)."""

    def __init__(
        self,
        metrics: Metrics,
        stop_all: Callable[[], Awaitable[None]] | None = None,
        sample: Callable[[], list[gpus.GpuSample]] = gpus.utilization,
    ) -> None:
        super().__init__(metrics)
        self._stop_all = stop_all
        self._sample = sample

    @unary(clara_pb2.ClaraVersionResponse)
    async def Version(self, request: clara_pb2.ClaraVersionRequest, context: Context) -> clara_pb2.ClaraVersionResponse:
        major, minor, patch = CLARA_VERSION
        version = common_pb2.Version(major=major, minor=minor, patch=patch, label=VERSION_LABEL)
        return clara_pb2.ClaraVersionResponse(header=ok_header(), version=version)

    @unary(clara_pb2.ClaraStopResponse)
    async def Stop(self, request: clara_pb2.ClaraStopRequest, context: Context) -> clara_pb2.ClaraStopResponse:
        if self._stop_all is not None:
            await self._stop_all()
        return clara_pb2.ClaraStopResponse(header=ok_header())

    @streaming(clara_pb2.ClaraUtilizationResponse)
    async def Utilization(
        self, request: clara_pb2.ClaraUtilizationRequest, context: Context
    ) -> AsyncIterator[clara_pb2.ClaraUtilizationResponse]:
        while True:
            samples = await asyncio.to_thread(self._sample)
            yield clara_pb2.ClaraUtilizationResponse(header=ok_header(), gpu_metrics=[_metric(s) for s in samples])
            if not request.watch:
                return
            await asyncio.sleep(WATCH_INTERVAL_S)  # a client that leaves cancels this task


def _metric(sample: gpus.GpuSample) -> clara_pb2.ClaraUtilizationResponse.GpuUtilization:
    return clara_pb2.ClaraUtilizationResponse.GpuUtilization(
        node_id=sample.node_id,
        pcie_id=sample.pcie_id,
        compute_utilization=sample.compute_utilization,
        memory_utilization=sample.memory_utilization,
        memory_free=sample.memory_free_mb,
        memory_used=sample.memory_used_mb,
        timestamp=timestamp(sample.timestamp),
    )
