"""The ``claret`` command (also installed as ``clara``): ``claret serve`` and the client verbs.

The client verbs are the original ``clara`` ones (``clara create job -n NAME -p PIPELINE -f DIR --start``,
``clara describe job -j ID``, ``clara download JOB:/operators/x/* out`` ...) with the output shapes its
scripts parse, so those scripts keep working. Every client verb takes ``--host``, ``--config``,
``--output`` and ``--timeout``, before or after the verb (after wins).

Which platform: ``--host`` > ``$CLARET_HOST_ADDRESS`` > ``host`` in the config file (``--config FILE``,
default ``~/.clara/config.yaml``) > ``127.0.0.1:30031``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.tree import Tree

from claret import __version__, transfers
from claret.client import DEFAULT_TIMEOUT_S, ClientError, JobDetails, PlatformClient, Security, platform_address
from claret.definition_files import definition_files
from claret.output import Output, shown, table, when
from claret.serve_command import serve
from protos.nvidia.clara.platform import jobs_pb2, payloads_pb2, pipelines_pb2

F = TypeVar("F", bound=Callable[..., Any])
Document = dict[str, Any]

PRIORITIES = {
    "low": jobs_pb2.JOB_PRIORITY_LOWER,
    "normal": jobs_pb2.JOB_PRIORITY_NORMAL,
    "high": jobs_pb2.JOB_PRIORITY_HIGHER,
    "immediate": jobs_pb2.JOB_PRIORITY_IMMEDIATE,
}
STATES = {
    "pending": jobs_pb2.JOB_STATE_PENDING,
    "running": jobs_pb2.JOB_STATE_RUNNING,
    "stopped": jobs_pb2.JOB_STATE_STOPPED,
}
STATUSES = {
    "healthy": jobs_pb2.JOB_STATUS_HEALTHY,
    "faulted": jobs_pb2.JOB_STATUS_FAULTED,
    "canceled": jobs_pb2.JOB_STATUS_CANCELED,
    "evicted": jobs_pb2.JOB_STATUS_EVICTED,
    "terminated": jobs_pb2.JOB_STATUS_TERMINATED,
}
OPERATOR_DONE = (jobs_pb2.JOB_OPERATOR_STATUS_COMPLETED, jobs_pb2.JOB_OPERATOR_STATUS_FAULTED)
POLL_FIRST_S = 0.1
POLL_MAX_S = 1.0
"""``--wait`` polls Jobs.Status, quickly at first (short jobs return at once), then once a second."""


# The command tree


class ClaretGroup(click.Group):
    """The root command: a client failure becomes one ``error: ...`` line on stderr and exit status 1."""

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
        help=f"Seconds to wait for each answer (transfers excepted) [default {DEFAULT_TIMEOUT_S:g}].",
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


def session(ctx: click.Context) -> Session:
    """Connect as the client options say; the channel closes when the command ends."""
    root = ctx.find_root()
    options = root.meta
    address = platform_address(options.get("claret.host"), options.get("claret.config"))
    security = Security(
        token=options.get("claret.token"),
        tls=bool(options.get("claret.tls")),
        ca_cert=options.get("claret.ca_cert"),
        client_cert=options.get("claret.client_cert"),
        client_key=options.get("claret.client_key"),
    )
    client = root.with_resource(PlatformClient(address, options.get("claret.timeout", DEFAULT_TIMEOUT_S), security))
    return Session(client, Output(json_mode=options.get("claret.output") == "json"))


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


main.add_command(serve)


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
@click.pass_context
def create_pipeline(ctx: click.Context, definition: Path) -> None:
    """Register a pipeline; prints PIPELINE_ID:<id>, and on stderr what the platform ignored in it."""
    s = session(ctx)
    files = definition_files(definition)
    created = s.client.create_pipeline(files)
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
@click.pass_context
def list_pipelines(ctx: click.Context) -> None:
    """List the pipelines (NAME  ID)."""
    s = session(ctx)
    pipelines = s.client.list_pipelines()
    document: list[Document] = [
        {"pipeline_id": p.pipeline_id.value, "name": p.name, "metadata": dict(p.metadata)} for p in pipelines
    ]
    s.output.result(document, table(["NAME", "ID"], [[p["name"], p["pipeline_id"]] for p in document]))


def dag_document(nodes: Sequence[pipelines_pb2.PipelinesDetailsResponse.PipelineDagNode]) -> list[Document]:
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
@click.pass_context
def describe_pipeline(ctx: click.Context, ids: tuple[str, ...], flagged: tuple[str, ...]) -> None:
    """Show a pipeline: name, id, metadata, its DAG and its definition files."""
    s = session(ctx)
    pipeline_id = s.client.resolve_pipeline(targets(ids, flagged, "pipeline")[0])
    replies = s.client.pipeline_details(pipeline_id)
    first = replies[0] if replies else pipelines_pb2.PipelinesDetailsResponse()
    document: Document = {
        "pipeline_id": first.pipeline_id.value or pipeline_id,
        "name": first.name,
        "metadata": dict(first.metadata),
        "dag": dag_document(first.dag),
        "definition": [{"path": r.definition.path, "content": r.definition.content} for r in replies],
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
@click.pass_context
def delete_pipeline(ctx: click.Context, ids: tuple[str, ...], flagged: tuple[str, ...]) -> None:
    """Delete pipelines (jobs already created from them keep their definition)."""
    s = session(ctx)
    deleted = []
    for ref in targets(ids, flagged, "pipeline", many=True):
        pipeline_id = s.client.resolve_pipeline(ref)
        s.client.remove_pipeline(pipeline_id)
        deleted.append(pipeline_id)
    s.output.result({"deleted": deleted}, *(f"deleted pipeline {pipeline_id}" for pipeline_id in deleted))


# Jobs


def enum_name(enum: Any, value: int) -> str:
    name: str = enum.Name(value)
    return name


def job_document(job: JobDetails | jobs_pb2.JobsStatusResponse, name: str) -> Document:
    """The fields Jobs.List and Jobs.Status share, as JSON (enums by their wire names)."""
    return {
        "job_id": job.job_id.value,
        "name": name,
        "pipeline_id": job.pipeline_id.value,
        "payload_id": job.payload_id.value,
        "status": enum_name(jobs_pb2.JobStatus, job.status),
        "state": enum_name(jobs_pb2.JobState, job.state),
        "priority": enum_name(jobs_pb2.JobPriority, job.priority),
        "created": when(job.created),
        "started": when(job.started),
        "stopped": when(job.stopped),
        "metadata": dict(job.metadata),
    }


def short(enum_value: str) -> str:
    """``JOB_STATE_STOPPED`` as ``STOPPED``, for tables."""
    for prefix in ("JOB_STATE_", "JOB_STATUS_", "JOB_PRIORITY_", "JOB_OPERATOR_STATUS_"):
        enum_value = enum_value.removeprefix(prefix)
    return enum_value


@list_.command("job")
@click.option("--state", "states", multiple=True, type=click.Choice(list(STATES), case_sensitive=False))
@click.option("--status", "statuses", multiple=True, type=click.Choice(list(STATUSES), case_sensitive=False))
@click.option("--pipeline", "pipelines", multiple=True, metavar="ID", help="Only jobs of this pipeline.")
@click.option("--running", is_flag=True, help="Only running jobs (what the platform lists when given no filter).")
@client_options
@click.pass_context
def list_jobs(
    ctx: click.Context, states: tuple[str, ...], statuses: tuple[str, ...], pipelines: tuple[str, ...], running: bool
) -> None:
    """List jobs, all of them unless filtered (repeat a filter to widen it; different filters narrow)."""
    s = session(ctx)
    jobs = s.client.list_jobs(
        [STATES[name.lower()] for name in (*states, *(["running"] if running else []))],
        [STATUSES[name.lower()] for name in statuses],
        [s.client.resolve_pipeline(ref) for ref in pipelines],
    )
    document = [job_document(job, job.job_name) for job in jobs]
    columns = ["JOB ID", "NAME", "PIPELINE ID", "STATE", "STATUS", "PRIORITY", "CREATED"]
    rows = [
        [
            j["job_id"],
            j["name"],
            j["pipeline_id"],
            short(j["state"]),
            short(j["status"]),
            short(j["priority"]),
            shown(j["created"]),
        ]
        for j in document
    ]
    s.output.result(document, table(columns, rows))


def job_description(status: jobs_pb2.JobsStatusResponse) -> Document:
    operators = [
        {
            "name": op.name,
            "status": enum_name(jobs_pb2.JobOperatorStatus, op.status),
            "created": when(op.created),
            "started": when(op.started),
            "stopped": when(op.stopped),
        }
        for op in status.operator_details
    ]
    dag = [
        {"name": node.name, "input_dependencies": [up.name for up in node.input_dependencies]} for node in status.dag
    ]
    return job_document(status, status.name) | {"operators": operators, "dag": dag, "messages": list(status.messages)}


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
@click.pass_context
def describe_job(ctx: click.Context, ids: tuple[str, ...], flagged: tuple[str, ...]) -> None:
    """Show a job: ids, status (line 5), state (line 6), priority, times, operators, metadata, messages."""
    s = session(ctx)
    job = job_description(s.client.job_status(s.client.resolve_job(targets(ids, flagged, "job")[0])))
    s.output.result(job, *job_lines(job))


def wait_for_job(s: Session, job_id: str) -> jobs_pb2.JobsStatusResponse:
    """Poll until the job stopped, showing operators completed so far (on a terminal's stderr only)."""
    delay = POLL_FIRST_S
    with s.output.progress(transfer=False) as progress:
        task = progress.add_task(f"job {job_id[:8]}", total=None)
        while True:
            status = s.client.job_status(job_id)
            done = sum(op.status in OPERATOR_DONE for op in status.operator_details)
            state = short(enum_name(jobs_pb2.JobState, status.state)).lower()
            progress.update(
                task,
                total=len(status.operator_details) or None,
                completed=done,
                description=f"job {job_id[:8]} {state}",
            )
            if status.state == jobs_pb2.JOB_STATE_STOPPED:
                return status
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX_S)


