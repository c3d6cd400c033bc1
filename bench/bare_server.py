"""The baseline server: a bare grpc.aio server answering Claret's RPC names with Claret's messages, nothing else.

* ``Payloads/Upload``: the chunks' ``data`` written one after the other into a new file ``<root>/upload-<n>.bin``;
* ``Payloads/Download``: ``<root>/<name>`` streamed back in 1 MiB chunks;
* ``Jobs/Status``: a unary echo: answers every request with the same reply bytes (``--status-reply``, a
  serialized JobsStatusResponse captured from Claret, so both servers send the same bytes);
* ``Jobs/List``: streams the replies of ``--list-replies`` (serialized JobsListResponse messages captured
  from Claret, each after its 4-byte big-endian length), the same bytes Claret sent.

Same server options as Claret (8 MiB messages, no SO_REUSEPORT) and the same event loop (uvloop).
Run by the benchmarks as a separate process: ``python bench/bare_server.py --port P --root DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
import uvloop

from protos.nvidia.clara.platform import jobs_pb2, payloads_pb2

CHUNK = 1024 * 1024


class Bare:
    def __init__(self, root: Path, status_reply: bytes, list_replies: list[bytes]) -> None:
        self.root = root
        self.status_reply = status_reply
        self.list_replies = list_replies
        self.uploads = 0

    async def upload(
        self, requests: AsyncIterator[payloads_pb2.PayloadsUploadRequest], context: grpc.aio.ServicerContext
    ) -> payloads_pb2.PayloadsUploadResponse:
        size, name = 0, ""
        self.uploads += 1
        with open(self.root / f"upload-{self.uploads}.bin", "wb") as out:  # noqa: ASYNC230 - page-cache writes, as Claret does
            async for request in requests:
                name = name or request.details.name
                out.write(request.data)
                size += len(request.data)
        return payloads_pb2.PayloadsUploadResponse(details=payloads_pb2.PayloadFileDetails(name=name, size=size))

    async def download(
        self, request: payloads_pb2.PayloadsDownloadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[payloads_pb2.PayloadsDownloadResponse]:
        with open(self.root / request.name, "rb") as source:  # noqa: ASYNC230
            while block := source.read(CHUNK):
                yield payloads_pb2.PayloadsDownloadResponse(data=block)

    async def status(self, request: jobs_pb2.JobsStatusRequest, context: grpc.aio.ServicerContext) -> bytes:
        return self.status_reply

    async def list(self, request: jobs_pb2.JobsListRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        for reply in self.list_replies:
            yield reply


def framed(path: Path | None) -> list[bytes]:
    """The messages of a file of 4-byte big-endian lengths, each followed by its message."""
    data = path.read_bytes() if path else b""
    messages, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        messages.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return messages


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--status-reply", type=Path)
    parser.add_argument("--list-replies", type=Path)
    options = parser.parse_args()
    reply = options.status_reply.read_bytes() if options.status_reply else b""
    bare = Bare(options.root, reply, framed(options.list_replies))
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 8 * 1024 * 1024),
            ("grpc.max_send_message_length", 8 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "nvidia.clara.platform.Payloads",
                {
                    "Upload": grpc.stream_unary_rpc_method_handler(
                        bare.upload,
                        request_deserializer=payloads_pb2.PayloadsUploadRequest.FromString,
                        response_serializer=payloads_pb2.PayloadsUploadResponse.SerializeToString,
                    ),
                    "Download": grpc.unary_stream_rpc_method_handler(
                        bare.download,
                        request_deserializer=payloads_pb2.PayloadsDownloadRequest.FromString,
                        response_serializer=payloads_pb2.PayloadsDownloadResponse.SerializeToString,
                    ),
                },
            ),
            grpc.method_handlers_generic_handler(
                "nvidia.clara.platform.Jobs",
                {
                    "Status": grpc.unary_unary_rpc_method_handler(
                        bare.status, request_deserializer=jobs_pb2.JobsStatusRequest.FromString
                    ),
                    "List": grpc.unary_stream_rpc_method_handler(
                        bare.list, request_deserializer=jobs_pb2.JobsListRequest.FromString
                    ),
                },
            ),
        ]
    )
    server.add_insecure_port(f"127.0.0.1:{options.port}")
    await server.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    await stopped.wait()
    await server.stop(0.5)


if __name__ == "__main__":
    uvloop.run(main())
