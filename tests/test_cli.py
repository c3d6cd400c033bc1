"""The client CLI against a real `claret serve` (sandboxed operators): every verb, prefixes, globs, errors.

Most tests run the CLI in this process (click's CliRunner) against one server for the module; one test
goes through a real subprocess (`python -m claret`, and the installed `clara` script) against `served`.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner, Result

from claret.cli import PRIORITIES, choices, main, warning
from claret.client import ClientError, normalise_address, platform_address
from claret.definition_files import definition_files
from claret.records import JobState, JobStatus, Priority
from claret.transfers import download_plan, glob_match, select, split_remote, upload_plan
from protos.nvidia.clara.platform import clara_pb2, clara_pb2_grpc, common_pb2, pipelines_pb2, pipelines_pb2_grpc
from tests.helpers import RunningServer, free_port, serve_process, wait_for_port

BOTH_STORES = "module"  # the module's server runs on SQLite, then on PostgreSQL (tests/conftest.py)

DATA = Path(__file__).parent / "data"
UNREACHABLE = "127.0.0.1:1"

SLEEPER = """\
api-version: 0.4.0
name: sleeper
operators:
- name: sleeper
  container: {image: busybox, command: ["sh", "-c", "echo sleeping; sleep 60"]}
  output: [{path: /output}]
"""
GPU_SLEEPER = """\
api-version: 0.4.0
name: gpu-sleeper
operators:
- name: sleeper
  container: {image: busybox, command: ["sh", "-c", "sleep 30"]}
  requests: {gpu: 1}
"""
FAILING = """\
api-version: 0.4.0
name: failing
operators:
- name: failer
  container: {image: busybox, command: ["sh", "-c", "echo boom >&2; exit 3"]}
  output: [{path: /output}]