def run_job(s: Session, job_id: str, document: Document, *, wait: bool) -> None:
    """Start a created job, optionally wait for it, and report JOB_STATE/JOB_STATUS; a job that ended
    other than HEALTHY after ``wait`` exits non-zero, so ``create job --start --wait && next`` is safe."""
    started = s.client.start_job(job_id)
    state, status, messages = started.state, started.status, list[str]()
    if wait:
        final = wait_for_job(s, job_id)
        state, status, messages = final.state, final.status, list(final.messages)
    document |= {"state": enum_name(jobs_pb2.JobState, state), "status": enum_name(jobs_pb2.JobStatus, status)}
    s.output.result(document, f"JOB_STATE:{document['state']}", f"JOB_STATUS:{document['status']}")
    if wait and status != jobs_pb2.JOB_STATUS_HEALTHY:
        raise ClientError(f"job {job_id} ended {document['status']}: {'; '.join(messages) or 'no message'}")


def upload_files(s: Session, payload_id: str, plan: Sequence[transfers.Transfer]) -> list[Document]:
    """Upload each planned file, one stream per file, with one progress bar of bytes for all."""
    uploaded: list[Document] = []
    with s.output.progress(transfer=True) as progress:
        task = progress.add_task("upload", total=sum(t.size for t in plan))
        for item in plan:
            details = s.client.upload(payload_id, item.name, item.local, lambda n: progress.advance(task, n))
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
@click.pass_context
def create_job(
    ctx: click.Context,
    name: str,
    pipeline_ref: str,
    files: tuple[Path, ...],
    priority: str,
    start_job: bool,
    wait: bool,
) -> None:
    """Create a job; prints JOB_ID:<id> then PAYLOAD_ID:<id> (then JOB_STATE/JOB_STATUS if started)."""
    s = session(ctx)
    plan = transfers.upload_plan(files)
    created = s.client.create_job(s.client.resolve_pipeline(pipeline_ref), name, PRIORITIES[priority.lower()])
    job_id, payload_id = created.job_id.value, created.payload_id.value
    document: Document = {"job_id": job_id, "payload_id": payload_id}
    s.output.text(f"JOB_ID:{job_id}", f"PAYLOAD_ID:{payload_id}")  # at once: the job exists from here on
    document["files"] = upload_files(s, payload_id, plan)
    if start_job or wait:
        run_job(s, job_id, document, wait=wait)
    elif s.output.json_mode:
        s.output.result(document)


