"""A small synchronous client over the generated stubs, for the command line.

Every call checks the ``ResponseHeader`` (a negative code is the platform refusing, with messages that
name the bad value) and turns gRPC transport failures into one :class:`ClientError` that says which
address could not be reached, so the CLI prints one line and never a traceback. Ids may be unique
left-to-right prefixes; :meth:`PlatformClient.resolve_job` and friends expand them through the List RPCs.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from claret import __version__
from protos.nvidia.clara.platform import (
    clara_pb2,
    clara_pb2_grpc,
    common_pb2,
    jobs_pb2,
    jobs_pb2_grpc,
    payloads_pb2,
    payloads_pb2_grpc,
    pipelines_pb2,
    pipelines_pb2_grpc,
)
from shared.errors import ErrorCode

DEFAULT_PORT = 30031
DEFAULT_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_TIMEOUT_S = 30.0
CHUNK_SIZE = 1024 * 1024
"""Upload chunk size: the Clara clients' ``GrpcChunkSizeDefault``, well under gRPC's 4 MiB message limit."""
API_VERSION = common_pb2.Version(major=0, minor=7, patch=4)
USER_AGENT = f"claret-cli/{__version__}"
MAX_CANDIDATES_SHOWN = 5
ALL_STATES = (jobs_pb2.JOB_STATE_PENDING, jobs_pb2.JOB_STATE_RUNNING, jobs_pb2.JOB_STATE_STOPPED)
"""Jobs.List filter meaning "every job": the platform answers no filter with the running jobs only."""

Progress = Callable[[int], None]
"""Called with the number of bytes just sent or received."""


class Reply(Protocol):
    """Every response of the Clara API carries a ``ResponseHeader``."""

    @property
    def header(self) -> common_pb2.ResponseHeader: ...


R = TypeVar("R", bound=Reply)
PipelineDetails = pipelines_pb2.PipelinesListResponse.PipelineDetails
JobDetails = jobs_pb2.JobsListResponse.JobDetails
GpuUtilization = clara_pb2.ClaraUtilizationResponse.GpuUtilization


class ClientError(Exception):
    """A failure to show as one line: the platform's refusal (with its code) or a problem on this side."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())  # one line, whatever the server wrote
        self.code = code

    def __str__(self) -> str:
        return self.message if self.code is None else f"{self.message} (code {self.code})"


def normalise_address(host: str) -> str:
    """``HOST[:PORT]`` with the platform's default port added when none is given (IPv6 in brackets)."""
    text = host.strip()
    if not text:
        raise ClientError("the platform address is empty")
    if text.startswith("["):
        return text if re.search(r"]:\d+$", text) else f"{text}:{DEFAULT_PORT}"
    if text.count(":") > 1:  # a bare IPv6 address
        return f"[{text}]:{DEFAULT_PORT}"
    return text if ":" in text else f"{text}:{DEFAULT_PORT}"


def id_prefix(ref: str) -> str | None:
    """The canonical hex form of a full id or an id prefix (dashes dropped, lower case); None if malformed."""
    text = ref.strip().replace("-", "").lower()
    return text if 0 < len(text) <= 32 and all(c in "0123456789abcdef" for c in text) else None


def match_prefix(kind: str, ref: str, candidates: Iterable[str], missing: int) -> str:
    """The one candidate that ``ref`` is a left-to-right prefix of; an error naming the candidates if
    several match, or carrying the platform's "missing" code if none does."""
    prefix = id_prefix(ref) or ref
    matches = sorted({c for c in candidates if c.startswith(prefix)})
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ClientError(f"no {kind} with id {ref!r}", missing)
    shown = ", ".join(matches[:MAX_CANDIDATES_SHOWN])
    more = f" and {len(matches) - MAX_CANDIDATES_SHOWN} more" if len(matches) > MAX_CANDIDATES_SHOWN else ""
    raise ClientError(f"{kind} id {ref!r} is ambiguous: it matches {shown}{more}")


def canonical_id(kind: str, ref: str, invalid: int) -> str:
    """The hex form of a full id or prefix, or the platform's "invalid id" error without asking it."""
    prefix = id_prefix(ref)
    if prefix is None:
        raise ClientError(
            f"{kind} id {ref!r} is not a valid id (32 hex characters, a UUID, or a unique prefix of one)", invalid
        )
    return prefix


def _identifier(value: str) -> common_pb2.Identifier:
    return common_pb2.Identifier(value=value)


def _header() -> common_pb2.RequestHeader:
    return common_pb2.RequestHeader(api_version=API_VERSION, user_agent=USER_AGENT)


