"""Control groups for sandboxed operators: memory, cpu and pids limits, and a way to kill a whole tree.

Each operator gets a group of its own below this service's group (``<own>/claret-<instance>/<job>.<op>``),
in every hierarchy that has the controller: cgroup v1 (one mount per controller) or v2 (one unified tree).
A process joins by writing its pid to ``cgroup.procs`` before it execs the sandbox, so everything the
operator forks is inside from the first instruction. At the end every process still in the group is
killed (v2 ``cgroup.kill``; v1 each one ``cgroup.procs`` lists), and the group is removed once they are
gone (the sandbox runtime retries, killing again, until it can).

Both versions are written; this project's test machines have cgroup v1 only (hybrid layout, the unified
tree holding no controllers), so the v2 path is untested there (README, "Untested here").
"""

from __future__ import annotations

import contextlib
import os
import signal
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000


class CgroupsUnavailable(Exception):
    """No cgroup hierarchy this process can write: operators would run without limits."""


@dataclass(frozen=True)
class Limits:
    """What one operator may use: memory in bytes, whole cores, processes and threads."""

    memory_bytes: int
    cpus: int
    pids: int


@dataclass(frozen=True)
class OperatorGroup:
    """One operator's group: one folder per hierarchy (v1), or one folder (v2)."""

    folders: dict[str, Path]
    """Controller name to folder; on v2 every controller maps to the same folder."""
    unified: bool

    @property
    def procs_files(self) -> list[Path]:
        """The ``cgroup.procs`` files a process writes its pid to, to join the group everywhere."""
        return sorted({folder / "cgroup.procs" for folder in self.folders.values()})

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the group for going over the memory limit."""
        folder = self.folders.get("memory")
        if folder is None:
            return False
        events = _read_counters(folder / ("memory.events" if self.unified else "memory.oom_control"))
        return events.get("oom_kill", 0) > 0

    def pids_exhausted(self) -> bool:
        """Whether a fork failed because the group had as many processes as its limit."""
        folder = self.folders.get("pids")
        return folder is not None and _read_counters(folder / "pids.events").get("max", 0) > 0

    def kill(self) -> None:
        """SIGKILL every process in the group now (they are gone a moment later: see :meth:`remove`)."""
        if self.unified:
            with contextlib.suppress(OSError):
                (next(iter(self.folders.values())) / "cgroup.kill").write_text("1")
        for pid in self.members():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def members(self) -> set[int]:
        """The group's processes (each is in every hierarchy's folder: one list says it)."""
        try:
            return {int(pid) for pid in (self.folders["pids"] / "cgroup.procs").read_text().split()}
        except OSError:
            return set()

    def remove(self) -> bool:
        """Remove the group's folders; False while processes (still dying) keep one of them."""
        removed = True
        for folder in {*self.folders.values()}:
            try:
                folder.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                removed = False
        return removed


