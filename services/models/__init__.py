"""The Models service (the Model Repository): models uploaded, downloaded, listed and deleted, and the
catalogs and instances that list them."""

from __future__ import annotations

from protos.nvidia.clara.platform import models_pb2_grpc
from services.models.repository import ModelRepository
from services.models.servicer import ModelsServicer
from shared.resources import Resources
from shared.server import Service, ServicerSet

MODELS = "nvidia.clara.platform.Models"


async def build(resources: Resources) -> Service:
    settings = resources.settings
    repository = ModelRepository(resources.db, settings.models_path, settings.max_model_mb * 1024 * 1024)

    async def sweep() -> None:
        repository.sweep_incoming()

    servicer = ModelsServicer(repository, resources.metrics)
    return ServicerSet(
        [(MODELS, servicer, models_pb2_grpc.add_ModelsServicer_to_server)],
        on_start=[sweep],
        checks=[resources.db.problem],
    )
