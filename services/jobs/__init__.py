"""The jobs service: Jobs RPCs, the scheduler and runtimes, and the platform's Clara service."""

from __future__ import annotations

from protos.nvidia.clara.platform import clara_pb2_grpc
from services.jobs.clara_servicer import ClaraServicer
from shared.resources import Resources
from shared.server import Service, ServicerSet

CLARA = "nvidia.clara.platform.Clara"


def build(resources: Resources) -> Service:
    clara = ClaraServicer()
    return ServicerSet([(CLARA, clara, clara_pb2_grpc.add_ClaraServicer_to_server)])
