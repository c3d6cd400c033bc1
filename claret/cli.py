"""The ``claret`` command (also installed as ``clara``): ``claret serve`` and the client verbs.

The client verbs are the original ``clara`` ones (``clara create job -n NAME -p PIPELINE -f DIR --start``,
``clara describe job -j ID``, ``clara download JOB:/operators/x/* out`` ...) with the output shapes its
scripts parse, so those scripts keep working; ``claret dicom ...`` and ``claret queue`` are Claret's own, over
its DICOM and scheduling APIs.
Every client verb takes ``--host``, ``--config``, ``--output`` and ``--timeout``, before or after the verb
(after wins).

Which platform: ``--host`` > ``$CLARET_HOST_ADDRESS`` > ``host`` in the config file (``--config FILE``,
default ``~/.clara/config.yaml``) > ``127.0.0.1:30031``.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import click

from claret import __version__, transfers
from claret.errors import ClientError
from claret.output import Output, duration, shown, table, when
from claret.records import (
    DicomAeTitle,
    DicomAssociation,
    DicomExport,
    DicomStatus,
    HeldGrant,
    Job,
    JobState,
    JobStatus,
    ModelType,
    PipelineNode,
    Priority,
    QueueNode,
    QueueSnapshot,
    RunningService,
    WaitingOperator,
)
from shared.model_config import CONFIG, declared_name

if TYPE_CHECKING:
    from rich.tree import Tree

    from claret.client import PlatformClient

__all__ = [
    "PRIORITIES",
    "Session",
    "choices",
    "main",
    "verb",
    "warning",
]

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
Document = dict[str, Any]

TIMEOUT_S = 30.0
"""How long a verb waits for each answer unless ``--timeout`` says otherwise."""
PRIORITIES = {priority.name.lower().removesuffix("er"): priority for priority in Priority if priority}
"""``--priority`` spelt as the original CLI does: low, normal, high, immediate (LOWER and HIGHER shortened)."""
POLL_FIRST_S = 0.01
POLL_MAX_S = 1.0
"""``--wait`` polls Jobs.Status, quickly at first and twice as long each time (a job of tens of
milliseconds is seen ended within about as long again; one of a minute costs about 65 calls), then once
a second."""


def choices(enum: type[JobState] | type[JobStatus]) -> list[str]:
    """A filter's choices: the enum's members in lower case, but UNKNOWN, which no job has."""
    return [member.name.lower() for member in enum if member]


# The command tree


class ClaretGroup(click.Group):
    """The root command: a client failure becomes one ``error: ...`` line on stderr and exit status 1.
    ``serve`` is loaded only when asked for (or listed): its settings module costs every client verb's start-up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "serve"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "serve":
            from claret.serve_command import serve

            return serve
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientError as error:
            click.echo(f"error: {error}", err=True)
        except OSError as error:
            if isinstance(error, BrokenPipeError) or ctx.invoked_subcommand == "serve":
                raise  # serve reports its own failures, as it always did
            where = f"{error.filename}: " if error.filename else ""
            click.echo(f"error: {where}{error.strerror or error}", err=True)
        ctx.exit(1)