"""


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory, module_store: dict[str, str]) -> Iterator[str]:
    """One `claret serve` (sandbox runtime, no GPUs) for the whole module: the CLI is what is under test."""
    folder = tmp_path_factory.mktemp("cli-server")
    port = free_port()
    env = {**os.environ, "CLARET_GPUS": "", "CLARET_RUNTIME": "sandbox", "CLARET_STOP_GRACE": "1", **module_store}
    command = [sys.executable, "-m", "claret", "serve", "--port", str(port), "--data-dir", str(folder / "data")]
    process = subprocess.Popen(command, env=env, cwd=folder, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither this machine's ~/.clara/config.yaml nor its environment may pick the platform."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLARET_HOST_ADDRESS", raising=False)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def ok(address: str, *args: str) -> str:
    result = run("--host", address, *args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def document(address: str, *args: str) -> Any:
    return json.loads(ok(address, *args, "--output", "json"))


def fails(address: str, *args: str) -> str:
    """The one `error: ...` line of a command that must fail with exit status 1 and print nothing else."""
    result = run("--host", address, *args)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def pipeline(address: str, path: Path) -> str:
    first = ok(address, "create", "pipeline", "-p", str(path)).splitlines()[0]
    assert first.startswith("PIPELINE_ID:")
    return first.split(":", 1)[1]


def written(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def forced_pipeline(address: str, pipeline_id: str) -> None:
    """A pipeline with a chosen id (Pipelines.Create allows it), to make prefixes collide on purpose."""
    request = pipelines_pb2.PipelinesCreateRequest(
        definition=pipelines_pb2.PipelineDefinitionFile(
            path="p.yaml", content=(DATA / "two_operators.yaml").read_text()
        ),
        pipeline_id=common_pb2.Identifier(value=pipeline_id),
    )
    with grpc.insecure_channel(address) as channel:
        reply = pipelines_pb2_grpc.PipelinesStub(channel).Create(iter([request]))  # type: ignore[no-untyped-call]
    assert reply.header.code == 0, reply.header.messages


# The entry point


def test_entry_point_in_a_real_process(served: RunningServer) -> None:
    """`python -m claret` and the installed `clara` script: ids on stdout, errors on stderr, exit codes."""
    env = {**os.environ, "CLARET_HOST_ADDRESS": served.address}
    module = [sys.executable, "-m", "claret"]
    created = subprocess.run(
        [*module, "create", "pipelines", "-p", str(DATA / "two_operators.yaml")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("PIPELINE_ID:") and created.stderr == ""
    pipeline_id = created.stdout.strip().split(":", 1)[1]

    clara = Path(sys.executable).with_name("clara")
    program = [str(clara)] if clara.exists() else module
    listed = subprocess.run(
        [*program, "list", "pipelines", "--output", "json"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0 and [p["pipeline_id"] for p in json.loads(listed.stdout)] == [pipeline_id]

    missing = subprocess.run([*module, "describe", "job", "-j", "0" * 32], env=env, capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr == f"error: no job with id '{'0' * 32}' (code -8193)\n"


NOT_FOR_LIST_JOBS = ("shared.config", "claret.serve_command", "zipfile", "yaml", "rich")


def test_a_client_verb_does_not_import_what_only_other_verbs_use(served: RunningServer) -> None:
    """Start-up is most of a short verb's time: ``list jobs --output json`` in a fresh process loads neither the
    server's settings (``serve``), nor zipfile (``create model``), nor PyYAML (the config file, not read when
    --host is given), nor rich (its tables are built only for text output)."""
    probe = (
        "import sys, runpy; sys.argv = ['claret', '--host', sys.argv[1], 'list', 'jobs', '--output', 'json'];\n"
        "try: runpy.run_module('claret', run_name='__main__')\n"
        "except SystemExit: pass\n"
        f"print(sorted(m for m in {NOT_FOR_LIST_JOBS!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe, served.address], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# Pipelines


def test_pipeline_verbs(address: str) -> None:
    created = document(address, "create", "pipeline", "-p", str(DATA / "imports.yaml"))
    pipeline_id = created["pipeline_id"]
    assert created["files"] == ["imports.yaml", "producer.yaml", "consumer.yaml"]  # imports went with it

    table = ok(address, "list", "pipelines").splitlines()
    assert table[0].split() == ["NAME", "ID"]
    assert ["sample-pipeline", pipeline_id] in [line.split() for line in table[1:]]
    assert {"pipeline_id": pipeline_id, "name": "sample-pipeline", "metadata": {}} in document(
        address, "list", "pipeline"
    )

    described = document(address, "describe", "pipeline", pipeline_id[:10])
    assert described["name"] == "sample-pipeline"
    assert described["dag"] == [{"name": "producer", "next": [{"name": "consumer", "next": []}]}]
    assert [f["path"] for f in described["definition"]] == created["files"]
    text = ok(address, "describe", "pipeline", "-p", pipeline_id).splitlines()
    assert text[:2] == ["Name: sample-pipeline", f"PipelineId: {pipeline_id}"]
    assert "--- producer.yaml" in text

    assert ok(address, "delete", "pipeline", pipeline_id[:12]) == f"deleted pipeline {pipeline_id}\n"
    assert pipeline_id not in ok(address, "list", "pipelines")
    assert fails(address, "describe", "pipeline", pipeline_id) == (
        f"error: no pipeline with id '{pipeline_id}' (code -4097)"
    )


def test_create_pipeline_reports_the_platforms_refusal(address: str, tmp_path: Path) -> None:
    broken = written(tmp_path, "broken.yaml", "api-version: 0.4.0\nname: broken\noperators: 7\n")
    assert fails(address, "create", "pipeline", "-p", str(broken)) == (
        "error: broken.yaml: operators: expected a list, got a number (code -4353)"
    )
    importing = written(tmp_path, "importing.yaml", "name: x\noperators:\n- name: a\n  import: {path: gone.yaml}\n")
    assert fails(address, "create", "pipeline", "-p", str(importing)) == (
        f"error: importing.yaml imports 'gone.yaml', but there is no file {tmp_path / 'gone.yaml'}"
    )


def test_create_pipeline_warns_on_stderr_about_keys_the_platform_ignores(address: str, tmp_path: Path) -> None:
    (tmp_path / "ops").mkdir()
    written(tmp_path / "ops", "writer.yaml", "name: writer\ncontainer: {image: busybox}\nreqests: {cpu: 1}\n")
    definition = written(
        tmp_path,
        "wild.yaml",
        "api-version: 0.4.0\nname: wild\noperators:\n"
        "- name: reader\n  container: {image: busybox, variables: {A: b}}\n  hostVolumePath: /data\n"
        "  output: [{path: /out}]\n"
        "- import: {path: ops/writer.yaml}\n  input: [{from: reader, path: /in}]\n",
    )
    unknown = "is not part of the pipeline definition language and is ignored"
    warnings = [
        f"warning: wild.yaml:5: key 'container.variables' of operator 'reader' {unknown}",
        f"warning: wild.yaml:6: key 'hostVolumePath' of operator 'reader' {unknown}",
        f"warning: ops/writer.yaml:3: key 'reqests' of operator 'writer' {unknown}",
    ]
    result = run("--host", address, "create", "pipeline", "-p", str(definition))
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == warnings
    (line,) = result.stdout.splitlines()
    assert line.startswith("PIPELINE_ID:") and len(line.split(":", 1)[1]) == 32

    scripted = run("--host", address, "create", "pipeline", "-p", str(definition), "--output", "json")
    assert scripted.exit_code == 0 and scripted.stderr.splitlines() == warnings
    assert json.loads(scripted.stdout)["warnings"] == warnings


def test_choices_are_the_original_clis_made_from_the_protos() -> None:
    assert PRIORITIES == {
        "low": Priority.LOWER,
        "normal": Priority.NORMAL,
        "high": Priority.HIGHER,
        "immediate": Priority.IMMEDIATE,
    }
    assert choices(JobState) == ["pending", "running", "stopped"]
    assert choices(JobStatus) == ["healthy", "faulted", "canceled", "evicted", "terminated"]


def test_warnings_are_one_line_each_and_labelled_whoever_wrote_them() -> None:
    assert warning("warning: a.yaml:1: key 'x' is ignored") == "warning: a.yaml:1: key 'x' is ignored"
    assert warning("ignored\n  key 'x'") == "warning: ignored key 'x'"


def test_definition_files_follow_operator_and_service_imports_recursively(tmp_path: Path) -> None:
    (tmp_path / "ops" / "deep").mkdir(parents=True)
    written(
        tmp_path,
        "pipeline.yaml",
        "name: p\noperators:\n- name: a\n  import: {path: ops/a.yaml}\n- name: b\n  import: {path: ./ops/A.yaml}\n"
        "- name: c\n  import: {path: ../outside.yaml}\n- name: d\n  import: {path: /abs.yaml}\n",
    )
    written(tmp_path / "ops", "a.yaml", "import: {path: deep/b.yaml}\nservices:\n- import: {path: svc.yaml}\n")
    written(tmp_path / "ops" / "deep", "b.yaml", "name: b\ncontainer: {image: x}\n")
    written(tmp_path / "ops", "svc.yaml", "name: svc\nservices:\n- import: {path: deep/b.yaml}\n")
    files = definition_files(tmp_path / "pipeline.yaml")
    # Each file once (paths equal ignoring case are one), relative to the pipeline's folder; paths the
    # platform refuses (absolute, leaving the folder) are left for it to name in its answer.
    assert [path for path, _ in files] == ["pipeline.yaml", "ops/a.yaml", "ops/deep/b.yaml", "ops/svc.yaml"]
    assert files[2][1] == "name: b\ncontainer: {image: x}\n"


# Ids and prefixes


def test_pipeline_prefixes_unique_ambiguous_unknown(address: str) -> None:
    first, second = "c1a7e" + "0" * 27, "c1a7e" + "1" * 27
    forced_pipeline(address, first)
    forced_pipeline(address, second)
    assert document(address, "describe", "pipeline", "c1a7e0")["pipeline_id"] == first
    assert document(address, "describe", "pipeline", "C1A7E1-")["pipeline_id"] == second  # case and dashes
    assert fails(address, "describe", "pipeline", "c1a7e") == (
        f"error: pipeline id 'c1a7e' is ambiguous: it matches {first}, {second}"
    )
    assert fails(address, "describe", "pipeline", "c1a7ef") == "error: no pipeline with id 'c1a7ef' (code -4097)"
    assert fails(address, "describe", "pipeline", "not-an-id!").endswith(
        "is not a valid id (32 hex characters, a UUID, or a unique prefix of one) (code -4096)"
    )


def test_job_prefixes_and_bad_ids(address: str) -> None:
    pipeline_id = pipeline(address, DATA / "two_operators.yaml")
    ids: list[str] = []
    while len({i[0] for i in ids}) == len(ids):  # until two jobs share a first character (17 at most)
        ids.append(ok(address, "create", "job", "-n", f"prefix-{len(ids)}", "-p", pipeline_id).split()[0][7:])
    shared = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)
    error = fails(address, "describe", "job", "-j", shared)
    assert error.startswith(f"error: job id '{shared}' is ambiguous: it matches ")
    assert all(i in error for i in ids if i[0] == shared)

    job_id = ids[0]
    assert document(address, "describe", "job", job_id[:12])["job_id"] == job_id
    assert ok(address, "describe", "job", "-j", job_id[:12]).splitlines()[0] == f"JobId: {job_id}"

    known = {j["job_id"][:3] for j in document(address, "list", "jobs")}
    unknown = next(f"{n:03x}" for n in range(4096) if f"{n:03x}" not in known)
    assert fails(address, "describe", "job", "-j", unknown) == f"error: no job with id '{unknown}' (code -8193)"
    assert fails(address, "start", "job", "-j", "f" * 32) == f"error: no job with id '{'f' * 32}' (code -8193)"
    assert fails(address, "stop", "job", "-j", "xyz").endswith("(code -8192)")
    assert fails(address, "logs", "-j", "12-zz", "-o", "copier").endswith("(code -8192)")
    assert fails(address, "create", "job", "-n", "x", "-p", "nope!").endswith("(code -4096)")
    assert fails(address, "download", f"{'e' * 32}:/input/x", "out").startswith("error: no payload")
    unknown_op = fails(address, "logs", "-j", job_id, "-o", "nobody")
    assert "has no operator named 'nobody'" in unknown_op and unknown_op.endswith("(code -8196)")


# Hosts and configuration


def test_unreachable_host_fails_fast_with_one_line() -> None:
    began = time.monotonic()
    result = run("--host", UNREACHABLE, "--timeout", "3", "list", "jobs")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: cannot reach the platform at {UNREACHABLE} ")
    assert len(result.stderr.splitlines()) == 1
    assert time.monotonic() - began < 5


def test_host_precedence_flag_env_config_default(address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = written(tmp_path, "config.yaml", f"host: {address}\n")
    assert run("--config", str(config), "version").exit_code == 0  # config file
    assert run("version", "--config", str(config), "--output", "json").exit_code == 0  # options after the verb
    (tmp_path / "home" / ".clara").mkdir(parents=True)
    written(tmp_path / "home" / ".clara", "config.yaml", f"host: {address}\n")
    assert run("version").exit_code == 0  # the default config file

    monkeypatch.setenv("CLARET_HOST_ADDRESS", UNREACHABLE)  # environment beats config
    assert "cannot reach the platform at 127.0.0.1:1 " in run("--config", str(config), "version").stderr
    assert run("--host", address, "version").exit_code == 0  # flag beats environment
    assert run("--host", UNREACHABLE, "version", "--host", address).exit_code == 0  # after the verb wins

    monkeypatch.delenv("CLARET_HOST_ADDRESS")
    (tmp_path / "home" / ".clara" / "config.yaml").unlink()
    assert platform_address(None) == "127.0.0.1:30031"  # default
    assert run("--config", str(tmp_path / "none.yaml"), "version").stderr.startswith("error: no config file")
    assert normalise_address("server") == "server:30031"
    assert normalise_address("::1") == "[::1]:30031" and normalise_address("[::1]:5") == "[::1]:5"
    with pytest.raises(ClientError):
        platform_address(None, written(tmp_path, "bad.yaml", "host: [1, 2]\n"))


class FakeGpus(clara_pb2_grpc.ClaraServicer):
    """A Clara service reporting one busy GPU, so `utilization` is seen with data on machines without GPUs."""

    def Utilization(self, request: Any, context: Any) -> Iterator[clara_pb2.ClaraUtilizationResponse]:
        gpu = clara_pb2.ClaraUtilizationResponse.GpuUtilization(
            node_id="node-1",
            pcie_id=3,
            compute_utilization=0.45,
            memory_utilization=0.5,
            memory_free=40000,
            memory_used=40000,
            process_details=[
                clara_pb2.ClaraUtilizationResponse.GpuUtilization.ProcessDetails(
                    name="shouter", job_id=common_pb2.Identifier(value="a" * 32)
                )
            ],
        )
        yield clara_pb2.ClaraUtilizationResponse(gpu_metrics=[gpu])


def test_utilization_with_a_gpu() -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    clara_pb2_grpc.add_ClaraServicer_to_server(FakeGpus(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        address = f"127.0.0.1:{port}"
        rows = ok(address, "utilization").splitlines()
        assert rows[0].split() == ["NODE", "PCIE", "ID", "GPU", "MEMORY", "FREE", "MB", "USED", "MB", "PROCESSES"]
        assert rows[1].split() == ["node-1", "3", "45%", "50%", "40000", "40000", "shouter"]
        gpus = document(address, "utilization")
        assert gpus[0]["processes"] == [{"name": "shouter", "job_id": "a" * 32}]
        assert gpus[0]["compute_utilization"] == pytest.approx(0.45)
    finally:
        server.stop(grace=None)


def test_version_and_utilization(address: str) -> None:
    assert ok(address, "version").splitlines()[:2] == ["Client: 0.1.0", "Platform: 0.7.4-claret"]
    assert document(address, "version") == {"client": "0.1.0", "platform": "0.7.4-claret", "host": address}
    gpus = document(address, "utilization")
    assert isinstance(gpus, list)
    assert run("--host", address, "utilization").exit_code == 0


# Jobs end to end


def test_create_job_with_a_directory_start_wait_and_download(address: str, tmp_path: Path) -> None:
    pipeline_id = pipeline(address, DATA / "two_operators.yaml")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = random.Random(7)
    big = "".join(rng.choice("abcdefghij\n") for _ in range(2_500_000)).encode()  # three 1 MiB chunks each way
    (inputs / "big.txt").write_bytes(big)
    (inputs / "small.txt").write_bytes(b"hello\n")

    out = ok(
        address,
        "create",
        "job",
        "-n",
        "cli-flow",
        "-p",
        pipeline_id[:8],
        "-f",
        str(inputs),
        "-i",
        "high",
        "--start",
        "--wait",
    ).splitlines()
    assert out[0].startswith("JOB_ID:") and out[1].startswith("PAYLOAD_ID:")
    assert out[2:] == ["JOB_STATE:JOB_STATE_STOPPED", "JOB_STATUS:JOB_STATUS_HEALTHY"]
    job_id = out[0].split(":")[1]

    lines = ok(address, "describe", "job", "-j", job_id).splitlines()
    assert lines[4] == "JobStatus: JOB_STATUS_HEALTHY" and lines[5] == "JobState: JOB_STATE_STOPPED"  # lines 5, 6
    assert lines[6] == "JobPriority: JOB_PRIORITY_HIGHER"
    described = document(address, "describe", "jobs", job_id[:10])
    assert [(op["name"], op["status"]) for op in described["operators"]] == [
        ("copier", "JOB_OPERATOR_STATUS_COMPLETED"),
        ("shouter", "JOB_OPERATOR_STATUS_COMPLETED"),
    ]
    assert described["dag"] == [
        {"name": "copier", "input_dependencies": []},
        {"name": "shouter", "input_dependencies": ["copier"]},
    ]

    several = tmp_path / "several"
    got = document(address, "download", f"{job_id[:9]}:/operators/shouter/*", str(several))
    assert sorted(f["name"] for f in got["files"]) == [
        "/operators/shouter/big.txt.upper",
        "/operators/shouter/small.txt.upper",
    ]
    assert (several / "big.txt.upper").read_bytes() == big.upper()
    assert (several / "small.txt.upper").read_bytes() == b"HELLO\n"
    nested = tmp_path / "nested"
    ok(address, "download", f"{job_id}:/operators/*/*.upper", str(nested))
    assert sorted(p.relative_to(nested).as_posix() for p in nested.rglob("*") if p.is_file()) == [
        "shouter/big.txt.upper",
        "shouter/small.txt.upper",
    ]
    single = tmp_path / "copy.txt"
    ok(address, "download", f"{job_id}:/operators/copier/big.txt", str(single))
    assert single.read_bytes() == big
    ok(address, "download", f"{job_id}:/input", str(tmp_path / "inputs-back"))  # a folder
    assert (tmp_path / "inputs-back" / "small.txt").read_bytes() == b"hello\n"
    assert not [p for p in tmp_path.rglob(".*.part")]  # no temporaries left behind
    assert fails(address, "download", f"{job_id}:/operators/*/*.csv", str(tmp_path / "x")) == (
        f"error: no file of payload {described['payload_id']} matches '/operators/*/*.csv'"
    )

    assert ok(address, "logs", "-j", job_id[:7], "-o", "copier").splitlines() == ["copied 2 files", "to-stderr"]
    assert document(address, "logs", "-j", job_id) == [
        {"operator": "copier", "lines": ["copied 2 files", "to-stderr"]},
        {"operator": "shouter", "lines": ["shouted"]},
    ]

    listed = document(
        address, "list", "jobs", "--state", "stopped", "--status", "healthy", "--pipeline", pipeline_id[:6]
    )
    assert [j["job_id"] for j in listed] == [job_id]
    assert (
        document(address, "list", "jobs", "--status", "faulted", "--status", "canceled", "--pipeline", pipeline_id)
        == []
    )
    assert job_id in ok(address, "list", "jobs", "--state", "STOPPED", "--state", "running")
    assert fails(address, "upload", "-p", job_id, str(inputs / "small.txt")).endswith("(code -12291)")  # read-only


def test_start_stop_and_faulted_jobs(address: str, tmp_path: Path) -> None:
    created = document(address, "create", "job", "-n", "later", "-p", pipeline(address, DATA / "two_operators.yaml"))
    assert set(created) == {"job_id", "payload_id", "files"}
    started = ok(address, "start", "job", created["job_id"][:10], "--wait").splitlines()
    assert started == ["JOB_STATE:JOB_STATE_STOPPED", "JOB_STATUS:JOB_STATUS_HEALTHY"]
    assert fails(address, "start", "job", "-j", created["job_id"]).endswith("(code -8194)")  # started already

    sleeper = pipeline(address, written(tmp_path, "sleeper.yaml", SLEEPER))
    running = document(address, "create", "job", "-n", "sleepy", "-p", sleeper, "--start")
    assert running["state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")
    stopped = ok(address, "stop", "job", "-j", running["job_id"], "--reason", "test").splitlines()
    assert stopped[0] == f"JOB_ID:{running['job_id']}"
    deadline = time.monotonic() + 10
    while (job := document(address, "describe", "job", running["job_id"]))["state"] != "JOB_STATE_STOPPED":
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] == "JOB_STATUS_CANCELED"
    assert "canceled: test" in job["messages"]

    failing = pipeline(address, written(tmp_path, "failing.yaml", FAILING))
    result = run("--host", address, "create", "job", "-n", "doomed", "-p", failing, "--wait")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[2:] == ["JOB_STATE:JOB_STATE_STOPPED", "JOB_STATUS:JOB_STATUS_FAULTED"]
    assert result.stderr.startswith("error: job ") and "ended JOB_STATUS_FAULTED" in result.stderr


def queue_until(address: str, ready: Callable[[Any], bool]) -> None:
    """Wait until ``ready`` holds of `claret queue`'s document (10 s at most)."""
    deadline = time.monotonic() + 10
    while not ready(document(address, "queue")) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_queue_shows_who_holds_the_gpu_and_why_an_operator_waits(tmp_path: Path) -> None:
    """Against a server declaring one GPU without a driver (scheduling only): a job holds it, two wait."""
    gpus = {"CLARET_GPUS": "0", "CLARET_RUNTIME": "sandbox", "CLARET_STOP_GRACE": "1"}
    with serve_process(tmp_path / "data", **gpus) as (address, _):
        sleeper = pipeline(address, written(tmp_path, "gpu.yaml", GPU_SLEEPER))

        def started(name: str) -> str:
            return str(document(address, "create", "job", "-n", name, "-p", sleeper, "--start")["job_id"])

        holder = started("holder")
        queue_until(address, lambda queued: bool(queued["held"]))
        waiter, later = started("waiter"), started("later")
        queue_until(address, lambda queued: queued["waiting_total"] == 2)

        text = ok(address, "queue", "--limit", "1").splitlines()
        assert text[0] == "Nodes:" and " ".join(text[1].split()) == "NODE FREE CPUS FREE MEMORY MB FREE GPUS GPUS"
        assert text[2].split()[0] == "local" and text[2].split()[-2:] == ["-", "0"]  # its one GPU, none free
        [held] = [line.split() for line in text if line.startswith(holder)]
        assert held[:3] == [holder, "sleeper", "local"] and held[5] == "0"  # GPU 0, held since...
        assert "Waiting, in start order (1 of 2):" in text
        [waiting] = [line for line in text if line.startswith(waiter)]
        assert waiting.split()[1:3] == ["sleeper", "normal"]
        assert waiting.endswith(" waits for room: needs 1 GPU (0 free)")
        assert not [line for line in text if line.startswith(later)]  # beyond --limit
        assert text[-5:] == ["Waiting for upstream operators:", "none", "", "Services:", "none"]

        queued = document(address, "queue")
        assert [(g["job_id"], g["gpu_ids"]) for g in queued["held"]] == [(holder, ["0"])]
        assert queued["held"][0]["since"].endswith("Z")
        assert [w["job_id"] for w in queued["waiting"]] == [waiter, later] and queued["waiting_total"] == 2
        assert queued["waiting"][0]["reason"] == "waits for room: needs 1 GPU (0 free)"
        assert queued["nodes"][0]["free"]["gpu_ids"] == []


