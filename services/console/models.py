"""The models page: the Model Repository's models (name, type, metadata) and the catalogs and instances that
list each, as the Models service answers them."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from claret.records import ModelList
from services.console.common import Client, page, platform


class ModelPages:
    """Reads ListModels, ListCatalogs and ListInstances through the platform client; not live (models change
    when someone uploads one, not while a page is open)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/models", self.models)]

    async def models(self, request: web.Request) -> web.StreamResponse:
        async with platform(self._client) as client:
            models = await client.list_models()
            catalogs, instances = await client.list_catalogs(), await client.list_instances()
        return page(
            "models.html",
            request,
            models=sorted(models, key=lambda m: (m.name.lower(), m.id)),
            catalogs=listing(catalogs),
            instances=listing(instances),
        )


def listing(lists: Iterable[ModelList]) -> dict[str, list[str]]:
    """Model id -> the ids of the catalogs (or instances) that list it, in the order the platform sent them."""
    found: dict[str, list[str]] = {}
    for listed in lists:
        for model in listed.models:
            if listed.id not in found.setdefault(model.id, []):
                found[model.id].append(listed.id)
    return found