class ResourceGroup(click.Group):
    """A verb whose subcommands are resource types; plural forms (``list pipelines``) are accepted."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name.endswith("s"):
            command = super().get_command(ctx, cmd_name[:-1])
        return command


def _remember(ctx: click.Context, param: click.Parameter, value: object) -> None:
    """Keep a client option where every command finds it; given after the verb it wins over before."""
    if value is not None and param.name:
        ctx.find_root().meta[f"claret.{param.name}"] = value


CLIENT_OPTIONS = (
    click.option(
        "--host",
        metavar="HOST[:PORT]",
        expose_value=False,
        callback=_remember,
        help="Platform address [$CLARET_HOST_ADDRESS, then config 'host'; default 127.0.0.1:30031].",
    ),
    click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        expose_value=False,
        callback=_remember,
        help="YAML config file with 'host' [default ~/.clara/config.yaml].",
    ),
    click.option(
        "--output",
        type=click.Choice(["text", "json"]),
        expose_value=False,
        callback=_remember,
        help="text for people (default) or one JSON document for scripts.",
    ),
    click.option(
        "--token",
        envvar="CLARET_TOKEN",
        expose_value=False,
        callback=_remember,
        help="Bearer token, for a platform with tokens turned on [$CLARET_TOKEN].",
    ),
    click.option(
        "--tls",
        is_flag=True,
        default=None,
        expose_value=False,
        callback=_remember,
        help="Use TLS (implied by --ca-cert and --client-cert).",
    ),
    click.option(
        "--ca-cert",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        envvar="CLARET_CA_CERT",
        expose_value=False,
        callback=_remember,
        help="PEM CA bundle to trust [$CLARET_CA_CERT].",
    ),
    click.option(
        "--client-cert",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        envvar="CLARET_CLIENT_CERT",
        expose_value=False,
        callback=_remember,
        help="PEM certificate for mutual TLS [$CLARET_CLIENT_CERT].",
    ),
    click.option(
        "--client-key",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        envvar="CLARET_CLIENT_KEY",
        expose_value=False,
        callback=_remember,
        help="PEM key of --client-cert [$CLARET_CLIENT_KEY].",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        metavar="SECONDS",
        expose_value=False,
        callback=_remember,
        help=f"Seconds to wait for each answer (transfers excepted) [default {TIMEOUT_S:g}].",
    ),
)


def client_options(command: F) -> F:
    for option in reversed(CLIENT_OPTIONS):
        command = option(command)
    return command


@dataclass(frozen=True)
class Session:
    """What a client verb works with: the platform and where its results go."""

    client: PlatformClient
    output: Output


@asynccontextmanager
async def session(ctx: click.Context) -> AsyncIterator[Session]:
    """Connect as the client options say; the channel closes when the verb ends."""
    from claret.client import PlatformClient, Security, platform_address  # gRPC: for client verbs only

    options = ctx.find_root().meta
    address = platform_address(options.get("claret.host"), options.get("claret.config"))
    security = Security(
        token=options.get("claret.token"),
        tls=bool(options.get("claret.tls")),
        ca_cert=options.get("claret.ca_cert"),
        client_cert=options.get("claret.client_cert"),
        client_key=options.get("claret.client_key"),
    )
    timeout = options.get("claret.timeout", TIMEOUT_S)
    async with PlatformClient(address, timeout=timeout, security=security) as client:
        yield Session(client, Output(json_mode=options.get("claret.output") == "json"))


def verb(body: Callable[Concatenate[Session, P], Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """A client verb from a coroutine that takes the session first, then the command's parameters.

    Click commands are synchronous and the client is async: each invocation runs its body to the end on
    the process's event loop (:func:`event_loop`); the session is made and closed within the invocation.
    """

    async def connected(ctx: click.Context, *args: P.args, **kwargs: P.kwargs) -> None:
        async with session(ctx) as s:
            await body(s, *args, **kwargs)

    @functools.wraps(body)
    def command(*args: P.args, **kwargs: P.kwargs) -> None:
        event_loop().run(connected(click.get_current_context(), *args, **kwargs))

    return command


@functools.cache
def event_loop() -> asyncio.Runner:
    """One event loop for the process, closed at exit: grpc.aio's completion queue keeps the loop it first
    ran on, so a second verb in one process (tests run many) must not run on a new one."""
    runner = asyncio.Runner()
    atexit.register(runner.close)
    return runner


def target(flag: str, kind: str, *, many: bool = False) -> Callable[[F], F]:
    """The command's target by the original's flag (``-j ID``) or positionally (``describe job ID``)."""
    metavar = f"[{kind.upper()}_ID{'...' if many else ''}]"

    def decorate(command: F) -> F:
        command = click.argument("ids", nargs=-1, metavar=metavar)(command)
        help_text = f"The {kind}: its id or a unique prefix of it."
        return click.option(flag, f"--{kind}", "flagged", multiple=True, metavar="ID", help=help_text)(command)

    return decorate


def targets(ids: Sequence[str], flagged: Sequence[str], kind: str, *, many: bool = False) -> list[str]:
    given = [*flagged, *ids]
    if not given:
        raise click.UsageError(f"which {kind}? Give its id or a unique prefix of it.")
    if len(given) > 1 and not many:
        raise click.UsageError(f"give one {kind} id, not {len(given)}")
    return given


@click.group(cls=ClaretGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="claret")
@client_options
def main() -> None:
    """Claret: run GPU pipelines of containers, compatible with Clara Deploy 0.7.4.

    Platform address: --host, else $CLARET_HOST_ADDRESS, else 'host' in the config file
    (--config, default ~/.clara/config.yaml), else 127.0.0.1:30031. Ids may be unique prefixes.
    """


@main.group(cls=ResourceGroup)
def create() -> None:
    """Create a pipeline, a job or a payload."""


@main.group("list", cls=ResourceGroup)
def list_() -> None:
    """List pipelines or jobs."""


@main.group(cls=ResourceGroup)
def describe() -> None:
    """Describe a pipeline, a job or a payload."""


@main.group(cls=ResourceGroup)
def delete() -> None:
    """Delete pipelines."""


@main.group(cls=ResourceGroup)
def start() -> None:
    """Start a job."""


@main.group(cls=ResourceGroup)
def stop() -> None:
    """Stop (cancel) a job."""


# Pipelines


@create.command("pipeline")
@click.option(
    "-p",
    "--pipeline",
    "definition",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The pipeline definition (YAML); the files it imports are sent with it.",
)
@client_options
@verb
async def create_pipeline(s: Session, definition: Path) -> None:
    """Register a pipeline; prints PIPELINE_ID:<id>, and on stderr what the platform ignored in it."""
    from claret.definition_files import definition_files

    files = definition_files(definition)
    created = await s.client.create_pipeline(files)
    for message in created.warnings:
        click.echo(warning(message), err=True)
    document = {"pipeline_id": created.pipeline_id, "files": [path for path, _ in files]}
    s.output.result({**document, "warnings": list(created.warnings)}, f"PIPELINE_ID:{created.pipeline_id}")


def warning(message: str) -> str:
    """One ``warning: ...`` line: Claret writes the prefix itself, another platform's messages get it here."""
    line = " ".join(message.split())  # one line, whatever the server wrote
    return line if line.startswith("warning: ") else f"warning: {line}"


