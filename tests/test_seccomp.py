"""The operators' seccomp filter: its tables against the kernel headers, its program run by a small cBPF
interpreter (the aarch64 one cannot run here), and the x86_64 program loaded by the real bwrap.

The bwrap tests run every probe twice, with and without the filter, in a sandbox that keeps root's
capabilities: a denied probe must get the filter's answer with it and a different one without it, so
that it is the filter, not the sandbox's lack of privilege, that refuses the call.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.jobs.runtimes import seccomp
from services.jobs.runtimes.seccomp import UnsupportedArchitecture, program

ALLOW = 0x7FFF0000
KILL_PROCESS = 0x80000000
EPERM = 0x00050000 | 1
ENOSYS = 0x00050000 | 38
AUDIT_ARCH_AARCH64 = 0xC00000B7
AUDIT_ARCH_ARM = 0x40000028  # AArch32 compat tasks on an arm64 kernel
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
SIGCHLD = 17
THREAD_FLAGS = 0x3D0F00  # what glibc's pthread_create passes: CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|...


# --- the program itself ------------------------------------------------------------------------------------


def instructions(prog: bytes) -> list[tuple[int, int, int, int]]:
    assert len(prog) % 8 == 0
    return list(struct.iter_unpack("<HBBI", prog))


def run_filter(prog: bytes, arch: int, nr: int, *args: int) -> int:
    """What the kernel would do with ``prog`` for this call: a cBPF interpreter for the opcodes it uses."""
    data = struct.pack("<IIQ6Q", nr & 0xFFFFFFFF, arch, 0, *(list(args) + [0] * (6 - len(args))))
    code = instructions(prog)
    pc, a = 0, 0
    while True:
        op, jt, jf, k = code[pc]
        pc += 1
        if op == 0x20:  # LD W ABS
            (a,) = struct.unpack_from("<I", data, k)
        elif op == 0x15:  # JEQ K
            pc += jt if a == k else jf
        elif op == 0x45:  # JSET K
            pc += jt if a & k else jf
        elif op == 0x06:  # RET K
            return k
        else:
            raise AssertionError(f"unexpected opcode {op:#x} at {pc - 1}")


def test_unsupported_architecture_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedArchitecture, match="riscv64") as caught:
        program("riscv64")
    assert isinstance(caught.value, ValueError)


def test_programs_are_cached_per_architecture() -> None:
    assert program("aarch64") is program("aarch64")
    assert program("amd64") is program("x86_64")
    assert program("x86_64") != program("aarch64")


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_program_shape(arch: str) -> None:
    """Architecture check first, ALLOW last, every jump forward and inside the program, within the
    kernel's 4096-instruction limit; one two-instruction block per denied call the architecture has."""
    code = instructions(program(arch))
    audit_arch, table = seccomp.ARCHITECTURES[arch]
    assert code[:3] == [(0x20, 0, 0, 4), (0x15, 1, 0, audit_arch), (0x06, 0, 0, KILL_PROCESS)]
    assert code[-1] == (0x06, 0, 0, ALLOW)
    for pc, (op, jt, jf, _) in enumerate(code):
        if op in (0x15, 0x45):
            assert pc + 1 + max(jt, jf) < len(code), f"jump out of the program at {pc}"
        else:
            assert (jt, jf) == (0, 0)
    denied = sum(name in table for name in seccomp.DENIED)
    fixed = 4 + 5 + 2 + 9 + 1  # arch check, clone, clone3, personality, final ALLOW
    x32 = 3 if arch == "x86_64" else 0
    assert len(code) == fixed + x32 + 2 * denied <= 4096
    assert denied == (54 if arch == "x86_64" else 45)


# Numbers from the kernel headers, written here independently of the module's tables.
AARCH64_CALLS = {"keyctl": 219, "add_key": 217, "request_key": 218, "mount": 40, "umount2": 39, "unshare": 97}
AARCH64_CALLS |= {"setns": 268, "ptrace": 117, "bpf": 280, "perf_event_open": 241, "io_uring_setup": 425}


