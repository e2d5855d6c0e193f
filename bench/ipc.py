"""`python -m bench.ipc`: moving prepared items between processes — ZeroMQ with out-of-band frames
(service/wire/frames.py) against pickle (one in-band frame) and shared memory (arrays copied into a
SharedMemory block, the header over ZeroMQ). Measured to pick the wire format (docs/design-choices.md).

A child process stands in for the engine: it receives each message, rebuilds the items and answers with a
small header. Per payload and transport: round trips per second and CPU ms per round trip of both
processes together (process CPU time). Payloads: one 224 px image item (float32, 0.6 MB), one 30 s audio
item (80×3000 float32, 0.96 MB) and eight short texts. Results go to --out with the command.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import pickle
import sys
import time
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import zmq

from bench.report import command_line, write_small_run
from service.items import PreparedItem
from service.wire import frames as wire

TRANSPORTS = ("zmq-out-of-band", "pickle", "shared-memory")


def payloads() -> dict[str, list[PreparedItem]]:
    rng = np.random.default_rng(0)
    text = [PreparedItem({"text": (rng.integers(0, 30_000, 12), np.ones(12, np.int64))}) for _ in range(8)]
    return {
        "image": [PreparedItem({"image": rng.standard_normal((3, 224, 224), dtype=np.float32)})],
        "audio-30s": [PreparedItem({"audio": rng.standard_normal((80, 3000), dtype=np.float32)})],
        "text-x8": text,
    }


def encode(transport: str, items: list[PreparedItem], shm: shared_memory.SharedMemory) -> list:
    if transport == "pickle":
        return [pickle.dumps(items, protocol=5)]
    frames = wire.pack_items({}, items)
    if transport == "zmq-out-of-band":
        return frames
    offsets, at = [], 0  # shared memory: copy every array frame into the block, send offsets instead
    for frame in frames[1:]:
        size = len(frame)
        shm.buf[at : at + size] = frame
        offsets.append([at, size])
        at += size
    return [frames[0], json.dumps(offsets).encode()]


def decode(transport: str, frames: list, shm: shared_memory.SharedMemory) -> list[PreparedItem]:
    if transport == "pickle":
        return pickle.loads(frames[0].bytes)
    if transport == "zmq-out-of-band":
        return wire.unpack_items(frames)[1]
    offsets = json.loads(frames[1].bytes)
    views = [shm.buf[at : at + size] for at, size in offsets]
    return wire.unpack_items([frames[0].bytes, *views])[1]


def engine(endpoint: str, shm_name: str) -> None:
    """The child: receive, rebuild the items, answer; until it gets b"stop"."""
    shm = shared_memory.SharedMemory(name=shm_name)
    socket = zmq.Context().socket(zmq.PAIR)
    socket.connect(endpoint)
    while True:
        frames = socket.recv_multipart(copy=False)
        if frames[0].bytes == b"stop":
            break
        transport = frames[0].bytes.decode()
        items = decode(transport, frames[1:], shm)
        socket.send(json.dumps({"n": len(items)}).encode())
        del items
    shm.close()


def round_trips(socket, transport: str, items, shm, child: mp.Process, seconds: float) -> dict:
    name = transport.encode()
    for _ in range(20):  # warm-up
        socket.send_multipart([name, *encode(transport, items, shm)], copy=False)
        socket.recv()
    count, started, cpu = 0, time.perf_counter(), time.process_time() + child_cpu(child)
    while time.perf_counter() - started < seconds:
        socket.send_multipart([name, *encode(transport, items, shm)], copy=False)
        socket.recv()
        count += 1
    elapsed, used = time.perf_counter() - started, time.process_time() + child_cpu(child) - cpu
    return {"round_trips_per_s": round(count / elapsed), "cpu_ms_per_round_trip": round(1000 * used / count, 4)}


def child_cpu(child: mp.Process) -> float:
    with open(f"/proc/{child.pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks (USER_HZ = 100)


def measure(seconds: float) -> dict:
    endpoint = f"ipc:///tmp/fusionserve-bench-ipc-{mp.current_process().pid}"
    shm = shared_memory.SharedMemory(create=True, size=8 << 20)
    socket = zmq.Context().socket(zmq.PAIR)
    socket.bind(endpoint)
    child = mp.get_context("spawn").Process(target=engine, args=(endpoint, shm.name))
    child.start()
    try:
        return {payload: {t: round_trips(socket, t, items, shm, child, seconds) for t in TRANSPORTS}
                for payload, items in payloads().items()}  # fmt: skip
    finally:
        socket.send(b"stop")
        child.join(10)
        shm.close()
        shm.unlink()


def markdown(result: dict, command: str) -> str:
    lines = [f"Command: `{command}`", "", "| payload | " + " | ".join(TRANSPORTS) + " |", "|---|" + "---:|" * 3]
    for payload, rows in result.items():
        cells = [f"{rows[t]['round_trips_per_s']:,}/s, {rows[t]['cpu_ms_per_round_trip']:.3f} ms" for t in TRANSPORTS]
        lines.append(f"| {payload} | " + " | ".join(cells) + " |")
    lines.append("\nround trips per second (one at a time) and CPU ms per round trip, both processes together.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ipc", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per payload and transport")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "ipc")
    args = parser.parse_args(argv)
    command = command_line("bench.ipc", argv)
    result = measure(args.seconds)
    write_small_run(args.out, "ipc", command, result, markdown(result, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