@list_.command("pipeline")
@client_options
@verb
async def list_pipelines(s: Session) -> None:
    """List the pipelines (NAME  ID)."""
    pipelines = await s.client.list_pipelines()
    document: list[Document] = [{"pipeline_id": p.id, "name": p.name, "metadata": dict(p.metadata)} for p in pipelines]
    s.output.result(document, table(["NAME", "ID"], [[p["name"], p["pipeline_id"]] for p in document]))


def dag_document(nodes: Sequence[PipelineNode]) -> list[Document]:
    return [{"name": node.name, "next": dag_document(node.next)} for node in nodes]


def dag_tree(nodes: Sequence[Document], tree: Tree) -> Tree:
    for node in nodes:
        dag_tree(node["next"], tree.add(node["name"]))
    return tree


def pairs(metadata: dict[str, str]) -> str:
    return shown(", ".join(f"{key}={value}" for key, value in sorted(metadata.items())))


@describe.command("pipeline")
@target("-p", "pipeline")
@client_options
@verb
async def describe_pipeline(s: Session, ids: tuple[str, ...], flagged: tuple[str, ...]) -> None:
    """Show a pipeline: name, id, metadata, its DAG and its definition files."""
    from rich.tree import Tree

    pipeline = await s.client.pipeline_details(await s.client.resolve_pipeline(targets(ids, flagged, "pipeline")[0]))
    document: Document = {
        "pipeline_id": pipeline.id,
        "name": pipeline.name,
        "metadata": dict(pipeline.metadata),
        "dag": dag_document(pipeline.dag),
        "definition": [{"path": file.path, "content": file.content} for file in pipeline.files],
    }
    text: list[Any] = [
        f"Name: {document['name']}",
        f"PipelineId: {document['pipeline_id']}",
        f"Metadata: {pairs(document['metadata'])}",
        dag_tree(document["dag"], Tree("DAG:", guide_style="dim")),
    ]
    for file in document["definition"]:
        text += [f"--- {file['path']}", file["content"].rstrip("\n")]
    s.output.result(document, *text)


@delete.command("pipeline")
@target("-p", "pipeline", many=True)
@client_options
@verb
async def delete_pipeline(s: Session, ids: tuple[str, ...], flagged: tuple[str, ...]) -> None:
    """Delete pipelines (jobs already created from them keep their definition)."""
    deleted = []
    for ref in targets(ids, flagged, "pipeline", many=True):
        pipeline_id = await s.client.resolve_pipeline(ref)
        await s.client.remove_pipeline(pipeline_id)
        deleted.append(pipeline_id)
    s.output.result({"deleted": deleted}, *(f"deleted pipeline {pipeline_id}" for pipeline_id in deleted))


# Jobs


def job_document(job: Job) -> Document:
    """The fields Jobs.List and Jobs.Status share, as JSON (enums by their wire names)."""
    return {
        "job_id": job.id,
        "name": job.name,
        "pipeline_id": job.pipeline_id,
        "payload_id": job.payload_id,
        "status": job.status.wire_name,
        "state": job.state.wire_name,
        "priority": job.priority.wire_name,
        "created": when(job.created),
        "started": when(job.started),
        "stopped": when(job.stopped),
        "metadata": dict(job.metadata),
    }


@list_.command("job")
@click.option("--state", "states", multiple=True, type=click.Choice(choices(JobState), case_sensitive=False))
@click.option("--status", "statuses", multiple=True, type=click.Choice(choices(JobStatus), case_sensitive=False))
@click.option("--pipeline", "pipelines", multiple=True, metavar="ID", help="Only jobs of this pipeline.")
@click.option("--running", is_flag=True, help="Only running jobs (what the platform lists when given no filter).")
@client_options
@verb
async def list_jobs(
    s: Session, states: tuple[str, ...], statuses: tuple[str, ...], pipelines: tuple[str, ...], running: bool
) -> None:
    """List jobs, all of them unless filtered (repeat a filter to widen it; different filters narrow)."""
    jobs = await s.client.list_jobs(
        [JobState[name.upper()] for name in states] + ([JobState.RUNNING] if running else []),
        [JobStatus[name.upper()] for name in statuses],
        [await s.client.resolve_pipeline(ref) for ref in pipelines],
    )
    columns = ["JOB ID", "NAME", "PIPELINE ID", "STATE", "STATUS", "PRIORITY", "CREATED"]
    rows = [
        [j.id, j.name, j.pipeline_id, j.state.name, j.status.name, j.priority.name, shown(when(j.created))]
        for j in jobs
    ]
    s.output.result([job_document(job) for job in jobs], table(columns, rows))


def job_description(job: Job) -> Document:
    operators = [
        {
            "name": op.name,
            "status": op.status.wire_name,
            "created": when(op.created),
            "started": when(op.started),
            "stopped": when(op.stopped),
        }
        for op in job.operators
    ]
    dag = [{"name": node.name, "input_dependencies": list(node.input_dependencies)} for node in job.dag]
    return job_document(job) | {"operators": operators, "dag": dag, "messages": list(job.messages)}