@pytest.mark.parametrize("name", sorted(AARCH64_CALLS))
def test_aarch64_program_denies(name: str) -> None:
    assert run_filter(program("aarch64"), AUDIT_ARCH_AARCH64, AARCH64_CALLS[name]) == EPERM


def test_aarch64_program_decisions() -> None:
    prog = program("aarch64")
    clone, clone3, personality, getpid, openat = 220, 435, 92, 172, 56
    assert run_filter(prog, AUDIT_ARCH_AARCH64, getpid) == ALLOW
    assert run_filter(prog, AUDIT_ARCH_AARCH64, openat) == ALLOW  # 56 is x86_64's clone: no confusion
    assert run_filter(prog, AUDIT_ARCH_AARCH64, clone, SIGCHLD) == ALLOW  # fork
    assert run_filter(prog, AUDIT_ARCH_AARCH64, clone, THREAD_FLAGS) == ALLOW
    assert run_filter(prog, AUDIT_ARCH_AARCH64, clone, CLONE_NEWUSER | SIGCHLD) == EPERM
    assert run_filter(prog, AUDIT_ARCH_AARCH64, clone, CLONE_NEWNS | SIGCHLD) == EPERM
    assert run_filter(prog, AUDIT_ARCH_AARCH64, clone3) == ENOSYS
    assert run_filter(prog, AUDIT_ARCH_AARCH64, personality, 0xFFFFFFFF) == ALLOW
    assert run_filter(prog, AUDIT_ARCH_AARCH64, personality, 0) == ALLOW
    assert run_filter(prog, AUDIT_ARCH_AARCH64, personality, 0x0040000) == EPERM  # ADDR_NO_RANDOMIZE
    assert run_filter(prog, AUDIT_ARCH_ARM, getpid) == KILL_PROCESS
    assert run_filter(prog, AUDIT_ARCH_X86_64, getpid) == KILL_PROCESS


def test_x86_64_program_decisions() -> None:
    prog = program("x86_64")
    assert run_filter(prog, AUDIT_ARCH_X86_64, 39) == ALLOW  # getpid
    assert run_filter(prog, AUDIT_ARCH_X86_64, 250) == EPERM  # keyctl
    assert run_filter(prog, AUDIT_ARCH_X86_64, 56, THREAD_FLAGS) == ALLOW  # clone, a thread
    assert run_filter(prog, AUDIT_ARCH_X86_64, 56, CLONE_NEWUSER | THREAD_FLAGS) == EPERM
    assert run_filter(prog, AUDIT_ARCH_X86_64, 0x40000000 | 250) == KILL_PROCESS  # x32 keyctl
    assert run_filter(prog, AUDIT_ARCH_X86_64, -1) == ALLOW  # syscall(-1): the kernel says ENOSYS
    assert run_filter(prog, AUDIT_ARCH_I386, 20) == KILL_PROCESS  # int 0x80 getpid


HEADERS = {
    "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": Path("/usr/include/asm-generic/unistd.h"),  # arm64 uses the generic table
}


@pytest.mark.parametrize("arch", sorted(HEADERS))
def test_tables_match_the_kernel_headers(arch: str) -> None:
    """Every call the filter names has the header's number, or is absent where the header has none."""
    if not HEADERS[arch].exists():
        pytest.skip(f"{HEADERS[arch]} is not installed (Debian: linux-libc-dev)")
    header = {m[1]: int(m[2]) for m in re.finditer(r"^#define __NR_(\w+)\s+(\d+)", HEADERS[arch].read_text(), re.M)}
    _, table = seccomp.ARCHITECTURES[arch]
    for name in (*seccomp.DENIED, "clone", "clone3", "personality"):
        assert table.get(name) == header.get(name), name
    assert set(table) <= {*seccomp.DENIED, "clone", "clone3", "personality"}


