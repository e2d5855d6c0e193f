"""A server's processes by role, and CPU per request per role (Linux /proc).

`fusionserve serve` in multi-process mode is a supervisor with children spawned by multiprocessing: every child's
command line is the same `spawn_main(...) --multiprocessing-fork`, and the front-ends import the engine's modules
too (spawn re-imports the main module), so neither the command line nor the mapped libraries tell a front-end from
an engine. What does is what each one serves: a front-end holds the HTTP listening socket the supervisor bound
(its inode is in /proc/net/tcp as LISTEN on the server's port), an engine holds the ipc socket `engine-<i>.sock`
(its path is in /proc/net/unix). The supervisor is the root of the tree; the root of a tree without front-ends or
engines is a `one-process` server. multiprocessing's resource tracker is a `helper`. A process below a front-end or
an engine counts as its parent's.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from bench.server import cpu_seconds_of, process_tree

ENGINE_SOCKET = re.compile(r"engine-(\d+)\.sock$")
HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")
LISTEN = "0A"  # TCP state in /proc/net/tcp
SPLIT_ROLES = ("front-end", "engine")
# The report's order; "front-ends" and "engines" are the sums over each front-end and engine, "tree" over all.
ORDER = ("one-process", "supervisor", "front-end", "front-ends", "engine", "engines", "helper", "other", "tree")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    cmdline: str
    sockets: frozenset[str]  # inodes of the sockets among its open file descriptors


def role_of(proc: Proc, listening: set[str], engine_sockets: dict[str, int]) -> tuple[str, int]:
    """(role, sort key) of a child of the root: the key orders the processes of one role (engine index, else pid)."""
    if any(helper in proc.cmdline for helper in HELPERS):
        return "helper", proc.pid
    if proc.sockets & listening:
        return "front-end", proc.pid
    engines = sorted(engine_sockets[inode] for inode in proc.sockets if inode in engine_sockets)
    if engines:
        return "engine", engines[0]
    return "other", proc.pid


def classify(procs: list[Proc], root: int, listening: set[str], engine_sockets: dict[str, int]) -> dict[int, str]:
    """pid → label ('supervisor', 'front-end-0', 'engine-0', 'helper', 'one-process', …); `procs` parents first.

    Front-ends and engines are numbered from 0 in key order; helpers and others share one label per role.
    """
    found: dict[int, tuple[str, int]] = {}
    for proc in procs:
        if proc.pid == root:
            continue
        parent = found.get(proc.ppid)
        inherits = parent is not None and parent[0] in SPLIT_ROLES
        found[proc.pid] = parent if inherits else role_of(proc, listening, engine_sockets)
    labels = {}
    for role in SPLIT_ROLES:
        keys = sorted({key for r, key in found.values() if r == role})
        labels |= {pid: f"{role}-{keys.index(key)}" for pid, (r, key) in found.items() if r == role}
    labels |= {pid: role for pid, (role, _) in found.items() if role not in SPLIT_ROLES}
    split = any(role in SPLIT_ROLES for role, _ in found.values())
    return {root: "supervisor" if split else "one-process", **labels}


def seconds_by_label(start: dict[int, tuple[str, float]], end: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per label between two snapshots (pid → (label, CPU seconds so far)).

    A process only in `end` started inside the window: all of its CPU counts. One only in `start` exited: what it
    used after `start` is lost (processes_changed says when either happened)."""
    used: dict[str, float] = {}
    for pid, (label, cpu) in end.items():
        used[label] = used.get(label, 0.0) + cpu - (start[pid][1] if pid in start else 0.0)
    for label, _ in start.values():
        used.setdefault(label, 0.0)
    return used


def role_of_label(label: str) -> str:
    return label.rsplit("-", 1)[0] if label.rsplit("-", 1)[-1].isdigit() else label