@start.command("job")
@target("-j", "job")
@click.option("-w", "--wait", is_flag=True, help="Wait until the job stopped; exit 1 unless it ended HEALTHY.")
@client_options
@click.pass_context
def start_job(ctx: click.Context, ids: tuple[str, ...], flagged: tuple[str, ...], wait: bool) -> None:
    """Start a created job; prints JOB_STATE:<state> and JOB_STATUS:<status>."""
    s = session(ctx)
    job_id = s.client.resolve_job(targets(ids, flagged, "job")[0])
    run_job(s, job_id, {"job_id": job_id}, wait=wait)


@stop.command("job")
@target("-j", "job")
@click.option("--reason", default="", help="Why, kept in the job's messages.")
@client_options
@click.pass_context
def stop_job(ctx: click.Context, ids: tuple[str, ...], flagged: tuple[str, ...], reason: str) -> None:
    """Cancel a pending or running job (a stopped job is left as it is)."""
    s = session(ctx)
    reply = s.client.cancel_job(s.client.resolve_job(targets(ids, flagged, "job")[0]), reason)
    document = {
        "job_id": reply.job_id.value,
        "state": enum_name(jobs_pb2.JobState, reply.job_state),
        "status": enum_name(jobs_pb2.JobStatus, reply.job_status),
    }
    lines = (f"JOB_ID:{document['job_id']}", f"JOB_STATE:{document['state']}", f"JOB_STATUS:{document['status']}")
    s.output.result(document, *lines)