def _check(header: common_pb2.ResponseHeader) -> None:
    if header.code < 0:
        raise ClientError("; ".join(header.messages) or "the platform failed without a message", header.code)


@dataclass(frozen=True)
class CreatedPipeline:
    """What Pipelines.Create answered: the new id, and the messages of its successful header (the keys of
    the definition the platform ignored, as warnings)."""

    pipeline_id: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Security:
    """How to reach a platform that has TLS or bearer tokens turned on (both off by default)."""

    token: str | None = None
    """Sent as ``authorization: Bearer <token>`` on every call."""
    tls: bool = False
    """Use TLS, trusting the system's CAs unless ``ca_cert`` is given."""
    ca_cert: Path | None = None
    client_cert: Path | None = None
    """With ``client_key``: the certificate for mutual TLS."""
    client_key: Path | None = None

    def channel(self, address: str) -> grpc.Channel:
        if self.tls or self.ca_cert or self.client_cert:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self.ca_cert.read_bytes() if self.ca_cert else None,
                private_key=self.client_key.read_bytes() if self.client_key else None,
                certificate_chain=self.client_cert.read_bytes() if self.client_cert else None,
            )
            channel = grpc.secure_channel(address, credentials)
        else:
            channel = grpc.insecure_channel(address)
        if self.token:
            channel = grpc.intercept_channel(channel, _BearerToken(self.token))
        return channel


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Adds the token to every call's metadata; works on plaintext channels too (loopback set-ups)."""

    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", f"Bearer {token}")

    def _with_token(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or ()), self._metadata])

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_token(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_token(details), requests)


