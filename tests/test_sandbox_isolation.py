"""A hostile operator against the sandbox runtime, through the real services, as the platform runs as root.

Each test is one attack of an adversarial pass (the numbers are the findings it answers): it runs a real job
whose operator tries the attack in real bubblewrap, and checks the attack failed, from the host's side where
the host can tell. Tests of what both runtimes share (setuid files, quotas, request 0) are in
tests/test_operator_limits.py.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import random
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protos.nvidia.clara.platform import jobs_pb2 as pb
from services.jobs.runtimes import seccomp
from services.jobs.runtimes.cgroups import Cgroups
from shared.config import Settings
from tests.helpers import ROOT, required
from tests.jobs_flow import Platform, one_operator, run_job, serving

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the platform's set-up runs it as root; so do these attacks")

SECRET = "claret-test-secret-6f1d"


@pytest.fixture
async def clara(tmp_path: Path) -> AsyncIterator[Platform]:
    async with serving(tmp_path, runtime="sandbox") as platform:
        yield platform


async def run(clara: Platform, command: str, requests: str = "", within: float = 30) -> pb.JobsStatusResponse:
    final, payload_id = await run_job(clara, one_operator(command, requests=requests), within)
    final.payload_id.value = payload_id
    return final


async def output(clara: Platform, final: pb.JobsStatusResponse, name: str) -> str:
    return (await clara.download(final.payload_id.value, f"/operators/op/{name}")).decode()


def sleepers(seconds: str) -> list[int]:
    """Host processes running ``sleep <seconds>`` (each test sleeps for a number of its own)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", seconds.encode()]:
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


async def test_1_operators_are_not_host_root_and_cannot_write_sysctls(clara: Platform) -> None:
    # Each write puts back the value it read, so this test changes nothing on the host even where it fails.
    command = (
        "id -u > /output/uid; id -g > /output/gid; grep CapEff /proc/self/status > /output/caps;"
        " for f in kernel/core_pattern vm/drop_caches kernel/panic; do v=$(cat /proc/sys/$f);"
        ' (printf %s "$v" > /proc/sys/$f) 2>/dev/null && echo $f >> /output/written; done;'
        " unshare -U -r true 2>/dev/null && echo userns >> /output/written; touch /output/written;"
        " grep ' /proc/sys ' /proc/self/mountinfo | cut -d' ' -f6 > /output/procsys"
    )
    final = await run(clara, command)
    assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
    assert (await output(clara, final, "uid")).strip() == "65532"
    assert (await output(clara, final, "gid")).strip() == "65532"
    assert (await output(clara, final, "caps")).split()[1] == "0000000000000000"
    assert await output(clara, final, "written") == ""
    assert (await output(clara, final, "procsys")).split(",")[0] == "ro"


async def test_1_the_operator_user_is_configurable(tmp_path: Path) -> None:
    async with serving(tmp_path, runtime="sandbox", operator_uid=4321, operator_gid=4322) as clara:
        final = await run(clara, "echo $(id -u):$(id -g) > /output/ids; echo x > /output/file")
        assert (await output(clara, final, "ids")).strip() == "4321:4322"
    files = list((tmp_path / "data" / "payloads").glob("*/operators/op/file"))
    assert [(f.stat().st_uid, f.stat().st_gid) for f in files] == [(4321, 4322)]


def test_1_root_is_refused_as_the_operator_user() -> None:
    with pytest.raises(ValueError, match="operator_uid must be positive"):
        Settings(operator_uid=0).validate()