# Payloads


def test_payload_create_upload_describe_download(address: str, tmp_path: Path) -> None:
    payload_id = ok(address, "create", "payload", "--metadata", "study=42", "--metadata", "site=a").strip()
    assert payload_id.startswith("PAYLOAD_ID:")
    payload_id = payload_id.split(":")[1]
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "x.txt").write_text("x")
    (tree / "sub" / "y.bin").write_bytes(bytes(range(256)) * 5000)
    single = written(tmp_path, "single.txt", "one")

    uploaded = document(address, "upload", "-p", payload_id, str(tree), str(single))
    assert [(f["name"], f["size"]) for f in uploaded["files"]] == [
        ("sub/y.bin", 1_280_000),
        ("x.txt", 1),
        ("single.txt", 3),
    ]
    described = document(address, "describe", "payload", payload_id)
    assert described["type"] == "PAYLOAD_TYPE_REUSABLE" and described["metadata"] == {"study": "42", "site": "a"}
    assert [f["name"] for f in described["files"]] == ["/single.txt", "/sub/y.bin", "/x.txt"]
    assert "/sub/y.bin" in ok(address, "describe", "payload", "-p", payload_id)

    ok(address, "download", f"{payload_id}:/sub/y.bin", str(tmp_path / "into") + "/")
    assert (tmp_path / "into" / "y.bin").read_bytes() == (tree / "sub" / "y.bin").read_bytes()
    ok(address, "download", f"{payload_id}:/**/*.bin", str(tmp_path / "globbed"))
    assert (tmp_path / "globbed" / "sub" / "y.bin").exists()

    assert fails(address, "upload", "-p", payload_id, str(tree), str(tree)).endswith(
        "would both be uploaded as 'sub/y.bin'"
    )
    assert fails(address, "create", "payload", "--metadata", "a=1", "--metadata", "A=2").endswith("(code -20480)")
    assert run("--host", address, "create", "payload", "--metadata", "novalue").exit_code == 2  # usage error


