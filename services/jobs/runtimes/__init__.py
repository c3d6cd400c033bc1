"""Where operators run: a small interface (:mod:`.base`) and its implementations."""

from __future__ import annotations

from services.jobs.runtimes.base import Runtime, RuntimeFailure
from services.jobs.runtimes.docker import DockerRuntime, PathMapping
from services.jobs.runtimes.sandbox import SandboxRuntime, open_cgroups
from services.jobs.runtimes.swarm import SwarmRuntime
from shared.config import Settings
from shared.logging import get_logger

log = get_logger(__name__)


async def open_runtime(settings: Settings) -> Runtime:
    """The configured runtime; ``auto`` takes Docker when an engine answers, else the sandbox."""
    runtime: Runtime
    paths = PathMapping(settings.payload_path, settings.host_payload_dir)
    if settings.runtime == "sandbox":
        runtime = SandboxRuntime(cgroups=open_cgroups(settings.instance), instance=settings.instance)
    elif settings.runtime == "swarm":
        runtime = await SwarmRuntime.connect(settings.docker_url, paths, settings.instance, settings.stop_grace)
    else:
        try:
            runtime = await DockerRuntime.connect(settings.docker_url, paths, settings.instance)
        except RuntimeFailure as exc:
            if settings.runtime == "docker":
                raise
            log.info("no Docker engine; using the sandbox runtime", reason=str(exc))
            runtime = SandboxRuntime(cgroups=open_cgroups(settings.instance), instance=settings.instance)
    log.info("runtime", name=runtime.name, requested=settings.runtime)
    return runtime