def per_request_us(used: dict[str, float], requests: int) -> dict[str, float] | None:
    """µs per request per label, with the sums "front-ends", "engines" and "tree", in ORDER."""
    if not requests:
        return None
    sums = {"front-ends": "front-end", "engines": "engine"}
    totals = {**used, "tree": sum(used.values())}
    for total, role in sums.items():
        if any(role_of_label(label) == role for label in used):
            totals[total] = sum(s for label, s in used.items() if role_of_label(label) == role)

    def rank(label: str) -> tuple[int, str]:
        return ORDER.index(role_of_label(label)) if role_of_label(label) in ORDER else len(ORDER), label

    return {label: round(totals[label] * 1e6 / requests, 1) for label in sorted(totals, key=rank)}


def engine_requests_per_s(us_per_request: dict[str, float] | None) -> float | None:
    """Requests/s one engine process could take on one core at this CPU cost: 1e6 / engine µs per request."""
    engine = (us_per_request or {}).get("engines")
    return round(1e6 / engine, 1) if engine else None


# Reading /proc


def cmdline_of(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return ""


def ppid_of(pid: int) -> int:
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return 0


def socket_inodes(pid: int) -> frozenset[str]:
    inodes = set()
    with contextlib.suppress(OSError):  # the process is gone
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(fd.path)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
    return frozenset(inodes)


def listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on `port` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1].rsplit(":", 1)[1] == f"{port:04X}" and fields[3] == LISTEN:
                    found.add(fields[9])
    return found


def engine_socket_inodes() -> dict[str, int]:
    """Inode → engine index of every unix socket bound to a path `…/engine-<i>.sock` (the listener and the
    connections it accepted carry the path; the front-ends' ends of those connections do not)."""
    found = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 7 and (match := ENGINE_SOCKET.search(fields[7])):
                found[fields[6]] = int(match.group(1))
    return found


def server_labels(root: int, port: int) -> dict[int, str]:
    procs = [Proc(pid, ppid_of(pid), cmdline_of(pid), socket_inodes(pid)) for pid in process_tree(root)]
    return classify(procs, root, listening_inodes(port), engine_socket_inodes())


class RoleMeter:
    """A closed loop's meter (bench/loadgen.py reads it at both edges of the measured window) that also keeps, at
    each read, every server process's label and CPU seconds, unrounded, for the per-role figures.

    The labels are found once, before the window (reading /proc/net/tcp takes milliseconds of this process's CPU,
    which would count as the client's), and again only for a process that was not there then. The client's CPU is
    read on both sides of each read of the servers, and the window counts neither read's own cost."""

    def __init__(self, servers: list) -> None:  # bench.server.ServerProcess
        self.servers = servers
        self.labels = {pid: label for server in servers for pid, label in self._classify(server).items()}
        self.snapshots: list[tuple[float, float, dict[int, tuple[str, float]]]] = []  # client CPU before, after

    @staticmethod
    def _classify(server) -> dict[int, str]:
        return server_labels(server.process.pid, server.port)

    def __call__(self) -> dict[str, float]:
        before, snapshot = time.process_time(), {}
        for server in self.servers:
            pids = process_tree(server.process.pid)
            if any(pid not in self.labels for pid in pids):
                self.labels |= self._classify(server)
            for pid in pids:
                if (cpu := cpu_seconds_of(pid)) is not None:
                    snapshot[pid] = (self.labels.get(pid, "other"), cpu)
        after = time.process_time()
        self.snapshots.append((before, after, snapshot))
        return {"client": after if len(self.snapshots) == 1 else before, "server": sum(c for _, c in snapshot.values())}

    def window(self, requests: int) -> dict:
        """Per-role µs per request, the engine projection and the client's µs per request, first to last read."""
        (_, client_start, start), (client_end, _, end) = self.snapshots[0], self.snapshots[-1]
        us = per_request_us(seconds_by_label(start, end), requests)
        return {
            "cpu_us_per_request": us,
            "engine_requests_per_s": engine_requests_per_s(us),
            "client_us_per_request": round((client_end - client_start) * 1e6 / requests, 1) if requests else None,
            "processes": sorted({label for label, _ in end.values()}, key=lambda label: (role_of_label(label), label)),
            "processes_changed": set(start) != set(end),
        }
