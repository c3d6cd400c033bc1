"""Triton Inference Server for operators' ``models:``: a pipeline service the platform declares itself.

An operator that lists models uses this service as it would one it declared (services/jobs/services.py:
one per node, its requests held, readiness, sharing, idle stop, Clara.Stop, restart); before the operator
starts, each of its models is loaded into the running Triton through Triton's model-control API
(``--model-control-mode=explicit``: a model is loaded once, the first time an operator needs it). Triton
serves the Model Repository's folder (``repository/``, mounted read-only at ``/models``). On the sandbox
runtime it comes from ``CLARET_TRITON_HOME``, a Python environment holding the ``tritonserver`` of PyPI's
``nvidia-pytriton`` wheel (``scripts/triton`` makes one); on the Docker runtime from ``CLARET_TRITON_IMAGE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from services.jobs.runtimes.base import Mount
from shared.pipeline_definition import Service
from shared.pipeline_definition.model import Container, Requests

HTTP_PORT = 8000
GRPC_PORT = 8001
MODELS_MOUNT = "/models"
CONNECTIONS = (
    ("NVIDIA_TRITON_HTTPURI", HTTP_PORT),
    ("NVIDIA_TRITON_GRPCURI", GRPC_PORT),
    ("CLARA_TRITON_URI", HTTP_PORT),  # the names Clara's earlier inference operators read
    ("NVIDIA_CLARA_TRTISURI", HTTP_PORT),
)
"""What an operator that lists models gets: ``NAME=127.0.0.1:port``."""


@dataclass(frozen=True)
class PlatformService(Service):
    """A service the platform declares (no pipeline does), with files and environment of its own."""

    mounts: tuple[Mount, ...] = ()
    env: dict[str, str] = field(default_factory=dict, hash=False)


FLAGS = (
    f"--model-repository={MODELS_MOUNT}",
    "--model-control-mode=explicit",
    f"--http-port={HTTP_PORT}",
    f"--grpc-port={GRPC_PORT}",
    "--allow-metrics=false",
    "--exit-timeout-secs=5",
)


def triton_service(home: Path, repository: Path, gpus: int = 0) -> PlatformService:
    """Triton from ``home`` (an environment with nvidia-pytriton and numpy), serving ``repository``."""
    home = home.resolve()
    server = home / "tritonserver"
    command = (
        str(server / "bin" / "tritonserver"),
        *FLAGS,
        f"--backend-directory={server / 'backends'}",
        "--disable-auto-complete-config",  # each model's config.pbtxt is complete; a load takes 0.1 s, not 1.3
        *(() if gpus else ("--pinned-memory-pool-byte-size=0",)),  # no CUDA host memory without GPUs
    )
    return PlatformService(
        name="triton",
        container=Container(image="tritonserver", tag="nvidia-pytriton", command=command),
        requests=Requests(cpu=1, memory=1024, gpu=gpus),
        http_connections=CONNECTIONS,
        mounts=(Mount(home, str(home), read_only=True), Mount(repository, MODELS_MOUNT, read_only=True)),
        # The Python backend's stub finds its Python (and numpy) as `python3` on PATH.
        env={"PATH": f"{home / 'bin'}:/usr/local/bin:/usr/bin:/bin"},
    )


def triton_image_service(image: str, repository: Path, gpus: int = 0) -> PlatformService:
    """Triton from a container image (``name:tag``) whose ``tritonserver`` is on its PATH, serving ``repository``."""
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    return PlatformService(
        name="triton",
        container=Container(image=name, tag=tag, command=("tritonserver", *FLAGS)),
        requests=Requests(cpu=1, memory=1024, gpu=gpus),
        http_connections=CONNECTIONS,
        mounts=(Mount(repository, MODELS_MOUNT, read_only=True),),
    )


def for_runtime(
    runtime: str, home: Path | None, image: str | None, repository: Path, gpus: int
) -> PlatformService | None:
    """The Triton this runtime can run, or None: the sandbox runs one from ``home``, Docker one from ``image``."""
    if runtime == "sandbox" and home is not None:
        return triton_service(home, repository, gpus)
    if runtime == "docker" and image:
        return triton_image_service(image, repository, gpus)
    return None