def job_lines(job: Document) -> list[str]:
    """``Key: value`` lines; scripts of the original read the status from line 5 and the state from line 6."""
    lines = [
        f"JobId: {job['job_id']}",
        f"JobName: {job['name']}",
        f"PipelineId: {job['pipeline_id']}",
        f"PayloadId: {job['payload_id']}",
        f"JobStatus: {job['status']}",
        f"JobState: {job['state']}",
        f"JobPriority: {job['priority']}",
        f"Created: {shown(job['created'])}",
        f"Started: {shown(job['started'])}",
        f"Stopped: {shown(job['stopped'])}",
        "Operators:",
    ]
    lines += [
        f"  {op['name']}: {op['status']} (started {shown(op['started'])}, stopped {shown(op['stopped'])})"
        for op in job["operators"]
    ]
    lines += ["Metadata:", *(f"  {key}: {value}" for key, value in sorted(job["metadata"].items()))]
    lines += ["Messages:", *(f"  {message}" for message in job["messages"])]
    return lines


@describe.command("job")
@target("-j", "job")
@client_options
@verb
async def describe_job(s: Session, ids: tuple[str, ...], flagged: tuple[str, ...]) -> None:
    """Show a job: ids, status (line 5), state (line 6), priority, times, operators, metadata, messages."""
    job = job_description(await s.client.job_status(await s.client.resolve_job(targets(ids, flagged, "job")[0])))
    s.output.result(job, *job_lines(job))


async def wait_for_job(s: Session, job_id: str) -> Job:
    """Poll until the job stopped, showing operators completed so far (on a terminal's stderr only)."""
    delay = POLL_FIRST_S
    with s.output.progress(transfer=False) as progress:
        task = progress.add_task(f"job {job_id[:8]}", total=None)
        while True:
            job = await s.client.job_status(job_id)
            progress.update(
                task,
                total=len(job.operators) or None,
                completed=sum(op.done for op in job.operators),
                description=f"job {job_id[:8]} {job.state.name.lower()}",
            )
            if job.state is JobState.STOPPED:
                return job
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX_S)


async def run_job(s: Session, job_id: str, document: Document, *, wait: bool) -> None:
    """Start a created job, optionally wait for it, and report JOB_STATE/JOB_STATUS; a job that ended
    other than HEALTHY after ``wait`` exits non-zero, so ``create job --start --wait && next`` is safe."""
    started = await s.client.start_job(job_id)
    state, status, messages = started.state, started.status, tuple[str, ...]()
    if wait:
        final = await wait_for_job(s, job_id)
        state, status, messages = final.state, final.status, final.messages
    document |= {"state": state.wire_name, "status": status.wire_name}
    s.output.result(document, f"JOB_STATE:{document['state']}", f"JOB_STATUS:{document['status']}")
    if wait and status is not JobStatus.HEALTHY:
        raise ClientError(f"job {job_id} ended {document['status']}: {'; '.join(messages) or 'no message'}")


async def upload_files(s: Session, payload_id: str, plan: Sequence[transfers.Transfer]) -> list[Document]:
    """Upload each planned file, one stream per file, with one progress bar of bytes for all."""
    uploaded: list[Document] = []
    with s.output.progress(transfer=True) as progress:
        task = progress.add_task("upload", total=sum(t.size for t in plan))
        for item in plan:
            details = await s.client.upload(payload_id, item.name, item.local, lambda n: progress.advance(task, n))
            uploaded.append({"name": details.name or item.name, "size": details.size, "source": str(item.local)})
    return uploaded


@create.command("job")
@click.option("-n", "--name", required=True, help="Job name (letters, digits, - and _).")
@click.option("-p", "--pipeline", "pipeline_ref", required=True, metavar="ID", help="Pipeline id or unique prefix.")
@click.option(
    "-f",
    "--files",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="File or directory to upload as the job's input (a directory's files keep their relative names).",
)
@click.option(
    "-i", "--priority", type=click.Choice(list(PRIORITIES), case_sensitive=False), default="normal", show_default=True
)
@click.option("-s", "--start", "start_job", is_flag=True, help="Start the job once its files are uploaded.")
@click.option("-w", "--wait", is_flag=True, help="Start the job and wait until it stopped (implies --start).")
@client_options
@verb
async def create_job(
    s: Session,
    name: str,
    pipeline_ref: str,
    files: tuple[Path, ...],
    priority: str,
    start_job: bool,
    wait: bool,
) -> None:
    """Create a job; prints JOB_ID:<id> then PAYLOAD_ID:<id> (then JOB_STATE/JOB_STATUS if started)."""
    plan = transfers.upload_plan(files)
    pipeline_id = await s.client.resolve_pipeline(pipeline_ref)
    created = await s.client.create_job(pipeline_id, name, PRIORITIES[priority.lower()])
    document: Document = {"job_id": created.job_id, "payload_id": created.payload_id}
    s.output.text(f"JOB_ID:{created.job_id}", f"PAYLOAD_ID:{created.payload_id}")  # at once: the job exists now
    document["files"] = await upload_files(s, created.payload_id, plan)
    if start_job or wait:
        await run_job(s, created.job_id, document, wait=wait)
    elif s.output.json_mode:
        s.output.result(document)


