"""The pipelines service: register, inspect, update and remove pipeline definitions."""

from __future__ import annotations

from protos.nvidia.clara.platform import pipelines_pb2_grpc
from services.pipelines.catalog import PipelineCatalog
from services.pipelines.servicer import PipelinesServicer
from shared.resources import Resources
from shared.server import Service, ServicerSet

PIPELINES = "nvidia.clara.platform.Pipelines"


async def build(resources: Resources) -> Service:
    settings = resources.settings
    catalog = PipelineCatalog(resources.db, default_timeout=settings.default_timeout, max_timeout=settings.max_timeout)
    servicer = PipelinesServicer(catalog, resources.metrics)
    return ServicerSet(
        [(PIPELINES, servicer, pipelines_pb2_grpc.add_PipelinesServicer_to_server)], checks=[resources.db.problem]
    )