@main.command()
@click.option("-j", "--job", "job_ref", required=True, metavar="ID", help="Job id or unique prefix.")
@click.option("-o", "--operator", "operators", multiple=True, help="Operator name [default: every operator].")
@client_options
@click.pass_context
def logs(ctx: click.Context, job_ref: str, operators: tuple[str, ...]) -> None:
    """Print an operator's log (stdout and stderr as written); each operator's under a header if none is named."""
    s = session(ctx)
    job_id = s.client.resolve_job(job_ref)
    names = list(operators) or [op.name for op in s.client.job_status(job_id).operator_details]
    document: list[Document] = [{"operator": name, "lines": list(s.client.read_logs(job_id, name))} for name in names]
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
@click.pass_context
def create_payload(ctx: click.Context, metadata: dict[str, str]) -> None:
    """Create a reusable payload (fill it with `upload`); prints PAYLOAD_ID:<id>."""
    s = session(ctx)
    payload_id = s.client.create_payload(metadata)
    s.output.result({"payload_id": payload_id, "metadata": metadata}, f"PAYLOAD_ID:{payload_id}")


def size_text(size: int) -> str:
    return f"{size:,}"


@describe.command("payload")
@target("-p", "payload")
@client_options
@click.pass_context
def describe_payload(ctx: click.Context, ids: tuple[str, ...], flagged: tuple[str, ...]) -> None:
    """List a payload's files (a job id means the job's payload)."""
    s = session(ctx)
    payload_id = s.client.resolve_payload(targets(ids, flagged, "payload")[0])
    replies = s.client.payload_details(payload_id)
    first = replies[0] if replies else payloads_pb2.PayloadsDetailsResponse()
    document: Document = {
        "payload_id": payload_id,
        "type": enum_name(payloads_pb2.PayloadType, first.type),
        "job_id": first.job_id.value or None,
        "metadata": dict(first.metadata),
        "files": [{"name": r.file.name, "size": r.file.size} for r in replies],
    }
    rows = [[f["name"], size_text(f["size"])] for f in document["files"]]
    s.output.result(
        document, f"PayloadId: {payload_id}", f"JobId: {shown(document['job_id'])}", table(["FILE", "SIZE"], rows)
    )


