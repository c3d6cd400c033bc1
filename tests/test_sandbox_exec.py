"""claret-sandbox-exec, the sandbox's static helper: alone, and in sandboxes next to sh, setpriv and env.

As root (the platform's set-up); scripts/install builds the helper into the venv.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from services.jobs.runtimes import sandbox
from services.jobs.runtimes.base import OperatorSpec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the helper drops root to the operator's user")


@pytest.fixture(scope="module")
def helper() -> Path:
    path = sandbox.installed_sandbox_exec()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"no {sandbox.SANDBOX_EXEC} beside the interpreter: scripts/install builds it")
        pytest.skip(f"no {sandbox.SANDBOX_EXEC} (scripts/install builds it)")
    return path


IDENTITY = "id -u; id -g; id -G; grep -E '^(CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs):' /proc/self/status; env | sort"
"""What a program run after the drop prints of who it is and what it has."""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "LD_PRELOAD": ""})


def dropped_identity(uid: int, gid: int, variables: list[str]) -> list[str]:
    """IDENTITY's lines for an unprivileged ``uid``:``gid`` with exactly ``variables``, sh's own aside."""
    zero = "0000000000000000"
    capabilities = [f"CapInh:\t{zero}", f"CapPrm:\t{zero}", f"CapEff:\t{zero}", f"CapAmb:\t{zero}"]
    return [str(uid), str(gid), str(gid), *capabilities, "NoNewPrivs:\t1", *sorted(variables)]


def without_shell_variables(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith(("PWD=", "SHLVL=", "_="))]


def test_drop_leaves_the_user_no_groups_capabilities_or_variables_but_the_given_ones(helper: Path) -> None:
    variables = ["PATH=/usr/bin:/bin", "HOME=/tmp", "GREETING=a b=c"]
    done = run(str(helper), "drop", "4321", "4322", *variables, "--", "sh", "-c", IDENTITY)
    assert done.returncode == 0, done.stderr
    assert without_shell_variables(done.stdout.splitlines()) == dropped_identity(4321, 4322, variables)


def test_drop_searches_the_command_in_the_given_path_not_its_own(helper: Path) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:  # pytest's tmp_path is root's alone
        Path(folder).chmod(0o755)
        tool = Path(folder) / "greet"
        tool.write_text("#!/bin/sh\necho found\n")
        tool.chmod(0o755)
        done = run(str(helper), "drop", "4321", "4321", f"PATH={folder}:/usr/bin:/bin", "--", "greet")
    assert (done.returncode, done.stdout) == (0, "found\n"), done.stderr


@pytest.mark.parametrize(
    ("ids", "refusal"),
    [(("0", "4321"), "uid 0, gid 4321"), (("4321", "0"), "gid 0"), (("-1", "5"), "uid -1"), (("4321x", "5"), "4321x")],
)
def test_drop_never_runs_anything_as_root_or_with_ids_it_cannot_read(
    helper: Path, tmp_path: Path, ids: tuple[str, str], refusal: str
) -> None:
    marker = tmp_path / "ran"
    done = run(str(helper), "drop", *ids, "--", "touch", str(marker))
    assert done.returncode == 125 and refusal in done.stderr
    assert not marker.exists()


def test_drop_refuses_a_variable_without_a_name(helper: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    done = run(str(helper), "drop", "4321", "4321", "=value", "--", "touch", str(marker))
    assert done.returncode == 125 and "=value: not NAME=VALUE" in done.stderr
    assert not marker.exists()


@pytest.mark.parametrize(("command", "code"), [("no-such-program", 127), ("/etc/passwd", 126)])
def test_a_command_that_cannot_run_exits_as_with_env(helper: Path, command: str, code: int) -> None:
    done = run(str(helper), "drop", "4321", "4321", "PATH=/usr/bin:/bin", "--", command)
    assert done.returncode == code and command in done.stderr


def test_join_writes_its_pid_to_each_file_then_becomes_the_command(helper: Path, tmp_path: Path) -> None:
    files = [tmp_path / "memory.procs", tmp_path / "pids.procs"]
    for file in files:
        file.write_text("")
    done = run(str(helper), "join", *map(str, files), "--", "sh", "-c", "echo $$")
    assert done.returncode == 0, done.stderr
    assert [file.read_text() for file in files] == [done.stdout] * 2


def test_join_runs_nothing_when_a_group_cannot_be_joined(helper: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    done = run(str(helper), "join", str(tmp_path / "gone" / "cgroup.procs"), "--", "touch", str(marker))
    assert done.returncode == 125 and "gone/cgroup.procs" in done.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "args", [(), ("join",), ("drop", "4321", "4321"), ("drop", "4321", "--", "true"), ("x", "--", "true")]
)
def test_anything_else_is_a_usage_error(helper: Path, args: tuple[str, ...]) -> None:
    done = run(str(helper), *args)
    assert done.returncode == 125 and "usage:" in done.stderr


@pytest.mark.parametrize("with_helper", [True, False], ids=["helper", "sh-setpriv-env"])
async def test_an_operator_is_the_same_whether_the_helper_or_sh_setpriv_and_env_start_it(
    helper: Path, tmp_path: Path, with_helper: bool
) -> None:
    """The runtime with the helper and without it: one operator user, no capabilities, only its variables."""
    runtime = sandbox.SandboxRuntime(
        cgroups=sandbox.open_cgroups("claret-test"), helper=helper if with_helper else None
    )
    spec = OperatorSpec(
        job_id="c" * 32,
        operator="op",
        image="busybox",
        command=("sh", "-c", f"{IDENTITY}; if test -e {sandbox.SANDBOX_EXEC_INSIDE}; then echo helper-bound; fi"),
        env={"GREETING": "hello"},
        mounts=(),
        cpu=0,
        memory_mb=0,
        gpu_ids=(),
        log_path=tmp_path / "op.log",
    )
    handle = await runtime.start(spec)
    assert (await handle.wait()).code == 0, spec.log_path.read_text()
    identity = [f"NVIDIA_CLARA_JOB_ID={spec.job_id}", "NVIDIA_CLARA_STAGE_NAME=op"]
    variables = [f"PATH={sandbox.PATH}", "HOME=/tmp", "GREETING=hello", *identity]
    expected = dropped_identity(*sandbox.FALLBACK_USER, variables) + (["helper-bound"] if with_helper else [])
    assert without_shell_variables(spec.log_path.read_text().splitlines()) == expected
