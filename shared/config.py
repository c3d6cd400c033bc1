"""Settings: one frozen dataclass, filled from command-line options and ``CLARET_*`` environment variables.

Every field has an environment variable named ``CLARET_<FIELD>`` (upper case); options given on the
command line win over the environment, which wins over the defaults here.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

ALL_SERVICES = ("pipelines", "payloads", "jobs", "models", "dicom", "console")
DEFAULT_SERVICES = ("pipelines", "payloads", "jobs", "models", "console")
"""What ``claret serve`` runs unless told: DICOM joins when ``dicom_config`` is set."""
RuntimeName = Literal["auto", "docker", "sandbox", "swarm"]
QueueKind = Literal["local", "database"]
LogFormat = Literal["console", "json"]
RUNTIMES: tuple[RuntimeName, ...] = get_args(RuntimeName)
QUEUES: tuple[QueueKind, ...] = get_args(QueueKind)
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)


def _total_memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):  # pragma: no cover - platforms without sysconf
        return 4096


@dataclass(frozen=True)
class Settings:
    """Configuration of one Claret server process."""

    host: str = "127.0.0.1"
    """Address to listen on; 0.0.0.0 to accept remote clients."""
    port: int = 30031
    """gRPC port (Clara's NodePort was 30031). 0 picks a free port."""
    data_dir: Path = Path(".claret")
    """Root of the database, payloads and operator logs unless those are set on their own."""
    database: Path | None = None
    """SQLite file shared by all services (default ``<data_dir>/claret.db``)."""
    database_url: str | None = None
    """``postgresql://user:password@host:port/db`` to share PostgreSQL instead (services on several hosts)."""
    payload_dir: Path | None = None
    """Payload tree shared by all services (default ``<data_dir>/payloads``)."""
    logs_dir: Path | None = None
    """Operator log files (default ``<data_dir>/logs``)."""
    models_dir: Path | None = None
    """The Model Repository's files (default ``<data_dir>/models``)."""
    max_model_mb: int = 10240
    """Largest model accepted, as uploaded and unpacked, in MiB."""
    triton_home: Path | None = None
    """An environment holding nvidia-pytriton's tritonserver (``bash scripts/triton`` makes ``.triton``): Triton
    for operators' ``models:`` on the sandbox runtime. Unset: jobs whose operators list models are refused."""
    triton_image: str | None = "nvcr.io/nvidia/tritonserver:24.10-py3"
    """The Triton image for operators' ``models:`` on the Docker runtime (empty: none)."""
    triton_gpus: int = 0
    """GPUs the Triton instance holds, from the ledger."""
    services: tuple[str, ...] = DEFAULT_SERVICES
    """Which services this process serves (the Clara service comes with ``jobs``; ``dicom`` by default
    when ``dicom_config`` is set)."""
    runtime: RuntimeName = "auto"
    """Operator runtime: ``docker``, ``sandbox``, ``swarm`` (operators as Docker Swarm services, placed on the
    swarm's nodes; the engine must be a manager's) or ``auto`` (Docker when an engine answers)."""
    log_format: LogFormat = "console"
    """``console`` for people, ``json`` for log collectors."""
    log_level: str = "info"
    gpus: tuple[str, ...] | None = None
    """GPU ids to schedule (e.g. ``0,1``); unset means discover with NVML, empty means none."""
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    """CPU cores the scheduler may grant."""
    memory_mb: int = field(default_factory=_total_memory_mb)
    """Memory (MB) the scheduler may grant."""
    max_storage_usage: float = 0.8
    """Uploads are refused when the payload volume is fuller than this share."""
    default_timeout: int = 600
    """Job timeout in seconds when the pipeline gives none."""
    max_timeout: int = 1800
    """Upper bound of any job timeout, in seconds."""
    stop_grace: float = 5.0
    """Seconds between the stop signal and the kill when an operator is stopped."""
    instance: str = "claret"
    """Name of this platform instance, put on the containers it starts."""
    host_payload_dir: Path | None = None
    """Host path of ``payload_dir`` when this service runs in a container and talks to the host's engine."""
    docker_url: str | None = None
    """Docker Engine API address (default: DOCKER_HOST or the local socket)."""
    readiness_interval: float = 5.0
    """Seconds between readiness checks (database, runtime) that drive the health service."""
    metrics_port: int | None = None
    """Port of the Prometheus ``/metrics`` endpoint on ``host``; unset means no endpoint, 0 picks a port."""
    tls_cert: Path | None = None
    """PEM certificate (chain) the server presents; with ``tls_key``, turns TLS on."""
    tls_key: Path | None = None
    """PEM private key of ``tls_cert``."""
    tls_client_ca: Path | None = None
    """PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)."""
    auth_tokens: tuple[str, ...] | None = None
    """Bearer tokens accepted in ``authorization`` metadata; unset (and no file) means no authentication."""
    auth_tokens_file: Path | None = None
    """A file of accepted bearer tokens, one a line (``#`` comments allowed)."""
    queue: QueueKind = "local"
    """Jobs queue and resource ledger: ``local`` (one jobs process) or ``database`` (shared by jobs replicas)."""
    replica: str | None = None
    """This jobs replica's name, stable across its restarts (default ``<hostname>:<port>``)."""
    node: str | None = None
    """Whose cpus, memory and GPUs this replica grants; replicas on one host must share it (default: hostname)."""
    takeover_after: float = 15.0
    """Seconds of silence after which another jobs replica takes a replica's jobs over (``database`` queue)."""
    queue_poll: float = 0.25
    """Seconds between a replica's looks at the shared queue, Cancels passed on, and heartbeats."""
    operator_uid: int = 65532
    """Host uid operators run as (never 0); the sandbox of a service that is not root runs them as its own user."""
    operator_gid: int = 65532
    """Host gid operators run as (never 0)."""
    pids_limit: int = 4096
    """Most processes and threads one operator may have at once."""
    max_log_mb: int = 256
    """Each operator's log keeps this many MiB, then a line saying the rest was dropped (and a job message)."""
    max_output_mb: int = 10240
    """Most MiB one job's operators may write into its payload; past it the operator faults."""
    service_start_timeout: float = 300.0
    """Seconds a pipeline service has to accept connections on each declared http port."""
    service_idle_timeout: float = 1800.0
    """Seconds a pipeline service no operator uses keeps running; 0 keeps it until Clara.Stop."""
    console_port: int = 30080
    """The web console's HTTP port on ``host`` (0 picks a free one); TLS and tokens as the gRPC port's."""
    console_platform: str | None = None
    """Where the console reaches the platform's gRPC services (default: this process's own port)."""
    dicom_config: Path | None = None
    """The DICOM service's configuration (AE titles, sources, destinations: docs/dicom.md); reloaded on change."""
    dicom_host: str | None = None
    """Address the DICOM SCP listens on (default: ``host``); its port is in ``dicom_config``."""
    dicom_platform: str | None = None
    """Where the DICOM service reaches the Jobs service over gRPC (default: this process's own port)."""
    service_data_dir: Path | None = None
    """Folder mounted read-only in every pipeline service at /clara/common (NVIDIA_CLARA_SERVICE_DATA_PATH)."""

    @property
    def replica_id(self) -> str:
        return self.replica or f"{socket.gethostname()}:{self.port or f'pid{os.getpid()}'}"

    @property
    def node_name(self) -> str:
        return self.node or socket.gethostname()

    @property
    def database_path(self) -> Path:
        return self.database or self.data_dir / "claret.db"

    @property
    def database_target(self) -> str | Path:
        """What :meth:`shared.db.Database.open` opens: the PostgreSQL URL if one is set, else the SQLite file."""
        return self.database_url or self.database_path

    @property
    def payload_path(self) -> Path:
        return self.payload_dir or self.data_dir / "payloads"

    @property
    def logs_path(self) -> Path:
        return self.logs_dir or self.data_dir / "logs"

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @classmethod
    def load(cls, options: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, overridden by ``CLARET_*`` variables, overridden by ``options`` that are not None."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"CLARET_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in (options or {}).items() if v is not None})
        if values.get("dicom_config") is not None and "services" not in values:
            values["services"] = (*DEFAULT_SERVICES, "dicom")
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        unknown = set(self.services) - set(ALL_SERVICES)
        if unknown or not self.services:
            raise ValueError(
                f"services must be a non-empty subset of {', '.join(ALL_SERVICES)}: "
                f"got {', '.join(self.services) or 'nothing'}"
            )
        if "dicom" in self.services and self.dicom_config is None:
            raise ValueError("the dicom service needs a configuration: set CLARET_DICOM_CONFIG (docs/dicom.md)")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}: got {self.runtime!r}")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}: got {self.log_format!r}")
        if not 0 < self.max_storage_usage <= 1:
            raise ValueError(f"max_storage_usage must be in (0, 1]: got {self.max_storage_usage}")
        if self.database_url is not None and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"database_url must be a postgresql:// URL: got {self.database_url!r}")
        if self.queue not in QUEUES:
            raise ValueError(f"queue must be one of {', '.join(QUEUES)}: got {self.queue!r}")
        if not 0 < self.queue_poll < self.takeover_after:
            raise ValueError(
                f"queue_poll ({self.queue_poll}) must be positive and below takeover_after ({self.takeover_after})"
            )
        for name in ("operator_uid", "operator_gid", "pids_limit", "max_log_mb", "max_output_mb", "max_model_mb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive (0 would mean root or no limit): got {getattr(self, name)}")
        if self.triton_gpus < 0:
            raise ValueError(f"triton_gpus cannot be negative: got {self.triton_gpus}")
        if self.service_start_timeout <= 0 or self.service_idle_timeout < 0:
            raise ValueError("service_start_timeout must be positive and service_idle_timeout not negative")
        if not 0 < self.default_timeout <= self.max_timeout:
            raise ValueError("default_timeout must be positive and at most max_timeout")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    """Turn an environment string into the field's type (read from its annotation)."""
    kind = str(f.type).removesuffix(" | None")  # an optional int is still parsed as an int
    try:
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if not raw.strip() and str(f.type).endswith("| None"):
            return None  # set but empty, as compose passes an unset ${VARIABLE:-}: not given
        if "Path" in kind:
            return Path(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"CLARET_{f.name.upper()}={raw!r}: {exc}") from None
    return raw