@start.command("job")
@target("-j", "job")
@click.option("-w", "--wait", is_flag=True, help="Wait until the job stopped; exit 1 unless it ended HEALTHY.")
@client_options
@verb
async def start_job(s: Session, ids: tuple[str, ...], flagged: tuple[str, ...], wait: bool) -> None:
    """Start a created job; prints JOB_STATE:<state> and JOB_STATUS:<status>."""
    job_id = await s.client.resolve_job(targets(ids, flagged, "job")[0])
    await run_job(s, job_id, {"job_id": job_id}, wait=wait)


@stop.command("job")
@target("-j", "job")
@click.option("--reason", default="", help="Why, kept in the job's messages.")
@client_options
@verb
async def stop_job(s: Session, ids: tuple[str, ...], flagged: tuple[str, ...], reason: str) -> None:
    """Cancel a pending or running job (a stopped job is left as it is)."""
    canceled = await s.client.cancel_job(await s.client.resolve_job(targets(ids, flagged, "job")[0]), reason)
    document = {"job_id": canceled.job_id, "state": canceled.state.wire_name, "status": canceled.status.wire_name}
    lines = (f"JOB_ID:{document['job_id']}", f"JOB_STATE:{document['state']}", f"JOB_STATUS:{document['status']}")
    s.output.result(document, *lines)


@main.command()
@click.option("-j", "--job", "job_ref", metavar="ID", help="Job id or unique prefix.")
@click.option("-o", "--operator", "operators", multiple=True, help="Operator name [default: every operator].")
@click.option("-s", "--service", metavar="NAME", help="A pipeline service's log (its latest instance) instead.")
@client_options
@verb
async def logs(s: Session, job_ref: str | None, operators: tuple[str, ...], service: str | None) -> None:
    """Print an operator's log (stdout and stderr as written); each operator's under a header if none is named.
    With --service, the log of the latest pipeline service started under that name."""
    if (job_ref is None) == (service is None):
        raise click.UsageError("give either --job (with --operator) or --service")
    if service is not None:
        lines = [line async for line in s.client.read_service_log(service)]
        s.output.result({"service": service, "lines": lines}, *lines)
        return
    assert job_ref is not None
    job_id = await s.client.resolve_job(job_ref)
    names = list(operators) or [op.name for op in (await s.client.job_status(job_id)).operators]
    document: list[Document] = [
        {"operator": name, "lines": [line async for line in s.client.read_logs(job_id, name)]} for name in names
    ]
    text: list[str] = []
    for entry in document:
        text += [f"==> {entry['operator']} <=="] if not operators else []
        text += entry["lines"]
    s.output.result(document, *text)


# Payloads


