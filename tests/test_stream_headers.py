"""Every message of every server stream carries the response header, as the platform's API says (a client
may check each message's header, not only the first)."""

from __future__ import annotations

from pathlib import Path

from google.protobuf.message import Message

from protos.nvidia.clara.platform import common_pb2
from protos.nvidia.clara.platform import jobs_pb2 as jpb
from protos.nvidia.clara.platform import payloads_pb2 as dpb
from protos.nvidia.clara.platform import pipelines_pb2 as ppb
from tests.jobs_flow import one_operator, run_job, serving

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

MIB = 1024 * 1024


def headers_ok(replies: list[Message], at_least: int) -> bool:
    """At least ``at_least`` messages, each with a header present and code 0."""
    return len(replies) >= at_least and all(r.HasField("header") and r.header.code == 0 for r in replies)  # type: ignore[attr-defined]


async def test_every_message_of_every_stream_carries_the_header(tmp_path: Path) -> None:
    async with serving(tmp_path) as clara:
        # 2500 log lines come in three ReadLogs messages (at most 1000 lines each); 2.5 MiB in three chunks.
        status, payload_id = await run_job(clara, one_operator("seq 2500; head -c 2621440 /dev/zero > /output/big"))
        second = await clara.job(status.pipeline_id.value)
        await clara.upload(second.payload_id.value, "small.txt", b"small")
        job_id = common_pb2.Identifier(value=status.job_id.value)
        payload = common_pb2.Identifier(value=payload_id)
        pipeline = common_pb2.Identifier(value=status.pipeline_id.value)
        every_state = jpb.JobsListRequest.JobFilter(has_state=[1, 2, 3])

        streams = {
            "Payloads.Download": (
                clara.payloads.Download(dpb.PayloadsDownloadRequest(payload_id=payload, name="/operators/op/big")),
                3,
            ),
            "Payloads.Details": (clara.payloads.Details(dpb.PayloadsDetailsRequest(payload_id=payload)), 1),
            "Jobs.List": (clara.jobs.List(jpb.JobsListRequest(filter=every_state)), 2),
            "Jobs.ReadLogs": (clara.jobs.ReadLogs(jpb.JobsReadLogsRequest(job_id=job_id, operator_name="op")), 3),
            "Pipelines.List": (clara.pipelines.List(ppb.PipelinesListRequest()), 1),
            "Pipelines.Details": (clara.pipelines.Details(ppb.PipelinesDetailsRequest(pipeline_id=pipeline)), 1),
        }
        for name, (call, at_least) in streams.items():
            replies = [reply async for reply in call]
            assert headers_ok(replies, at_least), (name, len(replies), [r.HasField("header") for r in replies])
