"""Services at addresses of their own (``PlatformClient(routes=...)``, ``CLARET_CONSOLE_PLATFORM``): each call
goes to its service's address, as in the compose deployment where each service has a container."""

from __future__ import annotations

from pathlib import Path

import pytest

from claret.client import PlatformClient
from claret.errors import ClientError
from shared.platform import platform_addresses
from tests.helpers import free_port, make_settings
from tests.jobs_flow import one_operator, serving


def test_one_address_or_one_per_service(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, port=30031)
    assert platform_addresses(None, settings) == ("127.0.0.1:30031", {})
    assert platform_addresses("a:1", settings) == ("a:1", {})
    routes = "pipelines=p:1, payloads=q:2,jobs=j:3"
    assert platform_addresses(routes, settings) == (
        "j:3",
        {"pipelines": "p:1", "payloads": "q:2", "jobs": "j:3", "clara": "j:3", "scheduling": "j:3"},
    )
    with pytest.raises(ValueError, match="'jobz=j:3': want host:port, or service=host:port"):
        platform_addresses("jobz=j:3", settings)


async def test_each_call_goes_to_its_service_s_address(tmp_path: Path) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    async with serving(tmp_path) as clara:
        routed = PlatformClient(clara.address, timeout=3, routes={"pipelines": nowhere})
        try:
            assert await routed.list_jobs() == []  # Jobs: the default address
            with pytest.raises(ClientError, match=f"pipelines at {nowhere}"):  # its own address: nothing answers
                await routed.create_pipeline([("pipeline.yaml", one_operator("true"))])
        finally:
            await routed.close()
        both = PlatformClient(nowhere, timeout=3, routes={"pipelines": clara.address, "jobs": clara.address})
        try:
            pipeline = await both.create_pipeline([("pipeline.yaml", one_operator("true"))])
            assert (await both.create_job(pipeline.pipeline_id, "routed")).job_id
        finally:
            await both.close()