def metadata_pairs(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values:
        key, equals, text = value.partition("=")
        if not equals or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE")
        found[key] = text
    return found


@create.command("payload")
@click.option("--metadata", multiple=True, callback=metadata_pairs, metavar="KEY=VALUE", help="Repeatable.")
@client_options
@verb
async def create_payload(s: Session, metadata: dict[str, str]) -> None:
    """Create a reusable payload (fill it with `upload`); prints PAYLOAD_ID:<id>."""
    payload_id = await s.client.create_payload(metadata)
    s.output.result({"payload_id": payload_id, "metadata": metadata}, f"PAYLOAD_ID:{payload_id}")


def size_text(size: int) -> str:
    return f"{size:,}"


@describe.command("payload")
@target("-p", "payload")
@client_options
@verb
async def describe_payload(s: Session, ids: tuple[str, ...], flagged: tuple[str, ...]) -> None:
    """List a payload's files (a job id means the job's payload)."""
    payload_id = await s.client.resolve_payload(targets(ids, flagged, "payload")[0])
    payload = await s.client.payload_details(payload_id)
    document: Document = {
        "payload_id": payload_id,
        "type": payload.type.wire_name,
        "job_id": payload.job_id,
        "metadata": dict(payload.metadata),
        "files": [{"name": file.name, "size": file.size} for file in payload.files],
    }
    rows = [[f["name"], size_text(f["size"])] for f in document["files"]]
    s.output.result(
        document, f"PayloadId: {payload_id}", f"JobId: {shown(document['job_id'])}", table(["FILE", "SIZE"], rows)
    )


@main.command()
@click.option("-p", "--payload", "payload_ref", required=True, metavar="ID", help="Payload or job id (or prefix).")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@client_options
@verb
async def upload(s: Session, payload_ref: str, sources: tuple[Path, ...]) -> None:
    """Upload files or directories into a payload (a job's: into its input, before it starts)."""
    plan = transfers.upload_plan(sources)
    payload_id = await s.client.resolve_payload(payload_ref)
    files = await upload_files(s, payload_id, plan)
    rows = [[f["name"], size_text(f["size"])] for f in files]
    s.output.result({"payload_id": payload_id, "files": files}, table(["FILE", "SIZE"], rows))


@main.command()
@click.argument("paths", nargs=-1, required=True, metavar="JOB:/PATH DEST | --model ID DEST")
@click.option("-m", "--model", "model_ref", metavar="ID", help="Download this model's archive to DEST instead.")
@client_options
@verb
async def download(s: Session, paths: tuple[str, ...], model_ref: str | None) -> None:
    """Download a job's payload files: one file, a folder, or a glob (JOB:/operators/shouter/*).

    A file goes to DEST (or into DEST when it is a directory or ends with /). A folder or a glob goes
    into the directory DEST, each file named relative to the pattern's fixed leading folders. With
    --model, the model's archive as it was uploaded goes to the file DEST.
    """
    if model_ref is not None:
        if len(paths) != 1:
            raise click.UsageError("with --model, give only DEST")
        await download_model(s, model_ref, Path(paths[0]))
        return
    if len(paths) != 2:
        raise click.UsageError("give JOB:/PATH and DEST")
    source, dest = paths
    ref, path = transfers.split_remote(source)
    payload_id = await s.client.resolve_payload(ref)
    sizes = {file.name: file.size for file in (await s.client.payload_details(payload_id)).files}
    names, base = transfers.select(path, list(sizes))
    if not names:
        raise ClientError(f"no file of payload {payload_id} matches {path!r}")
    plan = transfers.download_plan(names, base, Path(dest), transfers.dest_is_folder(names, path, dest))
    files: list[Document] = []
    with s.output.progress(transfer=True) as progress:
        task = progress.add_task("download", total=sum(sizes.get(name, 0) for name in names) or None)
        for name, local in plan:
            details = await s.client.download(payload_id, name, local, lambda n: progress.advance(task, n))
            files.append({"name": details.name or name, "size": details.size, "path": str(local)})
    rows = [[f["name"], size_text(f["size"]), f["path"]] for f in files]
    s.output.result({"payload_id": payload_id, "files": files}, table(["FILE", "SIZE", "SAVED AS"], rows))


# Models


MODEL_TYPES = {
    "tensorflow": ModelType.TENSOR_FLOW,
    "tensorrt": ModelType.TENSOR_RT,
    "pytorch": ModelType.PY_TORCH,
    "unknown": ModelType.UNKNOWN,
}
"""``-t`` as the Clara CLI spells the toolsets."""


def model_name(folder: Path) -> str:
    """The name config.pbtxt gives, else the folder's (Triton needs the two equal)."""
    config = folder / CONFIG
    return (declared_name(config.read_text(errors="replace")) if config.is_file() else None) or folder.resolve().name


@create.command("model")
@click.option(
    "-p",
    "--path",
    "folder",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The Triton model folder (config.pbtxt and numbered version folders).",
)
@click.option("-t", "--type", "model_type", required=True, type=click.Choice(MODEL_TYPES), help="The model's toolset.")
@click.option("-n", "--name", help="The model's name [default: config.pbtxt's name, else the folder's].")
@client_options
@verb
async def create_model(s: Session, folder: Path, model_type: str, name: str | None) -> None:
    """Upload a model to the Model Repository (a model of the same name is replaced)."""
    import tempfile

    name = name or model_name(folder)
    with tempfile.TemporaryDirectory(prefix="claret-model-") as scratch:
        archive = await asyncio.to_thread(transfers.zip_folder, folder, Path(scratch) / "model.zip")
        with s.output.progress(transfer=True) as progress:
            task = progress.add_task("upload", total=archive.stat().st_size)
            model = await s.client.upload_model(
                name, MODEL_TYPES[model_type], archive, lambda n: progress.advance(task, n)
            )
    s.output.result({"model_id": model.id, "name": model.name, "type": model.type.wire_name}, f"MODEL_ID:{model.id}")


@list_.command("model")
@client_options
@verb
async def list_models(s: Session) -> None:
    """List the models of the Model Repository (NAME  TYPE  ID)."""
    models = await s.client.list_models()
    document: list[Document] = [
        {"model_id": m.id, "name": m.name, "type": m.type.wire_name, "metadata": dict(m.metadata)} for m in models
    ]
    s.output.result(document, table(["NAME", "TYPE", "ID"], [[m["name"], m["type"], m["model_id"]] for m in document]))


@delete.command("model")
@target("-m", "model", many=True)
@client_options
@verb
async def delete_models(s: Session, ids: tuple[str, ...], flagged: tuple[str, ...]) -> None:
    """Delete models from the Model Repository (they leave every catalog and instance that listed them)."""
    deleted = []
    for ref in targets(ids, flagged, "model", many=True):
        model_id = await s.client.resolve_model(ref)
        await s.client.delete_model(model_id)
        deleted.append(model_id)
    s.output.result({"deleted": deleted}, *(f"deleted model {model_id}" for model_id in deleted))


async def download_model(s: Session, ref: str, dest: Path) -> None:
    model_id = await s.client.resolve_model(ref)
    with s.output.progress(transfer=True) as progress:
        task = progress.add_task("download", total=None)
        model = await s.client.download_model(model_id, dest, lambda n: progress.advance(task, n))
    size = (await asyncio.to_thread(dest.stat)).st_size
    document = {"model_id": model.id, "name": model.name, "size": size, "path": str(dest)}
    s.output.result(document, table(["MODEL", "SIZE", "SAVED AS"], [[model.name, size_text(size), str(dest)]]))


# Platform


@main.command()
@client_options
@verb
async def version(s: Session) -> None:
    """Show this client's version and the platform's (Clara API version it implements)."""
    platform = str(await s.client.version())
    document = {"client": __version__, "platform": platform, "host": s.client.address}
    s.output.result(document, f"Client: {__version__}", f"Platform: {platform}", f"Host: {s.client.address}")


@main.command()
@click.option("--service", default="", help="A service's full name, e.g. nvidia.clara.platform.Jobs [default: all].")
@client_options
@verb
async def health(s: Session, service: str) -> None:
    """Exit 0 when the platform (or one service) is SERVING: for container health checks and scripts."""
    status = await s.client.health(service)
    s.output.result({"service": service, "status": status}, status)
    if status != "SERVING":
        click.get_current_context().exit(1)


@main.command()
@client_options
@verb
async def utilization(s: Session) -> None:
    """Show the platform's GPUs: utilisation, memory and the operators using them."""
    gpus: list[Document] = [
        {
            "node_id": g.node_id,
            "pcie_id": g.pcie_id,
            "compute_utilization": g.compute_utilization,
            "memory_utilization": g.memory_utilization,
            "memory_free_mb": g.memory_free_mb,
            "memory_used_mb": g.memory_used_mb,
            "processes": [{"name": p.name, "job_id": p.job_id} for p in g.processes],
        }
        for g in await s.client.utilization()
    ]
    columns = ["NODE", "PCIE ID", "GPU", "MEMORY", "FREE MB", "USED MB", "PROCESSES"]
    rows = [
        [
            g["node_id"],
            str(g["pcie_id"]),
            f"{g['compute_utilization']:.0%}",
            f"{g['memory_utilization']:.0%}",
            str(g["memory_free_mb"]),
            str(g["memory_used_mb"]),
            shown(", ".join(p["name"] for p in g["processes"])),
        ]
        for g in gpus
    ]
    s.output.result(gpus, table(columns, rows) if gpus else f"no GPUs reported by the platform at {s.client.address}")


# The queue (Claret's scheduling API)


def queue_document(snapshot: QueueSnapshot) -> Document:
    """The snapshot as it is, times as ISO 8601."""
    document = dataclasses.asdict(snapshot)
    for grant in document["held"]:
        grant["since"] = when(grant["since"])
    return document


def ids(gpu_ids: Sequence[str]) -> str:
    return shown(",".join(gpu_ids))


def node_row(n: QueueNode) -> list[str]:
    """NODE, then FREE/CAPACITY of cores and memory, then the GPU ids free and in all."""
    room = [f"{n.free.cpus}/{n.capacity.cpus}", f"{n.free.memory_mb}/{n.capacity.memory_mb}"]
    return [n.name or "local", *room, ids(n.free.gpu_ids), ids(n.capacity.gpu_ids)]


def grant_row(g: HeldGrant) -> list[str]:
    return [g.job_id, g.operator, g.node or "local", str(g.cpu), str(g.memory_mb), ids(g.gpu_ids), shown(when(g.since))]


def waiting_row(w: WaitingOperator) -> list[str]:
    return [w.job_id, w.operator, w.priority, str(w.cpu), str(w.memory_mb), str(w.gpus), duration(w.waited_s), w.reason]


def service_row(r: RunningService) -> list[str]:
    return [r.id, r.name, r.image, "ready" if r.ready else "starting", str(r.users), ids(r.gpu_ids)]


def queue_text(snapshot: QueueSnapshot) -> list[Any]:
    """A table per part, each under a heading (the tables' columns alone would not say what they list)."""
    listed = len(snapshot.waiting)
    more = f" ({listed} of {snapshot.waiting_total})" if snapshot.waiting_total > listed else ""
    parts = [
        ("Nodes", ["NODE", "FREE CPUS", "FREE MEMORY MB", "FREE GPUS", "GPUS"], map(node_row, snapshot.nodes)),
        ("Held", ["JOB ID", "OPERATOR", "NODE", "CPUS", "MEMORY MB", "GPUS", "SINCE"], map(grant_row, snapshot.held)),
        (
            f"Waiting, in start order{more}",
            ["JOB ID", "OPERATOR", "PRIORITY", "CPUS", "MEMORY MB", "GPUS", "WAITED", "REASON"],
            map(waiting_row, snapshot.waiting),
        ),
        (
            "Waiting for upstream operators",
            ["JOB ID", "OPERATOR", "UPSTREAM"],
            ([b.job_id, b.operator, ",".join(b.upstream)] for b in snapshot.blocked),
        ),
        ("Services", ["SERVICE ID", "NAME", "IMAGE", "STATE", "USERS", "GPUS"], map(service_row, snapshot.services)),
    ]
    text: list[Any] = []
    for heading, columns, rows in parts:
        found = list(rows)
        text += [f"{heading}:", table(columns, found) if found else "none", ""]
    return text[:-1]  # a blank line between parts, not after the last


@main.command()
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="How many waiting operators (and as many waiting for upstream ones); the platform answers 1000 at most.",
)
@client_options
@verb
async def queue(s: Session, limit: int) -> None:
    """Show the jobs service's queue: each node's free room, the grants held (who holds each GPU), the operators
    waiting in the order they would start and why, those waiting for upstream operators, the pipeline services."""
    snapshot = await s.client.queue_snapshot(limit)
    s.output.result(queue_document(snapshot), *queue_text(snapshot))


