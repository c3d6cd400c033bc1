"""Network namespaces of sandboxed pipeline services: the one a service runs in, which its operators join.

A service's bwrap makes a network namespace holding only a loopback interface; the service listens there
and the operators that use it run in the same namespace (``nsenter --net`` before their own bwrap), so
they reach it at 127.0.0.1 and reach nothing else. Joining another process's namespace takes
CAP_SYS_ADMIN over it: a jobs service run as root has it, one that is not cannot run sandboxed services.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import http.client
import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

NSENTER = "/usr/bin/nsenter"
CLONE_NEWNET = 0x40000000
LOOPBACK = "127.0.0.1"
_LIBC = ctypes.CDLL(None, use_errno=True)


def namespace_holder(status_file: Path) -> int | None:
    """The pid of the sandbox's first process inside its namespaces (bwrap's ``child-pid``), or None
    while bwrap has not written it yet."""
    try:
        lines = status_file.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        with contextlib.suppress(ValueError, AttributeError):
            pid = json.loads(line).get("child-pid")
            if isinstance(pid, int):
                return pid
    return None


def namespace_path(pid: int) -> str:
    return f"/proc/{pid}/ns/net"


def _setns(fd: int) -> None:
    if _LIBC.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def _socket_in(pid: int) -> socket.socket:
    """A TCP socket made inside ``pid``'s network namespace, by this thread stepping in and back out."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(namespace_path(pid), os.O_RDONLY)
        try:
            _setns(target)
            try:
                return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            finally:
                _setns(own)  # never fails for a thread that could step in; the thread ends right after anyway
        finally:
            os.close(target)
    finally:
        os.close(own)


def _accepts(pid: int, port: int, timeout: float) -> bool:
    try:
        sock = _socket_in(pid)
    except OSError:
        return False  # the namespace is gone (its service ended)
    with sock:
        sock.settimeout(timeout)
        try:
            sock.connect((LOOPBACK, port))
        except OSError:
            return False
    return True


def _request(pid: int, port: int, method: str, path: str, timeout: float) -> tuple[int, bytes]:
    sock = _socket_in(pid)
    sock.settimeout(timeout)
    sock.connect((LOOPBACK, port))
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    connection.sock = sock  # already connected, inside the namespace
    try:
        connection.request(method, path, headers={"Content-Length": "0"} if method == "POST" else {})
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


async def request(pid: int, port: int, method: str, path: str, within: float = 60.0) -> tuple[int, bytes]:
    """An HTTP request to ``port`` on the loopback of ``pid``'s network namespace: (status, body). OSError when
    nothing answers."""
    with ThreadPoolExecutor(1, thread_name_prefix="claret-service-request") as own_thread:
        return await asyncio.get_running_loop().run_in_executor(own_thread, _request, pid, port, method, path, within)


async def accepts(pid: int, port: int, within: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``port`` on the loopback of ``pid``'s network namespace.
    Run on a thread of its own that ends after: a thread in the wrong namespace must never serve other work."""
    with ThreadPoolExecutor(1, thread_name_prefix="claret-service-probe") as own_thread:
        return await asyncio.get_running_loop().run_in_executor(own_thread, _accepts, pid, port, within)
