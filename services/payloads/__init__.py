"""The payloads service: files of jobs and reusable payloads, streamed in and out."""

from __future__ import annotations

from protos.nvidia.clara.platform import payloads_pb2_grpc
from services.payloads.catalog import PayloadCatalog
from services.payloads.servicer import PayloadsServicer
from shared.resources import Resources
from shared.server import Service, ServicerSet

PAYLOADS = "nvidia.clara.platform.Payloads"


async def build(resources: Resources) -> Service:
    async def sweep() -> None:
        resources.payloads.sweep_temporaries()

    servicer = PayloadsServicer(PayloadCatalog(resources.db, resources.payloads), resources.metrics)
    return ServicerSet(
        [(PAYLOADS, servicer, payloads_pb2_grpc.add_PayloadsServicer_to_server)],
        on_start=[sweep],
        checks=[resources.db.problem],
    )