# --- the x86_64 program in the real bwrap --------------------------------------------------------------------

PROBES = r"""
import ctypes, errno, json, mmap, os, signal, subprocess, sys, threading

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def call(nr, *args):
    # ints go as longs (a bare int would be passed as a 32-bit C int), bytes and None as pointers
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *args)
    return "ok" if ret != -1 else errno.errorcode[ctypes.get_errno()]

def clone(flags):
    # raw clone, no new stack: the child is a fork without glibc's bookkeeping, so it leaves at once
    ret = libc.syscall(ctypes.c_long(56), ctypes.c_long(flags), *[ctypes.c_long(0)] * 4)
    if ret == 0:
        os._exit(0)
    if ret > 0:
        os.waitpid(ret, 0)
        return "ok"
    return errno.errorcode[ctypes.get_errno()]

def fork():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    return "ok" if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7 else "bad exit"

def spawn():  # subprocess uses vfork (clone with CLONE_VM|CLONE_VFORK) or posix_spawn
    return "ok" if subprocess.run(["/bin/sh", "-c", "exit 3"]).returncode == 3 else "bad exit"

def thread():
    seen = []
    worker = threading.Thread(target=seen.append, args=("ok",))
    worker.start()
    worker.join()
    return seen[0] if seen else "no thread"

def int80_getpid():  # the i386 ABI from a 64-bit process: mov eax, 20 (i386 getpid); int 0x80; ret
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3]))
    code = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    return "ok" if code() == os.getpid() else "wrong pid"

PROBES = {
    "getpid": lambda: call(39),
    "no_syscall": lambda: call(-1),
    "fork": fork,
    "spawn": spawn,
    "thread": thread,
    "clone_plain": lambda: clone(17),  # SIGCHLD
    "clone_newuser": lambda: clone(0x10000000 | 17),
    "clone_newns": lambda: clone(0x00020000 | 17),
    "clone_newnet": lambda: clone(0x40000000 | 17),
    "clone3": lambda: call(435, None, 0),
    "unshare_newuser": lambda: call(272, 0x10000000),
    "unshare_newtime": lambda: call(272, 0x80),
    "setns": lambda: call(308, -1, 0),
    "keyctl": lambda: call(250, 0, -3, 0),  # KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, no create
    "add_key": lambda: call(248, b"user", b"claret-seccomp-test", b"x", 1, -2),  # KEY_SPEC_PROCESS_KEYRING
    "request_key": lambda: call(249, b"user", b"claret-seccomp-absent", None, 0),
    "mount": lambda: call(165, None, None, None, 0, None),
    "umount2": lambda: call(166, b"/claret-seccomp-absent", 0),
    "ptrace_traceme": lambda: call(101, 0, 0, 0, 0),  # PTRACE_TRACEME: the parent here keeps its capabilities
    "process_vm_readv": lambda: call(310, os.getpid(), None, 0, None, 0, 0),
    "perf_event_open": lambda: call(298, None, 0, -1, -1, 0),
    "bpf": lambda: call(321, 0, None, 0),
    "io_uring_setup": lambda: call(425, 1, None),
    "userfaultfd": lambda: call(323, 0),
    "syslog": lambda: call(103, 10, None, 0),  # SYSLOG_ACTION_SIZE_BUFFER
    "personality_query": lambda: call(135, 0xFFFFFFFF),
    "personality_linux": lambda: call(135, 0),
    "personality_no_aslr": lambda: call(135, 0x0040000),  # ADDR_NO_RANDOMIZE
    "x32_getpid": lambda: call(0x40000000 | 39),
    "int80_getpid": int80_getpid,
}

def isolated(probe):
    # each probe in its own child: one that succeeds (a new namespace, being traced) or is killed
    # leaves the others alone
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            outcome = probe()
        except BaseException as exc:
            outcome = f"raised {exc!r}"
        os.write(write, outcome.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        outcome = pipe.read().decode()
    status = os.waitpid(pid, 0)[1]
    return signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else outcome

json.dump({name: isolated(probe) for name, probe in PROBES.items()}, sys.stdout)
"""