# The DICOM service


@main.group("dicom")
def dicom_group() -> None:
    """The DICOM service: its configuration in force, recent associations and exports."""


LIMIT = click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="How many, newest first (the platform answers 1000 at most).",
)


def ae_title_document(entry: DicomAeTitle) -> Document:
    return {
        "ae_title": entry.ae_title,
        "name": entry.name,
        "pipelines": [{"key": key, "ref": ref} for key, ref in entry.pipelines],
        "priority": entry.priority,
        "grouping": entry.grouping,
        "timeout": entry.timeout,
        "sources": list(entry.sources),
        "export": {"operators": list(entry.export_operators), "destinations": list(entry.export_destinations)},
        "ignored_sop_classes": list(entry.ignored_sop_classes),
    }


def dicom_status_document(status: DicomStatus) -> Document:
    return {
        "config_path": status.config_path,
        "loaded": when(status.loaded),
        "problem": status.problem,
        "scp_port": status.scp_port,
        "scu_ae_title": status.scu_ae_title,
        "ae_titles": [ae_title_document(entry) for entry in status.ae_titles],
        "sources": [{"ae_title": source.ae_title, "host": source.host} for source in status.sources],
        "destinations": [
            {"name": d.name, "ae_title": d.ae_title, "host": d.host, "port": d.port} for d in status.destinations
        ],
    }