async def test_2_no_secret_reaches_the_sandbox(clara: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARET_TEST_SECRET", SECRET)  # in the service's environment from now on
    leaked = os.open("/etc/hostname", os.O_RDONLY)  # a descriptor of the service's without close-on-exec
    os.set_inheritable(leaked, True)
    try:
        final = await run(
            clara,
            "env > /output/env; cat /proc/1/environ > /output/init-env 2>/dev/null;"
            " ls /proc/self/fd > /output/fds; ls /etc > /output/etc; cat /etc/shadow > /output/shadow 2>/dev/null;"
            " cat /proc/keys > /output/keys 2>/dev/null; true",
        )
    finally:
        os.close(leaked)
    assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
    for name in ("env", "init-env"):
        assert "CLARET_" not in await output(clara, final, name)
    assert (await output(clara, final, "fds")).split() == ["0", "1", "2", "3"]  # 3: ls reading the folder
    assert "shadow" not in (await output(clara, final, "etc")).split()
    assert await output(clara, final, "shadow") == ""


async def test_2_the_services_session_keyring_is_out_of_reach(tmp_path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    add_key = seccomp.syscall_number("add_key")
    key = libc.syscall(add_key, b"user", SECRET.encode(), b"hunter2", 7, ctypes.c_int(-3))  # -3: session keyring
    if key < 0:
        required(f"cannot add a key to this session's keyring: {os.strerror(ctypes.get_errno())}")
    async with serving(tmp_path, runtime="sandbox") as clara:
        final = await run(
            clara,
            "cat /proc/keys > /output/keys 2>&1;"
            " python3 -c 'import ctypes; libc = ctypes.CDLL(None, use_errno=True);"
            f" print(libc.syscall({seccomp.syscall_number('keyctl')}, 0, -3, 0), ctypes.get_errno())' > /output/keyctl",
        )
        assert SECRET not in await output(clara, final, "keys")
        assert (await output(clara, final, "keyctl")).split() == ["-1", "1"]  # EPERM


def unique_seconds() -> str:
    """A sleep no other process has (so sleepers() finds this test's only)."""
    return f"{300 + random.random() * 100:.6f}"


async def test_4_nothing_outlives_a_job_that_ended(clara: Platform) -> None:
    marker = unique_seconds()
    final = await run(clara, f"(setsid sh -c 'sleep {marker}; echo late > /output/late' &); echo left it")
    assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
    assert sleepers(marker) == []


async def test_4_nothing_outlives_a_cancelled_job(clara: Platform) -> None:
    marker = unique_seconds()
    job = await clara.job(await clara.pipeline(one_operator(f"(setsid sleep {marker} &); sleep {marker}")))
    await clara.start(job.job_id.value)
    await clara.wait_operator(job.job_id.value, "op", pb.JOB_OPERATOR_STATUS_RUNNING)
    for _ in range(100):
        if len(sleepers(marker)) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(sleepers(marker)) == 2
    await clara.jobs.Cancel(pb.JobsCancelRequest(job_id=job.job_id))
    final = await clara.wait_stopped(job.job_id.value)
    assert final.status == pb.JOB_STATUS_CANCELED
    assert sleepers(marker) == []


async def test_5_sigpipe_has_its_default_disposition(clara: Platform) -> None:
    final = await run(clara, "yes | head -n1 > /output/first", within=15)
    assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
    assert await output(clara, final, "first") == "y\n"


async def test_6_memory_over_the_request_kills_the_operator_with_a_clear_message(clara: Platform) -> None:
    final = await run(clara, "python3 -c 'x = b\"x\" * (200 << 20)'", requests="{memory: 64}")
    assert final.status == pb.JOB_STATUS_FAULTED
    assert any("out of memory" in m and "64 MB" in m for m in final.messages), final.messages


async def test_9_memory_0_still_has_a_limit(clara: Platform) -> None:
    final = await run(clara, "python3 -c 'x = b\"x\" * (700 << 20)'", requests="{memory: 0, cpu: 0}")
    assert final.status == pb.JOB_STATUS_FAULTED
    assert any("out of memory" in m and "512 MB" in m for m in final.messages), final.messages


async def test_6_requests_become_the_limits_of_the_operators_control_group(clara: Platform) -> None:
    job = await clara.job(await clara.pipeline(one_operator("sleep 30", requests="{cpu: 2, memory: 128}")))
    await clara.start(job.job_id.value)
    await clara.wait_operator(job.job_id.value, "op", pb.JOB_OPERATOR_STATUS_RUNNING)
    group = Cgroups.detect("claret").group(job.job_id.value, "op")
    limits = {
        "memory": "memory.limit_in_bytes",
        "cpu": "cpu.cfs_quota_us",
        "pids": "pids.max",
    }
    if group.unified:
        limits = {"memory": "memory.max", "cpu": "cpu.max", "pids": "pids.max"}
    seen = {c: (group.folders[c] / name).read_text().split()[0] for c, name in limits.items()}
    assert seen == {"memory": str(128 << 20), "cpu": "200000", "pids": "4096"}
    for _ in range(200):  # RUNNING is recorded just before the sandbox starts
        if len(group.members()) == 4:
            break
        await asyncio.sleep(0.01)
    assert len(group.members()) == 4  # bwrap, its namespace's init, the operator's shell and sleep
    await clara.jobs.Cancel(pb.JobsCancelRequest(job_id=job.job_id))
    await clara.wait_stopped(job.job_id.value)  # the job ends first, then its operators are stopped
    for _ in range(300):
        if not any(folder.exists() for folder in group.folders.values()):
            break
        await asyncio.sleep(0.01)
    assert not any(folder.exists() for folder in group.folders.values())  # removed with the operator


async def test_8_processes_are_limited(tmp_path: Path) -> None:
    marker = unique_seconds()
    async with serving(tmp_path, runtime="sandbox", pids_limit=40) as clara:
        final = await run(clara, f"for i in $(seq 100); do sleep {marker} & done; wait")
    assert final.status == pb.JOB_STATUS_FAULTED
    assert any("limit of 40 processes" in m for m in final.messages), final.messages
    assert sleepers(marker) == []


UNPRIVILEGED_SERVICE = """
import asyncio, sys
from pathlib import Path
from services.jobs.runtimes.base import Mount, OperatorSpec
from services.jobs.runtimes.sandbox import SandboxRuntime, open_cgroups

async def main() -> None:
    work = Path(sys.argv[1])
    spec = OperatorSpec(
        job_id="e" * 32, operator="op", image="-", env={}, cpu=1, memory_mb=64, gpu_ids=(), user=(65532, 65532),
        command=("sh", "-c", "id -u > /output/uid; unshare -U true 2>/dev/null && echo nested > /output/uid; exit 0"),
        mounts=(Mount(work / "out", "/output", False),), log_path=work / "op.log",
    )
    runtime = SandboxRuntime(cgroups=open_cgroups("claret-test-unprivileged"))
    print((await (await runtime.start(spec)).wait()).code)

asyncio.run(main())
"""


def test_a_service_that_is_not_root_runs_operators_as_itself_without_user_namespaces() -> None:
    """The sandbox of a service run by an ordinary user: bwrap in a user namespace of that user (its uid
    stays the operator's), further user namespaces refused, and a warning that no limits apply."""
    system_python = Path("/usr/bin/python3")
    if not system_python.exists():
        required("no /usr/bin/python3 to run a service as an unprivileged user")
    uid = 4242
    with tempfile.TemporaryDirectory() as folder:  # under /tmp: pytest's own folders are root's alone
        work = Path(folder)
        (work / "out").mkdir()
        for path in (work, work / "out"):
            os.chown(path, uid, uid)
        result = run_unprivileged(uid, system_python, work)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[-1] == "0", result.stdout
        assert (work / "out" / "uid").read_text().strip() == str(uid)
    assert "WITHOUT memory, cpu and process limits" in result.stdout + result.stderr


def run_unprivileged(uid: int, python: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """UNPRIVILEGED_SERVICE as ``uid``, with this project and its virtual environment's packages. The
    checkout may sit below a folder only root may enter (CI clones into a fresh temporary folder), so the
    user sees it bound at ``work/claret``, in a mount namespace of this command's own."""
    view = work / "claret"
    view.mkdir()
    site = view / next((ROOT / ".venv" / "lib").glob("python3*/site-packages")).relative_to(ROOT)
    bind_then_run = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
    in_own_mounts = ["unshare", "--mount", "--propagation", "private", "sh", "-c", bind_then_run, "sh"]
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return subprocess.run(
        [*in_own_mounts, str(ROOT), str(view), *as_user, str(python), "-c", UNPRIVILEGED_SERVICE, str(work)],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(work), "PYTHONPATH": f"{view}:{site}"},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_11_space_allocated_on_the_log_past_its_cap_is_freed(tmp_path: Path) -> None:
    """fallocate with KEEP_SIZE on stdout takes disk without growing the log's size."""
    keep_size = "import ctypes; ctypes.CDLL(None).fallocate(1, 1, ctypes.c_int64(0), ctypes.c_int64(64 << 20))"
    async with serving(tmp_path, runtime="sandbox", max_log_mb=1) as clara:
        final = await run(clara, f"python3 -c '{keep_size}'; sleep 1.2")
        assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
    (log,) = (tmp_path / "data" / "logs").glob("*/op.log")
    assert log.stat().st_blocks * 512 <= 2 << 20


async def test_1_pipeline_variables_never_reach_a_root_process(clara: Platform, tmp_path: Path) -> None:
    """An upstream operator leaves a fake setpriv; the downstream one puts its folder first in PATH."""
    fake = '#!/bin/sh\ntouch /out/ran-as-$(id -u)\nexec /usr/bin/setpriv "$@"\n'
    plant = f"printf %s {json.dumps(fake)} > /output/setpriv; chmod 755 /output/setpriv"
    text = f"""api-version: 0.4.0
name: injection
operators:
- name: planter
  container: {{image: busybox, command: ["/bin/sh", "-c", {json.dumps(plant)}]}}
  output: [{{path: /output}}]
- name: victim
  container: {{image: busybox, command: ["/bin/sh", "-c", "/usr/bin/id -u > /out/uid"]}}
  variables: {{PATH: /in, LD_PRELOAD: /in/setpriv}}
  input: [{{from: planter, path: /in}}]
  output: [{{path: /out}}]
"""
    final, payload_id = await run_job(clara, text)
    assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
    assert (await clara.download(payload_id, "/operators/victim/uid")).decode().strip() == "65532"
    victim = tmp_path / "data" / "payloads" / payload_id / "operators" / "victim"
    assert sorted(path.name for path in victim.iterdir()) == ["uid"]  # the fake never ran
    details = await clara.download(payload_id, "/operators/planter/setpriv")
    assert details.startswith(b"#!/bin/sh")  # the fake was there to be found


@pytest.mark.parametrize(
    ("paths", "refusal"),
    [
        (("/usr/local/sbin",), "cover /usr"),
        (("/",), "cover /usr"),
        (("/lib/x86_64-linux-gnu",), "cover /lib"),
        (("/in", "/in/d/pwned"), "inside another mount (/in)"),
        (("//usr/bin",), "cover /usr"),  # normpath keeps two leading slashes; the kernel does not
        (("//etc",), "cover /etc"),
        (("/in", "//in/d"), "inside another mount (/in)"),
        (("/.claret-sandbox-exec",), "cover /.claret-sandbox-exec"),  # the helper that drops root
    ],
)
async def test_1_mounts_over_system_folders_or_inside_other_mounts_are_refused(
    clara: Platform, paths: tuple[str, ...], refusal: str
) -> None:
    outputs = ", ".join(f"{{name: o{i}, path: {p}}}" for i, p in enumerate(paths))
    text = one_operator("true").replace('  output: [{path: "/output"}]', f"  output: [{outputs}]")
    final, _ = await run_job(clara, text)
    assert final.status == pb.JOB_STATUS_FAULTED
    assert any(refusal in m for m in final.messages), final.messages