DENIED_PROBES = {
    "clone_newuser": "EPERM",
    "clone_newns": "EPERM",
    "clone_newnet": "EPERM",
    "clone3": "ENOSYS",
    "unshare_newuser": "EPERM",
    "unshare_newtime": "EPERM",
    "setns": "EPERM",
    "keyctl": "EPERM",
    "add_key": "EPERM",
    "request_key": "EPERM",
    "mount": "EPERM",
    "umount2": "EPERM",
    "ptrace_traceme": "EPERM",
    "process_vm_readv": "EPERM",
    "perf_event_open": "EPERM",
    "bpf": "EPERM",
    "io_uring_setup": "EPERM",
    "userfaultfd": "EPERM",
    "syslog": "EPERM",
    "personality_no_aslr": "EPERM",
    "x32_getpid": "SIGSYS",
    "int80_getpid": "SIGSYS",
}
ALLOWED_PROBES = {
    "getpid": "ok",
    "no_syscall": "ENOSYS",
    "fork": "ok",
    "spawn": "ok",
    "thread": "ok",
    "clone_plain": "ok",
    "personality_query": "ok",
    "personality_linux": "ok",
}


@dataclass(frozen=True)
class Outcomes:
    filtered: dict[str, str]
    unfiltered: dict[str, str]


def probe_in_bwrap(bwrap: str, prog: bytes | None) -> dict[str, str]:
    """The probes' outcomes in a bwrap sandbox that keeps root's capabilities, with ``prog`` as its filter."""
    args = [bwrap, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--unshare-pid"]
    fds: tuple[int, ...] = ()
    if prog is not None:
        fd = os.memfd_create("seccomp")
        os.write(fd, prog)
        os.lseek(fd, 0, os.SEEK_SET)
        args += ["--seccomp", str(fd)]
        fds = (fd,)
    try:
        done = subprocess.run(
            [*args, "--", sys.executable, "-I", "-c", PROBES], pass_fds=fds, capture_output=True, timeout=60
        )
    finally:
        for fd in fds:
            os.close(fd)
    assert done.returncode == 0, done.stderr.decode()
    outcomes: dict[str, str] = json.loads(done.stdout)
    return outcomes


@pytest.fixture(scope="module")
def outcomes() -> Iterator[Outcomes]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bubblewrap is not installed")
    if platform.machine() != "x86_64":
        pytest.skip("the probes use x86_64 syscall numbers")
    if os.geteuid() != 0:
        pytest.skip("the baseline needs a sandbox with capabilities: bwrap run as root")
    yield Outcomes(filtered=probe_in_bwrap(bwrap, program()), unfiltered=probe_in_bwrap(bwrap, None))


@pytest.mark.parametrize("probe", sorted(DENIED_PROBES))
def test_bwrap_filter_denies(outcomes: Outcomes, probe: str) -> None:
    assert outcomes.filtered[probe] == DENIED_PROBES[probe]
    assert outcomes.unfiltered[probe] != DENIED_PROBES[probe], "the sandbox denies it even without the filter"


@pytest.mark.parametrize("probe", sorted(ALLOWED_PROBES))
def test_bwrap_filter_allows(outcomes: Outcomes, probe: str) -> None:
    assert outcomes.filtered[probe] == outcomes.unfiltered[probe] == ALLOWED_PROBES[probe]


def test_bwrap_baseline_has_what_the_filter_takes_away(outcomes: Outcomes) -> None:
    """Without the filter, this sandbox reads the session keyring and makes user namespaces: the calls
    the filter exists for."""
    for probe in ("keyctl", "add_key", "unshare_newuser", "clone_newuser", "ptrace_traceme"):
        assert outcomes.unfiltered[probe] == "ok", probe
