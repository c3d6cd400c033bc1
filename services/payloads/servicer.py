"""Payloads RPCs: wire translation over :mod:`services.payloads.catalog`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from protos.nvidia.clara.platform import payloads_pb2 as pb
from protos.nvidia.clara.platform import payloads_pb2_grpc
from services.payloads.catalog import PayloadCatalog
from shared.db.payloads import PayloadType
from shared.errors import ClaretError, ErrorCode
from shared.metrics import Metrics
from shared.payload_store import FileInfo
from shared.wire import Context, Servicer, identifier, ok_header, streaming, unary


def file_details(info: FileInfo) -> pb.PayloadFileDetails:
    return pb.PayloadFileDetails(name=info.name, size=info.size, mode=info.mode)


async def settle_cancellation(context: Context) -> None:
    """Raise CancelledError if the client cancelled rather than finished the stream.

    grpc.aio ends the request iterator the same way for both; a cancel only lands on the handler's task a
    moment later: measured (tests/test_interrupted_transfers.py) at the next turn of the event loop three
    times in four, else within the first millisecond. Wait up to a few turns and ~2 ms before committing:
    a heuristic, as grpc.aio exposes no signal that tells the two apart at that point.
    """
    for pause in (0, 0, 0, 0.001, 0.001):
        await asyncio.sleep(pause)
        if context.cancelled():
            raise asyncio.CancelledError("the client cancelled the upload")


def payload_type(kind: PayloadType) -> str:
    return pb.PayloadType.Name(kind)  # our enum mirrors the wire numbers; messages take the wire name


class PayloadsServicer(Servicer, payloads_pb2_grpc.PayloadsServicer):
    def __init__(self, catalog: PayloadCatalog, metrics: Metrics) -> None:
        super().__init__(metrics)
        self._catalog = catalog

    @unary(pb.PayloadsCreateResponse)
    async def Create(self, request: pb.PayloadsCreateRequest, context: Context) -> pb.PayloadsCreateResponse:
        record = await self._catalog.create_reusable(dict(request.metadata))
        return pb.PayloadsCreateResponse(
            header=ok_header(), payload_id=identifier(record.id), type=payload_type(record.type)
        )

    @unary(pb.PayloadsUploadResponse)
    async def Upload(
        self, request_iterator: AsyncIterator[pb.PayloadsUploadRequest], context: Context
    ) -> pb.PayloadsUploadResponse:
        """One stream may carry several files, their chunks in any interleaving: each file is reassembled
        from the chunks that name it, in order (``g "11"``, ``h "xx"``, ``g "22"`` is ``g = "1122"``). A chunk
        without a name continues the file of the chunk before it (the CLI names only a file's first chunk;
        the official client names every chunk). The files appear only once the stream ended normally, and
        a broken or cancelled stream leaves none. The reply describes the file of the last chunk, with its
        total size, named as the client sent it.
        """
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            raise ClaretError(ErrorCode.INVALID_FILE_NAME, "the upload stream carried no file")
        record = await self._catalog.writable(first.payload_id.value)

        async def pieces() -> AsyncIterator[tuple[str, bytes]]:
            name = first.details.name
            yield name, first.data
            async for request in requests:
                name = request.details.name or name
                yield name, request.data
            await settle_cancellation(context)

        files = await self._catalog.upload(record, pieces())
        self.metrics.uploaded_bytes.inc(sum(info.size for info in files))
        return pb.PayloadsUploadResponse(header=ok_header(), details=file_details(files[-1]))

    @streaming(pb.PayloadsDownloadResponse)
    async def Download(
        self, request: pb.PayloadsDownloadRequest, context: Context
    ) -> AsyncIterator[pb.PayloadsDownloadResponse]:
        info, chunks = await self._catalog.download(request.payload_id.value, request.name)
        details = file_details(info)
        first = True
        async for data in chunks:
            self.metrics.downloaded_bytes.inc(len(data))
            yield (
                pb.PayloadsDownloadResponse(header=ok_header(), details=details, data=data)
                if first
                else pb.PayloadsDownloadResponse(data=data)
            )
            first = False
        if first:  # an empty file still gets one message carrying its details
            yield pb.PayloadsDownloadResponse(header=ok_header(), details=details)

    @streaming(pb.PayloadsDetailsResponse)
    async def Details(
        self, request: pb.PayloadsDetailsRequest, context: Context
    ) -> AsyncIterator[pb.PayloadsDetailsResponse]:
        record, files = await self._catalog.files(request.payload_id.value)
        for info in files:  # one message per file; none for an empty payload (no header-only message)
            yield pb.PayloadsDetailsResponse(
                header=ok_header(),
                payload_id=identifier(record.id),
                file=file_details(info),
                type=payload_type(record.type),
                job_id=identifier(record.job_id),
                metadata=record.metadata,
            )

    @unary(pb.PayloadsRemoveResponse)
    async def Remove(self, request: pb.PayloadsRemoveRequest, context: Context) -> pb.PayloadsRemoveResponse:
        await self._catalog.remove_file(request.payload_id.value, request.name)
        return pb.PayloadsRemoveResponse(header=ok_header())

    @unary(pb.PayloadsDeleteResponse)
    async def Delete(self, request: pb.PayloadsDeleteRequest, context: Context) -> pb.PayloadsDeleteResponse:
        await self._catalog.delete(request.payload_id.value)
        return pb.PayloadsDeleteResponse(header=ok_header())

    @unary(pb.PayloadsAddMetadataResponse)
    async def AddMetadata(
        self, request: pb.PayloadsAddMetadataRequest, context: Context
    ) -> pb.PayloadsAddMetadataResponse:
        metadata = await self._catalog.add_metadata(request.payload_id.value, dict(request.metadata))
        return pb.PayloadsAddMetadataResponse(header=ok_header(), payload_id=request.payload_id, metadata=metadata)

    @unary(pb.PayloadsRemoveMetadataResponse)
    async def RemoveMetadata(
        self, request: pb.PayloadsRemoveMetadataRequest, context: Context
    ) -> pb.PayloadsRemoveMetadataResponse:
        metadata = await self._catalog.remove_metadata(request.payload_id.value, request.keys)
        return pb.PayloadsRemoveMetadataResponse(header=ok_header(), payload_id=request.payload_id, metadata=metadata)
