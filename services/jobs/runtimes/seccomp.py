"""A seccomp filter for sandboxed operators, compiled to the classic-BPF program bwrap's ``--seccomp FD`` reads.

Operators already run as an unprivileged uid with no capabilities; this filter is defence in depth, so
that a kernel bug or a missed capability check does not hand an operator the system calls a container
never needs. The policy is what Docker's default profile denies an unprivileged container, written as
a deny list (every other call is allowed):

- a call made through a foreign ABI: another ``seccomp_data.arch`` (i386's ``int 0x80`` on x86_64,
  AArch32 on aarch64), or an x32 call (number with bit 30 set) on x86_64, kills the process: the
  tables below only know the native numbers, so such a call would get past them;
- ``EPERM`` for the calls in :data:`DENIED`: new namespaces (``unshare``, ``setns``), which would give
  an operator full capabilities inside a user namespace; the kernel keyrings (``keyctl``, ``add_key``,
  ``request_key``), which would let it read the platform's session keyring; mounts; ``ptrace`` and
  the ``process_vm_*`` calls, which read other processes; BPF, ``perf_event_open``, ``userfaultfd``
  and ``io_uring_*``, common ways into kernel exploits; modules, kexec, reboot, swap, clocks, quotas,
  accounting, the kernel log, raw I/O ports and other host administration;
- ``clone`` with any namespace flag gets ``EPERM``; plain ``clone`` (fork, vfork, threads) works;
- ``clone3`` gets ``ENOSYS``: its flags sit behind a pointer a filter cannot read, and ``ENOSYS`` makes
  glibc fall back to ``clone``;
- ``personality`` is allowed only for the values Docker allows (querying it, and the ordinary Linux
  personas), so an operator cannot, for one, turn off address-space randomisation.

A call an architecture does not have is simply absent from its table. The program is a flat list of
self-contained blocks (``JEQ nr, 0, 1`` then its ``RET``), so no jump goes further than a few places.
"""

from __future__ import annotations

import functools
import platform
import struct

# Classic BPF opcodes (linux/bpf_common.h), the combinations this program uses.
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS: A = u32 at offset k of seccomp_data
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K: pc += (A == k) ? jt : jf
BPF_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K: pc += (A & k) ? jt : jf
BPF_RET_K = 0x06  # BPF_RET | BPF_K: return k

# Actions (linux/seccomp.h); the low 16 bits of an ERRNO action are the errno.
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

# errno values (asm-generic/errno-base.h, errno.h): the same on x86_64 and aarch64, whatever the host.
EPERM = 1
ENOSYS = 38

# seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]. Both architectures are little-endian,
# so the low 32 bits of args[0] are at offset 16.
OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARG0_LOW = 16

AUDIT_ARCH_X86_64 = 0xC000003E  # EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE (linux/audit.h)
AUDIT_ARCH_AARCH64 = 0xC00000B7  # EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
X32_SYSCALL_BIT = 0x40000000
NO_SYSCALL = 0xFFFFFFFF  # syscall(-1): not x32, and harmless (ENOSYS); ptrace-style tools use it

CLONE_NAMESPACES = 0x7E020000
"""CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET,
Docker's mask. CLONE_NEWTIME (0x80) is not in it: ``clone`` reads its low byte as the exit signal
(CSIGNAL), so only ``clone3`` and ``unshare`` can ask for a time namespace, and both are denied."""

PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
"""The ``personality`` arguments Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and
0xffffffff (query). The kernel reads an unsigned int, so the low 32 bits are all that matter."""

DENIED = (
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
    "finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "init_module",
    "io_uring_enter", "io_uring_register", "io_uring_setup", "ioperm", "iopl", "kcmp", "kexec_file_load",
    "kexec_load", "keyctl", "lookup_dcookie", "mount", "mount_setattr", "move_mount", "name_to_handle_at",
    "nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open", "pivot_root", "process_vm_readv",
    "process_vm_writev", "ptrace", "query_module", "quotactl", "quotactl_fd", "reboot", "request_key",
    "setns", "settimeofday", "swapoff", "swapon", "sysfs", "_sysctl", "syslog", "umount", "umount2",
    "unshare", "uselib", "userfaultfd", "ustat", "vhangup", "vm86", "vm86old",
)  # fmt: skip
"""Calls answered with EPERM, whatever their arguments (those an architecture lacks are skipped)."""

