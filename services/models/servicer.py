"""Models RPCs: wire translation over :mod:`services.models.repository`.

Catalogs and instances are one shape on the wire (``ModelCatalogDetails``, whose ``catalog_id`` carries
an instance's id in ListInstances); the repository tells them apart by kind. Streams answer one message
per model (ListModels), per catalog or instance (ListCatalogs, ListInstances), or one message holding the
list (ReadCatalog, ReadInstance). An empty answer is no message at all, as for Payloads.Details: the
official ModelsClient reads any message of ListModels or ReadCatalog wrongly, and takes none as empty.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from protos.nvidia.clara.platform import models_pb2 as pb
from protos.nvidia.clara.platform import models_pb2_grpc
from services.models.repository import ModelRepository
from shared.db.models import ListKind, ModelRecord
from shared.metrics import Metrics
from shared.wire import Context, Servicer, identifier, ok_header, streaming, unary


def details(model: ModelRecord) -> pb.ModelDetails:
    model_type = pb.ModelType.Name(model.type) if model.type in pb.ModelType.values() else "MODEL_TYPE_UNKNOWN"
    return pb.ModelDetails(model_id=identifier(model.id), name=model.name, type=model_type, metadata=model.metadata)


def catalog(list_id: str, models: list[ModelRecord]) -> pb.ModelCatalogDetails:
    return pb.ModelCatalogDetails(catalog_id=identifier(list_id), models=[details(m) for m in models])


UpdateRequest = pb.ModelsUpdateCatalogRequest | pb.ModelsUpdateInstanceRequest


class ModelsServicer(Servicer, models_pb2_grpc.ModelsServicer):
    def __init__(self, repository: ModelRepository, metrics: Metrics) -> None:
        super().__init__(metrics)
        self._repository = repository

    # -- models ----------------------------------------------------------------------------------------

    @unary(pb.ModelsUploadModelResponse)
    async def UploadModel(
        self, request_iterator: AsyncIterator[pb.ModelsUploadModelRequest], context: Context
    ) -> pb.ModelsUploadModelResponse:
        """The model's name and type come with the first message (the official client repeats them in each);
        the data of every message, in order, is the archive."""
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        name, model_type = (first.details.name, first.details.type) if first is not None else ("", 0)

        async def chunks() -> AsyncIterator[bytes]:
            if first is not None:
                yield first.data
            async for request in requests:
                yield request.data

        model = await self._repository.upload(name, model_type, chunks())
        self.metrics.uploaded_bytes.inc(model.size)
        return pb.ModelsUploadModelResponse(header=ok_header(), details=details(model))

    @streaming(pb.ModelsDownloadModelResponse)
    async def DownloadModel(
        self, request: pb.ModelsDownloadModelRequest, context: Context
    ) -> AsyncIterator[pb.ModelsDownloadModelResponse]:
        model, chunks = await self._repository.download(request.model_id.value)
        first = True
        async for data in chunks:
            self.metrics.downloaded_bytes.inc(len(data))
            yield pb.ModelsDownloadModelResponse(details=details(model) if first else None, data=data)
            first = False

    @streaming(pb.ModelsListModelsResponse)
    async def ListModels(
        self, request: pb.ModelsListModelsRequest, context: Context
    ) -> AsyncIterator[pb.ModelsListModelsResponse]:
        for model in await self._repository.models():
            yield pb.ModelsListModelsResponse(models=[details(model)])

    @unary(pb.ModelsDeleteModelResponse)
    async def DeleteModel(self, request: pb.ModelsDeleteModelRequest, context: Context) -> pb.ModelsDeleteModelResponse:
        await self._repository.delete(request.model_id.value)
        return pb.ModelsDeleteModelResponse(header=ok_header(), model_id=request.model_id)

    @unary(pb.ModelsAddMetadataResponse)
    async def AddMetadata(self, request: pb.ModelsAddMetadataRequest, context: Context) -> pb.ModelsAddMetadataResponse:
        metadata = await self._repository.add_metadata(request.model_id.value, dict(request.metadata))
        return pb.ModelsAddMetadataResponse(header=ok_header(), model_id=request.model_id, metadata=metadata)

    @unary(pb.ModelsRemoveMetadataResponse)
    async def RemoveMetadata(
        self, request: pb.ModelsRemoveMetadataRequest, context: Context
    ) -> pb.ModelsRemoveMetadataResponse:
        metadata = await self._repository.remove_metadata(request.model_id.value, request.keys)
        return pb.ModelsRemoveMetadataResponse(header=ok_header(), model_id=request.model_id, metadata=metadata)

    # -- catalogs ----------------------------------------------------------------------------------------

    @unary(pb.ModelsCreateCatalogResponse)
    async def CreateCatalog(
        self, request: pb.ModelsCreateCatalogRequest, context: Context
    ) -> pb.ModelsCreateCatalogResponse:
        return pb.ModelsCreateCatalogResponse(header=ok_header(), catalog_id=identifier(await self._create("catalog")))

    @streaming(pb.ModelsReadCatalogResponse)
    async def ReadCatalog(
        self, request: pb.ModelsReadCatalogRequest, context: Context
    ) -> AsyncIterator[pb.ModelsReadCatalogResponse]:
        models = await self._repository.read_list("catalog", request.catalog_id.value)
        if models:
            yield pb.ModelsReadCatalogResponse(catalog_id=request.catalog_id, models=[details(m) for m in models])

    @unary(pb.ModelsUpdateCatalogResponse)
    async def UpdateCatalog(
        self, request_iterator: AsyncIterator[pb.ModelsUpdateCatalogRequest], context: Context
    ) -> pb.ModelsUpdateCatalogResponse:
        list_id = await self._update("catalog", request_iterator)
        return pb.ModelsUpdateCatalogResponse(header=ok_header(), catalog_id=identifier(list_id))

    @unary(pb.ModelsDeleteCatalogResponse)
    async def DeleteCatalog(
        self, request: pb.ModelsDeleteCatalogRequest, context: Context
    ) -> pb.ModelsDeleteCatalogResponse:
        await self._repository.delete_list("catalog", request.catalog_id.value)
        return pb.ModelsDeleteCatalogResponse(header=ok_header(), catalog_id=request.catalog_id)

    @streaming(pb.ModelsListCatalogsResponse)
    async def ListCatalogs(
        self, request: pb.ModelsListCatalogsRequest, context: Context
    ) -> AsyncIterator[pb.ModelsListCatalogsResponse]:
        for list_id, models in await self._repository.lists("catalog"):
            yield pb.ModelsListCatalogsResponse(catalogs=[catalog(list_id, models)])

    # -- instances ---------------------------------------------------------------------------------------

    @unary(pb.ModelsCreateInstanceResponse)
    async def CreateInstance(
        self, request: pb.ModelsCreateInstanceRequest, context: Context
    ) -> pb.ModelsCreateInstanceResponse:
        return pb.ModelsCreateInstanceResponse(
            header=ok_header(), instance_id=identifier(await self._create("instance"))
        )

    @streaming(pb.ModelsReadInstanceResponse)
    async def ReadInstance(
        self, request: pb.ModelsReadInstanceRequest, context: Context
    ) -> AsyncIterator[pb.ModelsReadInstanceResponse]:
        models = await self._repository.read_list("instance", request.instance_id.value)
        if models:
            yield pb.ModelsReadInstanceResponse(instance_id=request.instance_id, models=[details(m) for m in models])

    @unary(pb.ModelsUpdateInstanceResponse)
    async def UpdateInstance(
        self, request_iterator: AsyncIterator[pb.ModelsUpdateInstanceRequest], context: Context
    ) -> pb.ModelsUpdateInstanceResponse:
        list_id = await self._update("instance", request_iterator)
        return pb.ModelsUpdateInstanceResponse(header=ok_header(), instance_id=identifier(list_id))

    @unary(pb.ModelsDeleteInstanceResponse)
    async def DeleteInstance(
        self, request: pb.ModelsDeleteInstanceRequest, context: Context
    ) -> pb.ModelsDeleteInstanceResponse:
        await self._repository.delete_list("instance", request.instance_id.value)
        return pb.ModelsDeleteInstanceResponse(header=ok_header(), instance_id=request.instance_id)

    @streaming(pb.ModelsListInstancesResponse)
    async def ListInstances(
        self, request: pb.ModelsListInstancesRequest, context: Context
    ) -> AsyncIterator[pb.ModelsListInstancesResponse]:
        for list_id, models in await self._repository.lists("instance"):
            yield pb.ModelsListInstancesResponse(instances=[catalog(list_id, models)])

    # -- shared by catalogs and instances ----------------------------------------------------------------

    async def _create(self, kind: ListKind) -> str:
        return await self._repository.create_list(kind)

    async def _update(self, kind: ListKind, requests: AsyncIterator[UpdateRequest]) -> str:
        """The models of every message of the stream, in order, become the list (the id from the first)."""
        list_id, model_ids = "", []
        async for request in requests:
            named = request.catalog_id if isinstance(request, pb.ModelsUpdateCatalogRequest) else request.instance_id
            list_id = list_id or named.value
            model_ids += [m.value for m in request.model_ids]
        await self._repository.update_list(kind, list_id, model_ids)
        return list_id