class Cgroups:
    """Where this service creates operator groups, found once at start."""

    def __init__(self, parents: dict[str, Path], unified: bool) -> None:
        self._parents = parents
        self._unified = unified

    @property
    def version(self) -> int:
        return 2 if self._unified else 1

    @classmethod
    def detect(cls, instance: str) -> Cgroups:
        """Find this process's groups and make ``claret-<instance>`` below them; :class:`CgroupsUnavailable`
        says why when no hierarchy with the three controllers can be written."""
        own = _own_groups()
        mounts = _cgroup_mounts()
        problems = []
        for attempt in (_unified_parents, _v1_parents):
            try:
                parents = attempt(own, mounts, f"claret-{instance}")
            except OSError as exc:
                problems.append(str(exc))
                continue
            if parents:
                return cls(parents, unified=attempt is _unified_parents)
        raise CgroupsUnavailable(
            "no cgroup hierarchy with the memory, cpu and pids controllers can be written by this service"
            + (f" ({'; '.join(problems)})" if problems else "")
        )

    def group(self, job_id: str, operator: str) -> OperatorGroup:
        """The group of one operator (not created: see :meth:`create`)."""
        name = f"{job_id}.{urllib.parse.quote(operator, safe='')}"
        return OperatorGroup({c: parent / name for c, parent in self._parents.items()}, self._unified)

    def create(self, job_id: str, operator: str, limits: Limits) -> OperatorGroup:
        """Make the operator's group with its limits set (a leftover of an earlier attempt is reused)."""
        group = self.group(job_id, operator)
        for folder in {*group.folders.values()}:
            folder.mkdir(exist_ok=True)
        memory, cpu, pids = (group.folders[c] for c in CONTROLLERS)
        quota = limits.cpus * CPU_PERIOD_US
        if self._unified:
            (memory / "memory.max").write_text(str(limits.memory_bytes))
            with contextlib.suppress(FileNotFoundError):  # no swap configured: no file
                (memory / "memory.swap.max").write_text("0")
            (cpu / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
        else:
            (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            with contextlib.suppress(OSError):  # memsw exists only with swap accounting
                (memory / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_bytes))
            (cpu / "cpu.cfs_quota_us").write_text(str(quota))  # of the default period, CPU_PERIOD_US
        (pids / "pids.max").write_text(str(limits.pids))
        return group


def _read_counters(path: Path) -> dict[str, int]:
    """``name value`` lines (memory.events, memory.oom_control, pids.events) as a dict; empty if unreadable."""
    counters = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if value.strip().isdigit():
                counters[name] = int(value)
    return counters


def _own_groups() -> dict[str, str]:
    """This process's group path per controller ("" for the v2 unified tree), from /proc/self/cgroup."""
    groups = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            groups[controller] = path
    return groups


def _cgroup_mounts() -> list[tuple[Path, str, set[str]]]:
    """(mount point, root of the mount, controllers; {""} for cgroup2) of each cgroup mount."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, (fstype, _, options) = before.split(), after.split(" ", 2)
        if fstype == "cgroup2":
            mounts.append((Path(fields[4]), fields[3], {""}))
        elif fstype == "cgroup":
            mounts.append((Path(fields[4]), fields[3], set(options.split(","))))
    return mounts


def _within(mount: Path, root: str, path: str) -> Path:
    """The folder of group ``path`` in a hierarchy mounted at ``mount`` from its ``root``."""
    relative = path[len(root) :] if root != "/" and path.startswith(root) else path
    return mount / relative.lstrip("/")


def _v1_parents(own: dict[str, str], mounts: list[tuple[Path, str, set[str]]], name: str) -> dict[str, Path]:
    parents = {}
    for controller in CONTROLLERS:
        found = next(((m, r) for m, r, options in mounts if controller in options), None)
        if found is None or controller not in own:
            return {}
        parent = _within(*found, own[controller]) / name
        parent.mkdir(exist_ok=True)
        parents[controller] = parent
    return parents


def _unified_parents(own: dict[str, str], mounts: list[tuple[Path, str, set[str]]], name: str) -> dict[str, Path]:
    """On v2 a group with processes cannot hand controllers to children ("no internal processes"): this
    service moves itself into a leaf ``<own>/claret-service`` and puts operators under ``<own>/<name>``."""
    found = next(((m, r) for m, r, options in mounts if options == {""}), None)
    if found is None or "" not in own:
        return {}
    base = _within(*found, own[""])
    if not set(CONTROLLERS) <= set((base / "cgroup.controllers").read_text().split()):
        return {}
    enable = " ".join(f"+{c}" for c in CONTROLLERS)
    if base != found[0]:  # the root group may keep its processes; any other must be emptied first
        leaf = base / "claret-service"
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
    (base / "cgroup.subtree_control").write_text(enable)
    parent = base / name
    parent.mkdir(exist_ok=True)
    (parent / "cgroup.subtree_control").write_text(enable)
    return dict.fromkeys(CONTROLLERS, parent)