class PlatformClient:
    """One channel to one platform address and the four services' stubs; use it as a context manager.

    ``timeout`` bounds every call except transfers (uploads and downloads take as long as they take), so
    an address where nothing answers fails within it instead of hanging.
    """

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT_S, security: Security | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = (security or Security()).channel(address)
        self._pipelines = pipelines_pb2_grpc.PipelinesStub(self._channel)  # type: ignore[no-untyped-call]
        self._jobs = jobs_pb2_grpc.JobsStub(self._channel)  # type: ignore[no-untyped-call]
        self._payloads = payloads_pb2_grpc.PayloadsStub(self._channel)  # type: ignore[no-untyped-call]
        self._clara = clara_pb2_grpc.ClaraStub(self._channel)  # type: ignore[no-untyped-call]

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    @contextmanager
    def _transport(self) -> Iterator[None]:
        """gRPC failures (no server, deadline, broken stream) as one ClientError naming the address."""
        try:
            yield
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            details = (error.details() if isinstance(error, grpc.Call) else None) or str(error)
            if code is grpc.StatusCode.UNAVAILABLE:  # details end with the cause: "...: Connection refused"
                reason = details.rsplit(": ", 1)[-1].strip("[]() ")
                raise ClientError(f"cannot reach the platform at {self.address} ({reason}); is it running?") from None
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ClientError(
                    f"cannot reach the platform at {self.address}: no answer within {self.timeout:g} s"
                ) from None
            name = code.name if code is not None else "error"
            raise ClientError(f"the platform at {self.address} failed the call: {name}: {details}") from None

    def _unary(self, method: Callable[..., R], request: object) -> R:
        with self._transport():
            reply: R = method(request, timeout=self.timeout)
        _check(reply.header)
        return reply

    def _stream(self, method: Callable[..., Iterable[R]], request: object, *, transfer: bool = False) -> Iterator[R]:
        """The replies of a server-streaming call, each header checked (an error is one message).
        A transfer has no deadline: a large download takes as long as it takes."""
        with self._transport():
            for reply in method(request, timeout=None if transfer else self.timeout):
                _check(reply.header)
                yield reply

    # Pipelines

    def create_pipeline(self, files: Sequence[tuple[str, str]]) -> CreatedPipeline:
        """Send the pipeline document first, then the files it imports (``(path, content)`` pairs)."""
        requests = [
            pipelines_pb2.PipelinesCreateRequest(
                header=_header(), definition=pipelines_pb2.PipelineDefinitionFile(path=path, content=content)
            )
            for path, content in files
        ]
        reply: pipelines_pb2.PipelinesCreateResponse = self._unary(self._pipelines.Create, iter(requests))
        return CreatedPipeline(reply.pipeline_id.value, tuple(reply.header.messages))

    def list_pipelines(self) -> list[PipelineDetails]:
        request = pipelines_pb2.PipelinesListRequest(header=_header())
        return [r.details for r in self._stream(self._pipelines.List, request) if r.details.pipeline_id.value]

    def pipeline_details(self, pipeline_id: str) -> list[pipelines_pb2.PipelinesDetailsResponse]:
        """One message per definition file; id, name, DAG and metadata are repeated on each."""
        request = pipelines_pb2.PipelinesDetailsRequest(header=_header(), pipeline_id=_identifier(pipeline_id))
        return list(self._stream(self._pipelines.Details, request))

    def remove_pipeline(self, pipeline_id: str) -> None:
        request = pipelines_pb2.PipelinesRemoveRequest(header=_header(), pipeline_id=_identifier(pipeline_id))
        self._unary(self._pipelines.Remove, request)

    def resolve_pipeline(self, ref: str) -> str:
        """A full id as it is (the platform says whether it exists); a prefix expanded through Pipelines.List."""
        prefix = canonical_id("pipeline", ref, ErrorCode.INVALID_PIPELINE_ID)
        if len(prefix) == 32:
            return prefix
        candidates = [p.pipeline_id.value for p in self.list_pipelines()]
        return match_prefix("pipeline", ref, candidates, ErrorCode.NO_SUCH_PIPELINE)

    # Jobs

    def create_job(self, pipeline_id: str, name: str, priority: jobs_pb2.JobPriority) -> jobs_pb2.JobsCreateResponse:
        request = jobs_pb2.JobsCreateRequest(
            header=_header(), pipeline_id=_identifier(pipeline_id), name=name, priority=priority
        )
        reply: jobs_pb2.JobsCreateResponse = self._unary(self._jobs.Create, request)
        return reply

    def start_job(self, job_id: str) -> jobs_pb2.JobsStartResponse:
        request = jobs_pb2.JobsStartRequest(header=_header(), job_id=_identifier(job_id))
        reply: jobs_pb2.JobsStartResponse = self._unary(self._jobs.Start, request)
        return reply

    def cancel_job(self, job_id: str, reason: str = "") -> jobs_pb2.JobsCancelResponse:
        request = jobs_pb2.JobsCancelRequest(header=_header(), job_id=_identifier(job_id), reason=reason)
        reply: jobs_pb2.JobsCancelResponse = self._unary(self._jobs.Cancel, request)
        return reply

    def job_status(self, job_id: str) -> jobs_pb2.JobsStatusResponse:
        request = jobs_pb2.JobsStatusRequest(header=_header(), job_id=_identifier(job_id))
        reply: jobs_pb2.JobsStatusResponse = self._unary(self._jobs.Status, request)
        return reply

    def list_jobs(
        self,
        states: Sequence[jobs_pb2.JobState] = (),
        statuses: Sequence[jobs_pb2.JobStatus] = (),
        pipeline_ids: Sequence[str] = (),
    ) -> list[JobDetails]:
        """Every job matching the filter (OR within a field, AND across fields); no filter lists all."""
        wire_filter = jobs_pb2.JobsListRequest.JobFilter(
            has_state=states or ALL_STATES, has_status=statuses, pipeline_id=[_identifier(p) for p in pipeline_ids]
        )
        request = jobs_pb2.JobsListRequest(header=_header(), filter=wire_filter)
        return [r.job_details for r in self._stream(self._jobs.List, request) if r.job_details.job_id.value]

    def read_logs(self, job_id: str, operator: str) -> Iterator[str]:
        request = jobs_pb2.JobsReadLogsRequest(header=_header(), job_id=_identifier(job_id), operator_name=operator)
        for reply in self._stream(self._jobs.ReadLogs, request):
            yield from reply.logs

    def resolve_job(self, ref: str) -> str:
        """A full id as it is (the platform says whether it exists); a prefix expanded through Jobs.List."""
        prefix = canonical_id("job", ref, ErrorCode.INVALID_JOB_ID)
        if len(prefix) == 32:
            return prefix
        return match_prefix("job", ref, [j.job_id.value for j in self.list_jobs()], ErrorCode.NO_SUCH_JOB)

    def resolve_payload(self, ref: str) -> str:
        """The payload meant by a job id or a payload id, either possibly a prefix.

        A full id that is no job is taken as a (reusable) payload id. Prefixes are matched against the jobs'
        ids and their payloads' ids (reusable payloads cannot be listed, so they need their full id).
        """
        prefix = canonical_id("job or payload", ref, ErrorCode.INVALID_PAYLOAD_ID)
        if len(prefix) == 32:
            try:
                return self.job_status(prefix).payload_id.value
            except ClientError as error:
                if error.code != ErrorCode.NO_SUCH_JOB:
                    raise
                return prefix
        jobs = self.list_jobs()
        owners = {j.job_id.value: j.payload_id.value for j in jobs} | {
            j.payload_id.value: j.payload_id.value for j in jobs
        }
        return owners[match_prefix("job or payload", ref, owners, ErrorCode.NO_SUCH_PAYLOAD)]

    # Payloads

    def create_payload(self, metadata: dict[str, str]) -> str:
        request = payloads_pb2.PayloadsCreateRequest(header=_header(), metadata=metadata)
        reply: payloads_pb2.PayloadsCreateResponse = self._unary(self._payloads.Create, request)
        return reply.payload_id.value

    def payload_details(self, payload_id: str) -> list[payloads_pb2.PayloadsDetailsResponse]:
        """One message per file (none for an empty payload), each naming it from the payload root (``/input/a``)."""
        request = payloads_pb2.PayloadsDetailsRequest(header=_header(), payload_id=_identifier(payload_id))
        return list(self._stream(self._payloads.Details, request))

    def upload(self, payload_id: str, name: str, source: Path, progress: Progress) -> payloads_pb2.PayloadFileDetails:
        """Stream one file in :data:`CHUNK_SIZE` chunks, read as they are sent (never whole into memory)."""

        def chunks(file: BinaryIO) -> Iterator[payloads_pb2.PayloadsUploadRequest]:
            yield payloads_pb2.PayloadsUploadRequest(
                header=_header(),
                payload_id=_identifier(payload_id),
                details=payloads_pb2.PayloadFileDetails(name=name),
                data=(data := file.read(CHUNK_SIZE)),
            )
            progress(len(data))
            while data := file.read(CHUNK_SIZE):
                yield payloads_pb2.PayloadsUploadRequest(data=data)
                progress(len(data))

        with source.open("rb") as file, self._transport():
            reply: payloads_pb2.PayloadsUploadResponse = self._payloads.Upload(chunks(file))
        _check(reply.header)
        return reply.details

    def download(self, payload_id: str, name: str, target: Path, progress: Progress) -> payloads_pb2.PayloadFileDetails:
        """Stream one file to a temporary beside ``target``, renamed over it once complete, so ``target`` is
        never half written."""
        request = payloads_pb2.PayloadsDownloadRequest(header=_header(), payload_id=_identifier(payload_id), name=name)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        details = payloads_pb2.PayloadFileDetails()
        try:
            with partial.open("xb") as file:
                for reply in self._stream(self._payloads.Download, request, transfer=True):
                    if reply.HasField("details") and not details.name:
                        details = reply.details
                    file.write(reply.data)
                    progress(len(reply.data))
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return details

    # Platform

    def version(self) -> common_pb2.Version:
        reply: clara_pb2.ClaraVersionResponse = self._unary(
            self._clara.Version, clara_pb2.ClaraVersionRequest(header=_header())
        )
        return reply.version

    def health(self, service: str = "") -> str:
        """The gRPC health status of ``service`` ("" = the whole server): SERVING, NOT_SERVING, ..."""
        request = health_pb2.HealthCheckRequest(service=service)
        with self._transport():
            reply = health_pb2_grpc.HealthStub(self._channel).Check(request, timeout=self.timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def utilization(self) -> list[GpuUtilization]:
        request = clara_pb2.ClaraUtilizationRequest(header=_header(), watch=False)
        return [metric for reply in self._stream(self._clara.Utilization, request) for metric in reply.gpu_metrics]


HOST_ENV = "CLARET_HOST_ADDRESS"
DEFAULT_CONFIG = Path("~/.clara/config.yaml")


def platform_address(flag: str | None, config: Path | None = None) -> str:
    """Which platform to talk to: ``--host``, else ``$CLARET_HOST_ADDRESS``, else the config file's
    ``host``, else 127.0.0.1:30031. Scripts pin one run with the flag, a shell with the variable, and a
    person's machine with the file."""
    chosen = flag or os.environ.get(HOST_ENV) or config_host(config) or DEFAULT_ADDRESS
    return normalise_address(chosen)


def config_host(path: Path | None) -> str | None:
    """The ``host`` of a YAML config file (``~/.clara/config.yaml`` unless ``path``); a missing default
    file is no config, a missing or malformed explicit one is an error."""
    file = path or DEFAULT_CONFIG.expanduser()
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if path is None:
            return None
        raise ClientError(f"no config file {str(path)!r}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ClientError(f"cannot read config file {str(file)!r}: {error}") from None
    if document is None:
        return None
    host = document.get("host") if isinstance(document, dict) else None
    if not (host is None or isinstance(host, str)) or not isinstance(document, dict):
        raise ClientError(f"config file {str(file)!r} must be a mapping with a string 'host' (HOST[:PORT])")
    return host
