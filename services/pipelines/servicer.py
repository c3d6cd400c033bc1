"""Pipelines RPCs: wire translation over :mod:`services.pipelines.catalog`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from protos.nvidia.clara.platform import common_pb2, pipelines_pb2_grpc
from protos.nvidia.clara.platform import pipelines_pb2 as pb
from services.pipelines.catalog import PipelineCatalog, merge_parts
from shared.metrics import Metrics
from shared.pipeline_definition import Pipeline
from shared.wire import Context, Servicer, identifier, ok_header, streaming, unary

DagNode = pb.PipelinesDetailsResponse.PipelineDagNode


def dag_nodes(model: Pipeline, names: tuple[str, ...] | None = None) -> list[DagNode]:
    """Roots with their downstream operators under ``next``, recursively (a node reached twice appears
    under each parent)."""
    return [
        DagNode(name=name, next=dag_nodes(model, model.downstream(name)))
        for name in (model.roots() if names is None else names)
    ]


def warning_header(warnings: tuple[str, ...]) -> common_pb2.ResponseHeader:
    """Success (code 0) naming what the definition's loader ignored: the API has no other place for it."""
    header = ok_header()
    header.messages.extend(warnings)
    return header


class PipelinesServicer(Servicer, pipelines_pb2_grpc.PipelinesServicer):
    def __init__(self, catalog: PipelineCatalog, metrics: Metrics) -> None:
        super().__init__(metrics)
        self._catalog = catalog

    @unary(pb.PipelinesCreateResponse)
    async def Create(
        self, request_iterator: AsyncIterator[pb.PipelinesCreateRequest], context: Context
    ) -> pb.PipelinesCreateResponse:
        parts: list[tuple[str, str]] = []
        pipeline_id, metadata = "", dict[str, str]()
        async for request in request_iterator:
            parts.append((request.definition.path, request.definition.content))
            pipeline_id = pipeline_id or request.pipeline_id.value
            metadata = metadata or dict(request.metadata)
        created = await self._catalog.create(merge_parts(parts), pipeline_id or None, metadata)
        return pb.PipelinesCreateResponse(
            header=warning_header(created.warnings), pipeline_id=identifier(created.pipeline_id)
        )

    @streaming(pb.PipelinesDetailsResponse)
    async def Details(
        self, request: pb.PipelinesDetailsRequest, context: Context
    ) -> AsyncIterator[pb.PipelinesDetailsResponse]:
        view = await self._catalog.details(request.pipeline_id.value)
        dag = dag_nodes(view.model)
        for file in view.record.files:  # one message per definition file; the client reads one each
            yield pb.PipelinesDetailsResponse(
                header=ok_header(),
                pipeline_id=identifier(view.record.id),
                name=view.record.name,
                definition=pb.PipelineDefinitionFile(path=file.path, content=file.content),
                dag=dag,
                metadata=view.record.metadata,
            )

    @streaming(pb.PipelinesListResponse)
    async def List(self, request: pb.PipelinesListRequest, context: Context) -> AsyncIterator[pb.PipelinesListResponse]:
        for record in await self._catalog.list():
            details = pb.PipelinesListResponse.PipelineDetails(
                pipeline_id=identifier(record.id), name=record.name, metadata=record.metadata
            )
            yield pb.PipelinesListResponse(header=ok_header(), details=details)

    @unary(pb.PipelinesRemoveResponse)
    async def Remove(self, request: pb.PipelinesRemoveRequest, context: Context) -> pb.PipelinesRemoveResponse:
        await self._catalog.remove(request.pipeline_id.value)
        return pb.PipelinesRemoveResponse(header=ok_header())

    @unary(pb.PipelinesUpdateResponse)
    async def Update(
        self, request_iterator: AsyncIterator[pb.PipelinesUpdateRequest], context: Context
    ) -> pb.PipelinesUpdateResponse:
        parts: list[tuple[str, str]] = []
        pipeline_id = ""
        async for request in request_iterator:
            parts.append((request.definition.path, request.definition.content))
            pipeline_id = pipeline_id or request.pipeline_id.value
        warnings = await self._catalog.update(pipeline_id, merge_parts(parts))
        return pb.PipelinesUpdateResponse(header=warning_header(warnings))

    @unary(pb.PipelinesAddMetadataResponse)
    async def AddMetadata(
        self, request: pb.PipelinesAddMetadataRequest, context: Context
    ) -> pb.PipelinesAddMetadataResponse:
        metadata = await self._catalog.add_metadata(request.pipeline_id.value, dict(request.metadata))
        return pb.PipelinesAddMetadataResponse(header=ok_header(), pipeline_id=request.pipeline_id, metadata=metadata)

    @unary(pb.PipelinesRemoveMetadataResponse)
    async def RemoveMetadata(
        self, request: pb.PipelinesRemoveMetadataRequest, context: Context
    ) -> pb.PipelinesRemoveMetadataResponse:
        metadata = await self._catalog.remove_metadata(request.pipeline_id.value, request.keys)
        return pb.PipelinesRemoveMetadataResponse(
            header=ok_header(), pipeline_id=request.pipeline_id, metadata=metadata
        )
