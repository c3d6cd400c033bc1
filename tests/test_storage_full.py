"""A full volume (database or payloads) is a clear -0x3005 naming it, leaves nothing half-written, and the
platform carries on once space is back. Real full filesystems: small tmpfs mounts (root only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from protos.nvidia.clara.platform import common_pb2
from protos.nvidia.clara.platform import jobs_pb2 as pb
from protos.nvidia.clara.platform import pipelines_pb2 as ppb
from shared.errors import ErrorCode
from tests.jobs_flow import Platform, one_operator, serving
from tests.volumes import fill, small_volume

QUICK = one_operator("echo done")


async def create_pipeline(clara: Platform, text: str) -> ppb.PipelinesCreateResponse:
    async def requests() -> AsyncIterator[ppb.PipelinesCreateRequest]:
        yield ppb.PipelinesCreateRequest(definition=ppb.PipelineDefinitionFile(path="p.yaml", content=text))

    return await clara.pipelines.Create(requests())


async def create_job(clara: Platform, pipeline_id: str) -> pb.JobsCreateResponse:
    request = pb.JobsCreateRequest(pipeline_id=common_pb2.Identifier(value=pipeline_id), name="j")
    return await clara.jobs.Create(request)


async def test_a_full_database_volume_is_storage_full_until_space_is_back(tmp_path: Path) -> None:
    volume_dir = tmp_path / "db-volume"
    with small_volume(volume_dir, "2m") as volume:
        async with serving(tmp_path, database=volume / "claret.db", database_url=None) as clara:
            pipeline_id = await clara.pipeline(QUICK)
            filler = fill(volume)
            padding = "#" + "x" * 60_000 + "\n"  # large rows use up what the WAL has spare quickly
            answers = []
            for _ in range(100):
                reply = await create_pipeline(clara, padding + QUICK)
                answers.append(reply.header.code)
                if reply.header.code != 0:
                    break
            assert answers[-1] == ErrorCode.STORAGE_FULL, answers
            assert set(answers[:-1]) <= {0}
            (message,) = reply.header.messages
            assert message == f"storage full: no space left on the database volume ({volume / 'claret.db'})"

            before = set((tmp_path / "data" / "payloads").iterdir())
            refused = await create_job(clara, pipeline_id)
            assert refused.header.code == ErrorCode.STORAGE_FULL, refused.header
            assert "database volume" in refused.header.messages[0]
            assert set((tmp_path / "data" / "payloads").iterdir()) == before  # its payload went with it

            filler.unlink()
            job = await create_job(clara, pipeline_id)
            assert job.header.code == 0, job.header.messages
            await clara.start(job.job_id.value)
            assert (await clara.wait_stopped(job.job_id.value)).status == pb.JOB_STATUS_HEALTHY