def test_a_job_id_means_its_payload_for_upload(address: str, tmp_path: Path) -> None:
    pipeline_id = pipeline(address, DATA / "two_operators.yaml")
    job = document(address, "create", "job", "-n", "uploads", "-p", pipeline_id)
    document(address, "upload", "-p", job["job_id"][:11], str(written(tmp_path, "late.txt", "late\n")))
    files = document(address, "describe", "payload", job["job_id"])["files"]
    assert [f["name"] for f in files] == ["/input/late.txt"]
    assert ok(address, "start", "job", "-j", job["job_id"], "--wait").splitlines()[1] == "JOB_STATUS:JOB_STATUS_HEALTHY"
    ok(address, "download", f"{job['job_id']}:/operators/shouter/late.txt.upper", str(tmp_path / "late.upper"))
    assert (tmp_path / "late.upper").read_text() == "LATE\n"


# Transfer rules


def test_glob_and_download_rules() -> None:
    names = ["/input/a.txt", "/operators/x/a.upper", "/operators/y/b.upper", "/operators/y/deep/c.upper"]
    assert glob_match("/operators/*/*.upper", "/operators/x/a.upper")
    assert not glob_match("/operators/*/*.upper", "/operators/y/deep/c.upper")  # * stays in one folder
    assert glob_match("/operators/**/*.upper", "/operators/y/deep/c.upper")
    assert select("/operators/*/*.upper", names) == (["/operators/x/a.upper", "/operators/y/b.upper"], "/operators")
    assert select("/operators/y", names) == (["/operators/y/b.upper", "/operators/y/deep/c.upper"], "/operators/y")
    assert select("/INPUT/a.txt", names) == (["/INPUT/a.txt"], "/INPUT")  # the platform resolves the case
    assert split_remote("ab12:operators//x/./a") == ("ab12", "/operators/x/a")
    with pytest.raises(ClientError):
        split_remote("no-colon")
    dest = Path("out")
    assert download_plan(["/a/b"], "/a", dest, False) == [("/a/b", dest)]
    assert download_plan(["/a/b"], "/a", dest, True) == [("/a/b", dest / "b")]
    with pytest.raises(ClientError):
        download_plan(["/a/../../etc/passwd", "/a/c"], "/a", dest, True)


def test_upload_plan_names_directory_files_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    written(tmp_path / "d", "1.txt", "1")
    written(tmp_path / "d" / "e", "2.txt", "22")
    plan = upload_plan([tmp_path / "d"])
    assert [(t.name, t.size) for t in plan] == [("1.txt", 1), ("e/2.txt", 2)]
    with pytest.raises(ClientError):
        upload_plan([tmp_path / "missing"])


def test_health_exits_zero_only_when_serving(address: str) -> None:
    result = CliRunner().invoke(main, ["health", "--host", address])
    assert result.exit_code == 0 and result.output.strip() == "SERVING"
    unknown = CliRunner().invoke(main, ["health", "--host", address, "--service", "no.such.Service"])
    assert unknown.exit_code == 1 and "NOT_FOUND" in unknown.output
