"""The console's models page in a real browser against a real platform: the Model Repository's models with
their type and metadata, and the catalogs and instances that list each, reached from the header."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc.aio
import pytest
from playwright.async_api import Page, expect

from claret.records import ModelType
from protos.nvidia.clara.platform import common_pb2, models_pb2_grpc
from protos.nvidia.clara.platform import models_pb2 as pb
from tests.console.browser import accessibility_problems, browser_page
from tests.console.test_console import console
from tests.models.test_models_service import model_zip


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async with browser_page(tmp_path) as opened:
        yield opened


def ident(value: str) -> common_pb2.Identifier:
    return common_pb2.Identifier(value=value)


async def listed_in(stub: models_pb2_grpc.ModelsStub, kind: str, *model_ids: str) -> str:
    """A new catalog or instance (``kind``) listing ``model_ids``: its id."""
    Kind = kind.capitalize()
    created = await getattr(stub, f"Create{Kind}")(getattr(pb, f"ModelsCreate{Kind}Request")())
    list_id: str = getattr(created, f"{kind}_id").value

    async def requests() -> AsyncIterator[object]:
        yield getattr(pb, f"ModelsUpdate{Kind}Request")(
            **{f"{kind}_id": ident(list_id)}, model_ids=[ident(m) for m in model_ids]
        )

    assert (await getattr(stub, f"Update{Kind}")(requests())).header.code == 0
    return list_id


async def test_the_models_page_lists_models_with_type_metadata_catalogs_and_instances(
    tmp_path: Path, page: Page
) -> None:
    async with console(tmp_path) as platform:
        uploaded = {}
        for name, model_type in (("segmenter", ModelType.TENSOR_RT), ("adder", ModelType.PY_TORCH)):
            archive = tmp_path / f"{name}.zip"
            archive.write_bytes(model_zip(name))
            uploaded[name] = (await platform.client.upload_model(name, model_type, archive)).id
        adder, segmenter = uploaded["adder"], uploaded["segmenter"]
        async with grpc.aio.insecure_channel(platform.client.address) as channel:
            stub = models_pb2_grpc.ModelsStub(channel)  # type: ignore[no-untyped-call]
            request = pb.ModelsAddMetadataRequest(model_id=ident(adder), metadata={"owner": "<clinic>"})
            assert (await stub.AddMetadata(request)).header.code == 0
            catalog = await listed_in(stub, "catalog", segmenter, adder)
            instance = await listed_in(stub, "instance", adder)

        await page.goto(f"{platform.url}/jobs")
        await page.get_by_role("navigation", name="Main").get_by_role("link", name="Models").click()
        await expect(page.locator("h1")).to_have_text("Models")
        rows = page.locator("tbody tr")
        await expect(rows).to_have_count(2)
        assert await rows.nth(0).get_attribute("data-model") == adder  # by name
        cells = rows.nth(0).locator("td")
        await expect(cells.nth(0)).to_have_text("adder")
        await expect(cells.nth(1)).to_have_text("PY_TORCH")
        await expect(cells.nth(2)).to_have_text("owner<clinic>")  # escaped, not markup
        await expect(cells.nth(3)).to_have_text(catalog[:8])
        await expect(cells.nth(4)).to_have_text(instance[:8])
        other = rows.nth(1).locator("td")
        await expect(other.nth(1)).to_have_text("TENSOR_RT")
        await expect(other.nth(3)).to_have_text(catalog[:8])
        await expect(other.nth(4)).to_have_text("")  # in no instance
        assert await accessibility_problems(page) == []