@main.command()
@click.option("-p", "--payload", "payload_ref", required=True, metavar="ID", help="Payload or job id (or prefix).")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@client_options
@click.pass_context
def upload(ctx: click.Context, payload_ref: str, sources: tuple[Path, ...]) -> None:
    """Upload files or directories into a payload (a job's: into its input, before it starts)."""
    s = session(ctx)
    plan = transfers.upload_plan(sources)
    payload_id = s.client.resolve_payload(payload_ref)
    files = upload_files(s, payload_id, plan)
    rows = [[f["name"], size_text(f["size"])] for f in files]
    s.output.result({"payload_id": payload_id, "files": files}, table(["FILE", "SIZE"], rows))


@main.command()
@click.argument("source", metavar="JOB:/PATH")
@click.argument("dest")
@client_options
@click.pass_context
def download(ctx: click.Context, source: str, dest: str) -> None:
    """Download a job's payload files: one file, a folder, or a glob (JOB:/operators/shouter/*).

    A file goes to DEST (or into DEST when it is a directory or ends with /). A folder or a glob goes
    into the directory DEST, each file named relative to the pattern's fixed leading folders.
    """
    s = session(ctx)
    ref, path = transfers.split_remote(source)
    payload_id = s.client.resolve_payload(ref)
    sizes = {reply.file.name: reply.file.size for reply in s.client.payload_details(payload_id)}
    names, base = transfers.select(path, list(sizes))
    if not names:
        raise ClientError(f"no file of payload {payload_id} matches {path!r}")
    one_file = names == [path]  # not a glob and not a folder: DEST may name the file itself
    into_folder = not one_file or Path(dest).is_dir() or dest.endswith("/")
    plan = transfers.download_plan(names, base, Path(dest), into_folder)
    files: list[Document] = []
    with s.output.progress(transfer=True) as progress:
        task = progress.add_task("download", total=sum(sizes.get(name, 0) for name in names) or None)
        for name, local in plan:
            details = s.client.download(payload_id, name, local, lambda n: progress.advance(task, n))
            files.append({"name": details.name or name, "size": details.size, "path": str(local)})
    rows = [[f["name"], size_text(f["size"]), f["path"]] for f in files]
    s.output.result({"payload_id": payload_id, "files": files}, table(["FILE", "SIZE", "SAVED AS"], rows))


# Platform


@main.command()
@client_options
@click.pass_context
def version(ctx: click.Context) -> None:
    """Show this client's version and the platform's (Clara API version it implements)."""
    s = session(ctx)
    v = s.client.version()
    platform = f"{v.major}.{v.minor}.{v.patch}" + (f"-{v.label}" if v.label else "")
    document = {"client": __version__, "platform": platform, "host": s.client.address}
    s.output.result(document, f"Client: {__version__}", f"Platform: {platform}", f"Host: {s.client.address}")


@main.command()
@click.option("--service", default="", help="A service's full name, e.g. nvidia.clara.platform.Jobs [default: all].")
@client_options
@click.pass_context
def health(ctx: click.Context, service: str) -> None:
    """Exit 0 when the platform (or one service) is SERVING: for container health checks and scripts."""
    s = session(ctx)
    status = s.client.health(service)
    s.output.result({"service": service, "status": status}, status)
    if status != "SERVING":
        ctx.exit(1)


@main.command()
@client_options
@click.pass_context
def utilization(ctx: click.Context) -> None:
    """Show the platform's GPUs: utilisation, memory and the operators using them."""
    s = session(ctx)
    gpus: list[Document] = [
        {
            "node_id": g.node_id,
            "pcie_id": g.pcie_id,
            "compute_utilization": g.compute_utilization,
            "memory_utilization": g.memory_utilization,
            "memory_free_mb": g.memory_free,
            "memory_used_mb": g.memory_used,
            "processes": [{"name": p.name, "job_id": p.job_id.value or None} for p in g.process_details],
        }
        for g in s.client.utilization()
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