# Syscall numbers, from the kernel's uapi headers: asm/unistd_64.h for x86_64, and the generic table
# asm-generic/unistd.h (with arm64's __ARCH_WANT_* choices) for aarch64. Only the calls this filter names.
X86_64 = {
    "_sysctl": 156, "acct": 163, "add_key": 248, "bpf": 321, "clock_adjtime": 305, "clock_settime": 227,
    "clone": 56, "clone3": 435, "create_module": 174, "delete_module": 176, "finit_module": 313,
    "fsconfig": 431, "fsmount": 432, "fsopen": 430, "fspick": 433, "get_kernel_syms": 177, "init_module": 175,
    "io_uring_enter": 426, "io_uring_register": 427, "io_uring_setup": 425, "ioperm": 173, "iopl": 172,
    "kcmp": 312, "kexec_file_load": 320, "kexec_load": 246, "keyctl": 250, "lookup_dcookie": 212,
    "mount": 165, "mount_setattr": 442, "move_mount": 429, "name_to_handle_at": 303, "nfsservctl": 180,
    "open_by_handle_at": 304, "open_tree": 428, "perf_event_open": 298, "personality": 135,
    "pivot_root": 155, "process_vm_readv": 310, "process_vm_writev": 311, "ptrace": 101,
    "query_module": 178, "quotactl": 179, "quotactl_fd": 443, "reboot": 169, "request_key": 249,
    "setns": 308, "settimeofday": 164, "swapoff": 168, "swapon": 167, "sysfs": 139, "syslog": 103,
    "umount2": 166, "unshare": 272, "uselib": 134, "userfaultfd": 323, "ustat": 136, "vhangup": 153,
}  # fmt: skip
AARCH64 = {
    "acct": 89, "add_key": 217, "bpf": 280, "clock_adjtime": 266, "clock_settime": 112, "clone": 220,
    "clone3": 435, "delete_module": 106, "finit_module": 273, "fsconfig": 431, "fsmount": 432, "fsopen": 430,
    "fspick": 433, "init_module": 105, "io_uring_enter": 426, "io_uring_register": 427, "io_uring_setup": 425,
    "kcmp": 272, "kexec_file_load": 294, "kexec_load": 104, "keyctl": 219, "lookup_dcookie": 18,
    "mount": 40, "mount_setattr": 442, "move_mount": 429, "name_to_handle_at": 264, "nfsservctl": 42,
    "open_by_handle_at": 265, "open_tree": 428, "perf_event_open": 241, "personality": 92, "pivot_root": 41,
    "process_vm_readv": 270, "process_vm_writev": 271, "ptrace": 117, "quotactl": 60, "quotactl_fd": 443,
    "reboot": 142, "request_key": 218, "setns": 268, "settimeofday": 170, "swapoff": 225, "swapon": 224,
    "syslog": 116, "umount2": 39, "unshare": 97, "userfaultfd": 282, "vhangup": 58,
}  # fmt: skip

ARCHITECTURES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (AUDIT_ARCH_X86_64, X86_64),
    "aarch64": (AUDIT_ARCH_AARCH64, AARCH64),
}
ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}

Instruction = tuple[int, int, int, int]  # code, jt, jf, k


class UnsupportedArchitecture(ValueError):
    """No syscall table for this machine: run without the filter only knowingly, never silently."""


def _stmt(code: int, k: int) -> Instruction:
    return (code, 0, 0, k)


def _jump(code: int, k: int, jt: int, jf: int) -> Instruction:
    if not (0 <= jt <= 0xFF and 0 <= jf <= 0xFF):
        raise ValueError(f"BPF jump offset out of range: jt={jt} jf={jf}")
    return (code, jt, jf, k)


def _errno(value: int) -> Instruction:
    return _stmt(BPF_RET_K, SECCOMP_RET_ERRNO | value)


ALLOW = _stmt(BPF_RET_K, SECCOMP_RET_ALLOW)
KILL = _stmt(BPF_RET_K, SECCOMP_RET_KILL_PROCESS)
LOAD_NR = _stmt(BPF_LD_W_ABS, OFFSET_NR)
LOAD_ARG0 = _stmt(BPF_LD_W_ABS, OFFSET_ARG0_LOW)


def _when(nr: int, body: list[Instruction]) -> list[Instruction]:
    """``body`` when the call is ``nr`` (A holds the number), else skip past it. ``body`` must end in a RET:
    it may clobber A, which the blocks after it expect to still hold the number."""
    return [_jump(BPF_JEQ_K, nr, 0, len(body)), *body]


def _instructions(audit_arch: int, table: dict[str, int]) -> list[Instruction]:
    code = [_stmt(BPF_LD_W_ABS, OFFSET_ARCH), _jump(BPF_JEQ_K, audit_arch, 1, 0), KILL, LOAD_NR]
    if audit_arch == AUDIT_ARCH_X86_64:  # x32 numbers reach the same entry with the same AUDIT_ARCH
        code += [_jump(BPF_JSET_K, X32_SYSCALL_BIT, 0, 2), _jump(BPF_JEQ_K, NO_SYSCALL, 1, 0), KILL]
    code += _when(table["clone"], [LOAD_ARG0, _jump(BPF_JSET_K, CLONE_NAMESPACES, 0, 1), _errno(EPERM), ALLOW])
    code += _when(table["clone3"], [_errno(ENOSYS)])
    allowed = [_jump(BPF_JEQ_K, value, len(PERSONALITIES) - i, 0) for i, value in enumerate(PERSONALITIES)]
    code += _when(table["personality"], [LOAD_ARG0, *allowed, _errno(EPERM), ALLOW])
    for name in DENIED:
        if name in table:
            code += _when(table[name], [_errno(EPERM)])
    return [*code, ALLOW]


@functools.cache
def _compiled(arch: str) -> bytes:
    audit_arch, table = ARCHITECTURES[arch]
    return b"".join(struct.pack("<HBBI", *insn) for insn in _instructions(audit_arch, table))


def _architecture(machine: str | None) -> str:
    name = machine if machine is not None else platform.machine()
    arch = ALIASES.get(name.lower(), name.lower())
    if arch not in ARCHITECTURES:
        supported = ", ".join(ARCHITECTURES)
        raise UnsupportedArchitecture(f"no seccomp syscall table for architecture {name!r} (supported: {supported})")
    return arch


def syscall_number(name: str, machine: str | None = None) -> int:
    """The number of one of the calls this filter names (``keyctl``...), on ``machine`` (this one by default)."""
    return ARCHITECTURES[_architecture(machine)][1][name]


def program(machine: str | None = None) -> bytes:
    """The filter for ``machine`` (``platform.machine()`` when None), as the packed ``struct sock_filter``
    array (native-endian, no header) that bwrap's ``--seccomp FD`` reads from a file descriptor.

    Built once per architecture. Raises :class:`UnsupportedArchitecture` for a machine with no table.
    """
    return _compiled(_architecture(machine))