def ae_title_row(entry: DicomAeTitle) -> list[str]:
    """AE TITLE, NAME, PIPELINES (key=pipeline), PRIORITY, GROUPING, EXPORT (operators -> destinations), SOURCES."""
    grouping = f"study ({entry.timeout:g} s)" if entry.grouping == "study" else entry.grouping
    export = f"{','.join(entry.export_operators)} -> {','.join(entry.export_destinations)}"
    return [
        entry.ae_title,
        entry.name,
        shown(", ".join(f"{key}={ref}" for key, ref in entry.pipelines)),
        entry.priority,
        grouping,
        export if entry.export_destinations else "-",
        ", ".join(entry.sources) or "any",
    ]


@dicom_group.command("status")
@client_options
@verb
async def dicom_status(s: Session) -> None:
    """Show the configuration in force: AE titles and the pipelines they start, destinations, sources; and, when
    the file was refused, why (the last good configuration then stays in force)."""
    status = await s.client.dicom_status()
    text: list[Any] = [f"Config: {status.config_path} (loaded {shown(when(status.loaded))})"]
    if status.problem:
        text.append(f"Problem: {status.problem} (the last good configuration stays in force)")
    text += [f"ScpPort: {status.scp_port}", f"ScuAeTitle: {status.scu_ae_title}", ""]
    columns = ["AE TITLE", "NAME", "PIPELINES", "PRIORITY", "GROUPING", "EXPORT", "SOURCES"]
    text += [table(columns, [ae_title_row(entry) for entry in status.ae_titles]), ""]
    rows = [[d.name, d.ae_title, d.host, str(d.port)] for d in status.destinations]
    text += [table(["DESTINATION", "AE TITLE", "HOST", "PORT"], rows), ""]
    text.append(table(["SOURCE", "HOST"], [[source.ae_title, source.host or "any"] for source in status.sources]))
    s.output.result(dicom_status_document(status), *text)


def association_row(r: DicomAssociation) -> list[str]:
    return [
        r.id,
        r.called,
        r.calling,
        r.address,
        r.outcome,
        str(r.instances),
        size_text(r.bytes),
        shown(when(r.ended)),
        shown(r.reason),
    ]


def association_document(row: DicomAssociation) -> Document:
    return {
        "id": row.id,
        "called": row.called,
        "calling": row.calling,
        "address": row.address,
        "outcome": row.outcome,
        "reason": row.reason,
        "instances": row.instances,
        "bytes": row.bytes,
        "started": when(row.started),
        "ended": when(row.ended),
    }


@dicom_group.command("associations")
@LIMIT
@client_options
@verb
async def dicom_associations(s: Session, limit: int) -> None:
    """List the latest associations with the SCP, newest first: released, aborted, or rejected and why."""
    rows = await s.client.dicom_associations(limit)
    columns = ["ID", "CALLED", "CALLING", "ADDRESS", "OUTCOME", "INSTANCES", "BYTES", "ENDED", "REASON"]
    s.output.result([association_document(row) for row in rows], table(columns, [association_row(r) for r in rows]))


def export_row(r: DicomExport) -> list[str]:
    """NEXT TRY only for a pending export: a settled one is never tried again."""
    return [
        r.job_id,
        r.destination,
        r.state,
        str(r.files),
        str(r.attempts),
        shown(when(r.updated)),
        shown(when(r.next_try)) if r.state == "pending" else "-",
        shown(r.error),
    ]


def export_document(row: DicomExport) -> Document:
    return {
        "job_id": row.job_id,
        "destination": row.destination,
        "state": row.state,
        "files": row.files,
        "attempts": row.attempts,
        "error": row.error,
        "next_try": when(row.next_try),
        "updated": when(row.updated),
    }


@dicom_group.command("exports")
@LIMIT
@client_options
@verb
async def dicom_exports(s: Session, limit: int) -> None:
    """List the latest exports of jobs' results to destinations, most recently updated first."""
    rows = await s.client.dicom_exports(limit)
    columns = ["JOB ID", "DESTINATION", "STATE", "FILES", "ATTEMPTS", "UPDATED", "NEXT TRY", "ERROR"]
    s.output.result([export_document(row) for row in rows], table(columns, [export_row(r) for r in rows]))
