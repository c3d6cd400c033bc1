"""The Clara API client: async (grpc.aio), answering typed records (:mod:`claret.records`), not messages.

It is the one client of this repository: the CLI runs it one command at a time (``asyncio.run``), the tests'
``Platform`` (tests/jobs_flow.py) and the benchmarks drive jobs through it.

Every call checks the ``ResponseHeader`` (a negative code is the platform refusing, with messages that
name the bad value) and turns gRPC transport failures into one :class:`ClientError` that says which
address could not be reached, so the CLI prints one line and never a traceback. Claret's own DICOM API
(``claret.dicom.Dicom``) has no header: it refuses with gRPC statuses, translated the same way. Ids may be unique
left-to-right prefixes; :meth:`PlatformClient.resolve_job` and friends expand them through the List RPCs.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from claret import __version__
from claret.errors import ClientError
from claret.records import (
    CanceledJob,
    CreatedJob,
    CreatedPipeline,
    DicomAssociation,
    DicomExport,
    DicomStatus,
    Gpu,
    Job,
    JobState,
    JobStatus,
    Model,
    ModelList,
    ModelType,
    Payload,
    PayloadFile,
    Pipeline,
    PlatformVersion,
    Priority,
    QueueSnapshot,
    StartedJob,
)
from protos.claret_api import dicom_pb2, dicom_pb2_grpc, scheduling_pb2, scheduling_pb2_grpc
from protos.nvidia.clara.platform import (
    clara_pb2,
    clara_pb2_grpc,
    common_pb2,
    jobs_pb2,
    jobs_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    payloads_pb2,
    payloads_pb2_grpc,
    pipelines_pb2,
    pipelines_pb2_grpc,
)
from shared.errors import ErrorCode

__all__ = [
    "ALL_STATES",
    "CHUNK_SIZE",
    "DEFAULT_ADDRESS",
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT_S",
    "USER_AGENT",
    "ClientError",
    "PlatformClient",
    "Progress",
    "Security",
    "canonical_id",
    "config_host",
    "id_prefix",
    "match_prefix",
    "normalise_address",
    "platform_address",
]

DEFAULT_PORT = 30031
DEFAULT_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_TIMEOUT_S = 30.0
CHUNK_SIZE = 1024 * 1024
"""Upload chunk size: the Clara clients' ``GrpcChunkSizeDefault``, well under gRPC's 4 MiB message limit."""
USER_AGENT = f"claret-cli/{__version__}"
MAX_CANDIDATES_SHOWN = 5
ALL_STATES = tuple(state for state in JobState if state is not JobState.UNKNOWN)
"""Jobs.List filter meaning "every job": the platform answers no filter with the running jobs only."""
HEADER = common_pb2.RequestHeader(api_version=common_pb2.Version(major=0, minor=7, patch=4), user_agent=USER_AGENT)
"""Sent on every request (a message field assignment copies it, so one instance serves all)."""
DICOM_API = "the DICOM service (claret.dicom.Dicom)"
"""What a platform lacks when it answers a DICOM call UNIMPLEMENTED: it runs without the dicom service."""
ROUTED_SERVICES = ("pipelines", "payloads", "jobs", "clara", "scheduling", "models", "dicom")
"""The services a client may reach at addresses of their own (``PlatformClient(routes=...)``)."""
SCHEDULING_API = "the jobs service's scheduling API (claret.jobs.Scheduling)"

Progress = Callable[[int], None]
"""Called with the number of bytes just sent or received."""


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


SERVICES_LOG_JOB = "services"
"""The job id under which Jobs.ReadLogs serves pipeline services' logs (``SERVICES_JOB`` of the jobs service)."""


def _identifier(value: str) -> common_pb2.Identifier:
    return common_pb2.Identifier(value=value)


def _check(header: common_pb2.ResponseHeader) -> None:
    if header.code < 0:
        messages = tuple(header.messages)
        raise ClientError("; ".join(messages) or "the platform failed without a message", header.code, messages)


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

    def channel(self, address: str) -> grpc.aio.Channel:
        """A channel to ``address``; made inside the event loop that will use it (grpc.aio binds to it)."""
        if self.tls or self.ca_cert or self.client_cert:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self.ca_cert.read_bytes() if self.ca_cert else None,
                private_key=self.client_key.read_bytes() if self.client_key else None,
                certificate_chain=self.client_cert.read_bytes() if self.client_cert else None,
            )
            return grpc.aio.secure_channel(address, credentials)
        return grpc.aio.insecure_channel(address)

    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        """The call metadata carrying the token. Per call rather than as call credentials, which gRPC sends
        only over TLS: a loopback set-up may use tokens without it."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else None


class PlatformClient:
    """One channel to one platform address and the four services' stubs; use it as an async context manager.

    ``timeout`` bounds every call except transfers (uploads and downloads take as long as they take), so
    an address where nothing answers fails within it instead of hanging; None waits for ever. Given a
    ``channel``, the client uses it (``security`` does not apply) and leaves closing it to its owner.
    """

    def __init__(
        self,
        address: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        security: Security | None = None,
        channel: grpc.aio.Channel | None = None,
        routes: Mapping[str, str] | None = None,
    ) -> None:
        """``routes``: the services served at another address than ``address``, by name (``pipelines``,
        ``payloads``, ``jobs``, with which come ``clara`` and ``scheduling``; ``models``, ``dicom``), as when
        each runs in a container of its own. One channel per distinct address."""
        security = security or Security()
        routes = dict(routes or {})
        if unknown := sorted(set(routes) - set(ROUTED_SERVICES)):
            raise ValueError(f"no service named {', '.join(unknown)}: routes name {', '.join(ROUTED_SERVICES)}")
        self.address = address
        elsewhere = [f"{name} at {routed}" for name, routed in routes.items() if routed != address]
        self._where = f"{address} ({', '.join(elsewhere)})" if elsewhere else address
        """How failures name the platform: its address, and those of the services routed elsewhere."""
        self.timeout = timeout
        self._owns_channel = channel is None
        self._channel = security.channel(address) if channel is None else channel
        self._channels = {address: self._channel}
        for routed in routes.values():
            if routed not in self._channels:
                self._channels[routed] = security.channel(routed)
        self._metadata = security.metadata()

        def to(service: str) -> grpc.aio.Channel:
            return self._channels[routes.get(service, address)]

        self._pipelines = pipelines_pb2_grpc.PipelinesStub(to("pipelines"))  # type: ignore[no-untyped-call]
        self._jobs = jobs_pb2_grpc.JobsStub(to("jobs"))  # type: ignore[no-untyped-call]
        self._payloads = payloads_pb2_grpc.PayloadsStub(to("payloads"))  # type: ignore[no-untyped-call]
        self._clara = clara_pb2_grpc.ClaraStub(to("clara"))  # type: ignore[no-untyped-call]
        self._models = models_pb2_grpc.ModelsStub(to("models"))  # type: ignore[no-untyped-call]
        self._dicom = dicom_pb2_grpc.DicomStub(to("dicom"))  # type: ignore[no-untyped-call]
        self._scheduling = scheduling_pb2_grpc.SchedulingStub(to("scheduling"))  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> PlatformClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for channel in self._channels.values():
            if channel is not self._channel or self._owns_channel:
                await channel.close(grace=None)

    # Calls: the transport and the header checked in one place

    def _transport_error(self, error: grpc.aio.AioRpcError) -> ClientError:
        """A gRPC failure (no server, deadline, broken stream) as one line naming the address."""
        code, details = error.code(), error.details() or ""
        if code is grpc.StatusCode.UNAVAILABLE:  # details end with the cause: "...: Connection refused"
            reason = details.rsplit(": ", 1)[-1].strip("[]() ") or "unavailable"
            return ClientError(f"cannot reach the platform at {self._where} ({reason}); is it running?")
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            within = f" within {self.timeout:g} s" if self.timeout is not None else ""
            return ClientError(f"cannot reach the platform at {self._where}: no answer{within}")
        if code is grpc.StatusCode.INVALID_ARGUMENT:  # Claret's own APIs refuse so; the details name the value
            return ClientError(f"the platform at {self._where} refused the call: {details}")
        said = f": {details}" if details else ""  # gRPC's own repr of the error says nothing more
        return ClientError(f"the platform at {self._where} failed the call: {code.name}{said}")

    async def _call(self, method: Any, request: object, *, serves: str | None = None) -> Any:
        """A unary call's reply, a gRPC failure made one :class:`ClientError`; the reply's header (a Clara
        reply's) is left to the caller. ``serves`` names what the call needs, for a platform that answers
        UNIMPLEMENTED because it runs without that service."""
        try:
            return await method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            if serves is not None and error.code() is grpc.StatusCode.UNIMPLEMENTED:
                raise ClientError(f"the platform at {self._where} does not run {serves}") from None
            raise self._transport_error(error) from None

    async def _unary(self, method: Any, request: object) -> Any:
        reply = await self._call(method, request)
        _check(reply.header)
        return reply

    async def _stream(self, method: Any, request: object, *, transfer: bool = False) -> AsyncIterator[Any]:
        """The replies of a server-streaming call, each header checked (an error is one message).
        A transfer has no deadline: a large download takes as long as it takes."""
        call = method(request, timeout=None if transfer else self.timeout, metadata=self._metadata)
        try:
            async for reply in call:
                _check(reply.header)
                yield reply
        except grpc.aio.AioRpcError as error:
            raise self._transport_error(error) from None
        finally:
            call.cancel()  # a reader that stopped early (or an error header) ends the call; no-op once done

    async def _replies(self, method: Any, request: object) -> list[Any]:
        return [reply async for reply in self._stream(method, request)]

    # Pipelines

    async def create_pipeline(self, files: Sequence[tuple[str, str]]) -> CreatedPipeline:
        """Send the pipeline document first, then the files it imports (``(path, content)`` pairs)."""
        requests = [
            pipelines_pb2.PipelinesCreateRequest(
                header=HEADER, definition=pipelines_pb2.PipelineDefinitionFile(path=path, content=content)
            )
            for path, content in files
        ]
        reply = await self._unary(self._pipelines.Create, iter(requests))
        return CreatedPipeline(reply.pipeline_id.value, tuple(reply.header.messages))

    async def list_pipelines(self) -> list[Pipeline]:
        request = pipelines_pb2.PipelinesListRequest(header=HEADER)
        replies = await self._replies(self._pipelines.List, request)
        return [Pipeline.from_list(r.details) for r in replies if r.details.pipeline_id.value]

    async def pipeline_details(self, pipeline_id: str) -> Pipeline:
        """The pipeline with its DAG and its definition files."""
        request = pipelines_pb2.PipelinesDetailsRequest(header=HEADER, pipeline_id=_identifier(pipeline_id))
        return Pipeline.from_details(pipeline_id, await self._replies(self._pipelines.Details, request))

    async def remove_pipeline(self, pipeline_id: str) -> None:
        request = pipelines_pb2.PipelinesRemoveRequest(header=HEADER, pipeline_id=_identifier(pipeline_id))
        await self._unary(self._pipelines.Remove, request)

    async def resolve_pipeline(self, ref: str) -> str:
        """A full id as it is (the platform says whether it exists); a prefix expanded through Pipelines.List."""
        prefix = canonical_id("pipeline", ref, ErrorCode.INVALID_PIPELINE_ID)
        if len(prefix) == 32:
            return prefix
        candidates = [p.id for p in await self.list_pipelines()]
        return match_prefix("pipeline", ref, candidates, ErrorCode.NO_SUCH_PIPELINE)

    # Jobs

    async def create_job(self, pipeline_id: str, name: str, priority: Priority = Priority.NORMAL) -> CreatedJob:
        request = jobs_pb2.JobsCreateRequest(
            header=HEADER, pipeline_id=_identifier(pipeline_id), name=name, priority=priority.wire_name
        )
        reply = await self._unary(self._jobs.Create, request)
        return CreatedJob(reply.job_id.value, reply.payload_id.value)

    async def start_job(self, job_id: str, variables: Mapping[str, str] | None = None) -> StartedJob:
        """Start a created job, with values for the pipeline's declared variables if it has any."""
        named = [jobs_pb2.JobsStartRequest.NamedValue(name=k, value=v) for k, v in (variables or {}).items()]
        request = jobs_pb2.JobsStartRequest(header=HEADER, job_id=_identifier(job_id), Variables=named)
        reply = await self._unary(self._jobs.Start, request)
        return StartedJob(JobState(reply.state), JobStatus(reply.status), Priority(reply.priority))

    async def cancel_job(self, job_id: str, reason: str = "") -> CanceledJob:
        request = jobs_pb2.JobsCancelRequest(header=HEADER, job_id=_identifier(job_id), reason=reason)
        reply = await self._unary(self._jobs.Cancel, request)
        return CanceledJob(reply.job_id.value, JobState(reply.job_state), JobStatus(reply.job_status))

    async def add_job_metadata(self, job_id: str, metadata: Mapping[str, str]) -> dict[str, str]:
        """Add metadata keys to a job (a key it has already is refused); the job's whole metadata afterwards."""
        request = jobs_pb2.JobsAddMetadataRequest(header=HEADER, job_id=_identifier(job_id), metadata=metadata)
        return dict((await self._unary(self._jobs.AddMetadata, request)).metadata)

    async def job_status(self, job_id: str) -> Job:
        """The job with its operators, DAG and messages."""
        request = jobs_pb2.JobsStatusRequest(header=HEADER, job_id=_identifier(job_id))
        return Job.from_status(await self._unary(self._jobs.Status, request))

    async def list_jobs(
        self,
        states: Iterable[JobState] = (),
        statuses: Iterable[JobStatus] = (),
        pipeline_ids: Iterable[str] = (),
    ) -> list[Job]:
        """Every job matching the filter (OR within a field, AND across fields); no filter lists all."""
        wire_filter = jobs_pb2.JobsListRequest.JobFilter(
            has_state=[s.wire_name for s in tuple(states) or ALL_STATES],
            has_status=[s.wire_name for s in statuses],
            pipeline_id=[_identifier(p) for p in pipeline_ids],
        )
        request = jobs_pb2.JobsListRequest(header=HEADER, filter=wire_filter)
        replies = await self._replies(self._jobs.List, request)
        return [Job.from_list(r.job_details) for r in replies if r.job_details.job_id.value]

    async def read_logs(self, job_id: str, operator: str) -> AsyncIterator[str]:
        """An operator's log lines as the platform streams them (stdout and stderr as written)."""
        request = jobs_pb2.JobsReadLogsRequest(header=HEADER, job_id=_identifier(job_id), operator_name=operator)
        async for reply in self._stream(self._jobs.ReadLogs, request):
            for line in reply.logs:
                yield line

    async def read_service_log(self, name: str) -> AsyncIterator[str]:
        """The log lines of the latest pipeline service started under ``name`` (Jobs.ReadLogs of job
        ``services``, the platform's own addition: no job has that id)."""
        async for line in self.read_logs(SERVICES_LOG_JOB, name):
            yield line

    async def resolve_job(self, ref: str) -> str:
        """A full id as it is (the platform says whether it exists); a prefix expanded through Jobs.List."""
        prefix = canonical_id("job", ref, ErrorCode.INVALID_JOB_ID)
        if len(prefix) == 32:
            return prefix
        candidates = [j.id for j in await self.list_jobs()]
        return match_prefix("job", ref, candidates, ErrorCode.NO_SUCH_JOB)

    async def resolve_payload(self, ref: str) -> str:
        """The payload meant by a job id or a payload id, either possibly a prefix.

        A full id that is no job is taken as a (reusable) payload id. Prefixes are matched against the jobs'
        ids and their payloads' ids (reusable payloads cannot be listed, so they need their full id).
        """
        prefix = canonical_id("job or payload", ref, ErrorCode.INVALID_PAYLOAD_ID)
        if len(prefix) == 32:
            try:
                return (await self.job_status(prefix)).payload_id
            except ClientError as error:
                if error.code != ErrorCode.NO_SUCH_JOB:
                    raise
                return prefix
        jobs = await self.list_jobs()
        owners = {j.id: j.payload_id for j in jobs} | {j.payload_id: j.payload_id for j in jobs}
        return owners[match_prefix("job or payload", ref, owners, ErrorCode.NO_SUCH_PAYLOAD)]

    # Payloads

    async def create_payload(self, metadata: Mapping[str, str] | None = None) -> str:
        """A new reusable payload's id."""
        request = payloads_pb2.PayloadsCreateRequest(header=HEADER, metadata=metadata or {})
        reply = await self._unary(self._payloads.Create, request)
        return str(reply.payload_id.value)

    async def payload_details(self, payload_id: str) -> Payload:
        """The payload and its files, each named from the payload root (``/input/a``)."""
        request = payloads_pb2.PayloadsDetailsRequest(header=HEADER, payload_id=_identifier(payload_id))
        return Payload.from_details(payload_id, await self._replies(self._payloads.Details, request))

    async def upload(
        self, payload_id: str, name: str, source: Path | bytes, progress: Progress | None = None
    ) -> PayloadFile:
        """Stream one file (a local file, or bytes) as ``name`` in :data:`CHUNK_SIZE` chunks; a local file is
        read as it is sent, never whole into memory."""
        if isinstance(source, bytes):
            return await self._send(_upload_requests(payload_id, name, _byte_chunks(source)), progress)
        file = await asyncio.to_thread(source.open, "rb")  # before the call: a missing file fails as itself
        try:
            return await self._send(_upload_requests(payload_id, name, _file_chunks(file)), progress)
        finally:
            file.close()

    async def _send(
        self, requests: AsyncIterator[payloads_pb2.PayloadsUploadRequest], progress: Progress | None
    ) -> PayloadFile:
        reply = await self._client_stream(self._payloads.Upload, requests, progress)
        return PayloadFile.from_wire(reply.details)

    async def _client_stream(self, method: Any, requests: AsyncIterator[Any], progress: Progress | None) -> Any:
        """An upload stream's reply, its header checked; ``progress`` hears of each message's data."""
        # Handed to grpc.aio as a request iterator: it alone stops sending cleanly when the platform answers
        # early (a refusal), where writing message by message can fail the call with INTERNAL instead. But
        # it swallows an error of the iterator (a failing read) and cancels the call: the error is kept
        # here and raised in place of that cancellation.
        failure: Exception | None = None

        async def feed() -> AsyncIterator[Any]:
            nonlocal failure
            try:
                async for request in requests:
                    yield request
                    if progress is not None:
                        progress(len(request.data))
            except Exception as error:
                failure = error
                raise

        try:
            reply = await method(feed(), timeout=None, metadata=self._metadata)
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as error:
            if failure is not None:
                raise failure from None
            if isinstance(error, grpc.aio.AioRpcError):
                raise self._transport_error(error) from None
            raise
        _check(reply.header)
        return reply

    async def download(self, payload_id: str, name: str, target: Path, progress: Progress | None = None) -> PayloadFile:
        """Stream one file to a temporary beside ``target``, renamed over it once complete, so ``target`` is
        never half written."""
        request = payloads_pb2.PayloadsDownloadRequest(header=HEADER, payload_id=_identifier(payload_id), name=name)
        details = await _write_stream(self._stream(self._payloads.Download, request, transfer=True), target, progress)
        return PayloadFile.from_wire(details) if details is not None else PayloadFile(name, 0)

    async def download_chunks(self, payload_id: str, name: str) -> AsyncIterator[bytes]:
        """One file's content as the platform streams it (a web page relays it without holding it whole)."""
        request = payloads_pb2.PayloadsDownloadRequest(header=HEADER, payload_id=_identifier(payload_id), name=name)
        async for reply in self._stream(self._payloads.Download, request, transfer=True):
            yield reply.data

    async def download_bytes(self, payload_id: str, name: str) -> bytes:
        """One file's content, in memory (for small files: tests, scripts)."""
        request = payloads_pb2.PayloadsDownloadRequest(header=HEADER, payload_id=_identifier(payload_id), name=name)
        return b"".join([reply.data async for reply in self._stream(self._payloads.Download, request, transfer=True)])

    # Models

    async def upload_model(
        self, name: str, model_type: ModelType, archive: Path, progress: Progress | None = None
    ) -> Model:
        """Stream a model archive (a zip of a Triton model folder) to the Model Repository as ``name``."""
        file = await asyncio.to_thread(archive.open, "rb")
        details = models_pb2.ModelDetails(name=name, type=model_type.wire_name)

        async def requests() -> AsyncIterator[models_pb2.ModelsUploadModelRequest]:
            first = True
            async for data in _file_chunks(file):
                yield models_pb2.ModelsUploadModelRequest(header=HEADER, details=details if first else None, data=data)
                first = False

        try:
            reply = await self._client_stream(self._models.UploadModel, requests(), progress)
        finally:
            file.close()
        return Model.from_wire(reply.details)

    async def list_models(self) -> list[Model]:
        request = models_pb2.ModelsListModelsRequest(header=HEADER)
        return [
            Model.from_wire(m) async for reply in self._stream(self._models.ListModels, request) for m in reply.models
        ]

    async def list_catalogs(self) -> list[ModelList]:
        request = models_pb2.ModelsListCatalogsRequest(header=HEADER)
        replies = await self._replies(self._models.ListCatalogs, request)
        return [ModelList.from_wire(c) for reply in replies for c in reply.catalogs]

    async def list_instances(self) -> list[ModelList]:
        request = models_pb2.ModelsListInstancesRequest(header=HEADER)
        replies = await self._replies(self._models.ListInstances, request)
        return [ModelList.from_wire(i) for reply in replies for i in reply.instances]

    async def delete_model(self, model_id: str) -> None:
        request = models_pb2.ModelsDeleteModelRequest(header=HEADER, model_id=_identifier(model_id))
        await self._unary(self._models.DeleteModel, request)

    async def download_model(self, model_id: str, target: Path, progress: Progress | None = None) -> Model:
        """The model's archive as uploaded, into ``target`` (written beside it, then renamed over it)."""
        request = models_pb2.ModelsDownloadModelRequest(header=HEADER, model_id=_identifier(model_id))
        replies = self._stream(self._models.DownloadModel, request, transfer=True)
        details = await _write_stream(replies, target, progress)
        if details is None:
            raise ClientError(f"the platform sent no details of model {model_id}")
        return Model.from_wire(details)

    async def resolve_model(self, ref: str) -> str:
        """A full model id as it is; a prefix expanded through ListModels."""
        prefix = canonical_id("model", ref, ErrorCode.INVALID_MODEL_ID)
        if len(prefix) == 32:
            return prefix
        return match_prefix("model", ref, [m.id for m in await self.list_models()], ErrorCode.NO_SUCH_MODEL)

    # The platform

    async def version(self) -> PlatformVersion:
        reply = await self._unary(self._clara.Version, clara_pb2.ClaraVersionRequest(header=HEADER))
        return PlatformVersion.from_wire(reply.version)

    async def health(self, service: str = "") -> str:
        """The gRPC health status of ``service`` ("" = the whole server): SERVING, NOT_SERVING, ..."""
        request = health_pb2.HealthCheckRequest(service=service)
        reply = await self._call(health_pb2_grpc.HealthStub(self._channel).Check, request)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    async def stop_platform(self) -> None:
        """Clara.Stop: halt every pipeline service the platform runs and release what they hold."""
        await self._unary(self._clara.Stop, clara_pb2.ClaraStopRequest(header=HEADER))

    async def utilization(self) -> list[Gpu]:
        request = clara_pb2.ClaraUtilizationRequest(header=HEADER, watch=False)
        replies = await self._replies(self._clara.Utilization, request)
        return [Gpu.from_wire(metric) for reply in replies for metric in reply.gpu_metrics]

    # The jobs service's queue (Claret's own API)

    async def queue_snapshot(self, limit: int = 0) -> QueueSnapshot:
        """What the queue holds now: nodes, grants held, the first ``limit`` (0: 50) waiting operators in the
        order they would start and why they wait, operators waiting for upstream ones, pipeline services."""
        request = scheduling_pb2.SchedulingSnapshotRequest(limit=limit)
        return QueueSnapshot.from_wire(await self._call(self._scheduling.Snapshot, request, serves=SCHEDULING_API))

    # The DICOM service (Claret's own API)

    async def dicom_status(self) -> DicomStatus:
        """The DICOM service's configuration in force, and why the file was refused if it was."""
        return DicomStatus.from_wire(
            await self._call(self._dicom.Status, dicom_pb2.DicomStatusRequest(), serves=DICOM_API)
        )

    async def dicom_associations(self, limit: int = 0) -> list[DicomAssociation]:
        """The latest associations with the SCP, newest first: ``limit`` of them (0: the platform's default, 50;
        it answers 1000 at most)."""
        request = dicom_pb2.DicomListRequest(limit=limit)
        reply = await self._call(self._dicom.ListAssociations, request, serves=DICOM_API)
        return [DicomAssociation.from_wire(row) for row in reply.associations]

    async def dicom_exports(self, limit: int = 0) -> list[DicomExport]:
        """The latest exports of results to destinations, most recently updated first (``limit`` as above)."""
        request = dicom_pb2.DicomListRequest(limit=limit)
        reply = await self._call(self._dicom.ListExports, request, serves=DICOM_API)
        return [DicomExport.from_wire(row) for row in reply.exports]


async def _upload_requests(
    payload_id: str, name: str, chunks: AsyncIterator[bytes]
) -> AsyncIterator[payloads_pb2.PayloadsUploadRequest]:
    """The first request names the file (an empty file is that one request, without data); the others carry
    only data, as the Clara clients send them."""
    first: payloads_pb2.PayloadsUploadRequest | None = payloads_pb2.PayloadsUploadRequest(
        header=HEADER, payload_id=_identifier(payload_id), details=payloads_pb2.PayloadFileDetails(name=name)
    )
    async for data in chunks:
        if first is None:
            yield payloads_pb2.PayloadsUploadRequest(data=data)
        else:
            first.data = data
            yield first
            first = None
    if first is not None:
        yield first


async def _file_chunks(file: BinaryIO) -> AsyncIterator[bytes]:
    """A local file's chunks, read off the event loop (a slow disk must not stall other calls)."""
    while data := await asyncio.to_thread(file.read, CHUNK_SIZE):
        yield data


async def _byte_chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK_SIZE):
        yield data[start : start + CHUNK_SIZE]


async def _write_stream(replies: AsyncIterator[Any], target: Path, progress: Progress | None) -> Any:
    """Write a download stream's data to a temporary beside ``target``, renamed over it once complete, so
    ``target`` is never half written; returns the ``details`` of its first message that has them."""
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    file = await asyncio.to_thread(_create, partial)
    details = None
    try:
        try:
            async for reply in replies:
                if details is None and reply.HasField("details"):
                    details = reply.details
                await asyncio.to_thread(file.write, reply.data)
                if progress is not None:
                    progress(len(reply.data))
        finally:
            file.close()
        await asyncio.to_thread(os.replace, partial, target)
    finally:
        await asyncio.to_thread(partial.unlink, missing_ok=True)
    return details


def _create(path: Path) -> BinaryIO:
    """A new file (its folder made first), failing if one is there already."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("xb")


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
    import yaml  # only when no --host or $CLARET_HOST_ADDRESS names the platform

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
