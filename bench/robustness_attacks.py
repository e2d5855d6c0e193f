"""The measurements of bench.robustness, each against a running `fusionserve serve` (bench/server.py): RSS over
unload / load cycles, bodies trickled at a byte a second, a keyless unload from a foreign Origin, and a KServe
V2 body whose data nests 700 lists. Every loop is bounded (cycles, body bytes, windows, timeouts)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections import Counter

import httpx

from bench.loadgen import say
from bench.server import HOST, ServerProcess, process_memory_mb

ADMIN_KEY = "bench-robustness-admin-key"
TEXT = {"inputs": [{"text": "three"}]}
TRICKLERS = 48
TRICKLE_BODY_BYTES = 100  # the body each trickler declares and sends a byte a second: at most 100 s
DEADLINE_MS = 5000  # each trickler's X-Request-Timeout-Ms
ALL_SENDING_BOUND_S = 30.0
ORDINARY_CLIENTS = 4
ORDINARY_WINDOW_S = 2.0  # ordinary requests while every trickler is sending: well inside the 5 s deadline
UNLOAD_BOUND_S = 30.0
LOAD_BOUND_S = 120.0
NESTING = 700  # lists around one BYTES element: orjson parses it (1024 levels), a recursive walk does not
EVIL_ORIGIN = "http://evil.example"  # what a web page in the developer's browser sends


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def rss_mb(server: ServerProcess) -> float | None:
    """VmRSS of the serving process (one process mode: the one `fusionserve serve` started)."""
    return process_memory_mb(server.process.pid).get("rss_mb")


async def timed_post(client: httpx.AsyncClient, path: str, **kwargs) -> tuple[str, float]:
    """(status, or the transport error's name; seconds until it)."""
    started = time.perf_counter()
    try:
        status = str((await client.post(path, **kwargs)).status_code)
    except httpx.TransportError as error:
        status = type(error).__name__
    return status, round(time.perf_counter() - started, 3)


async def load_and_check(client: httpx.AsyncClient, model: str) -> dict:
    """Load the model through the repository API, then one ordinary embed."""
    load, load_s = await timed_post(client, f"/v2/repository/models/{model}/load", headers=admin(),
                                    timeout=LOAD_BOUND_S)  # fmt: skip
    embed, _ = await timed_post(client, f"/v1/models/{model}/embed", json=TEXT)
    return {"load": load, "load_s": load_s, "embed": embed}


async def reload_cycles(server: ServerProcess, client: httpx.AsyncClient, model: str, cycles: int) -> dict:
    """RSS after the start-up load, then after each unload and after each load (and an embed)."""
    start, rows = rss_mb(server), []
    for cycle in range(1, cycles + 1):
        unload, unload_s = await timed_post(client, f"/v2/repository/models/{model}/unload", headers=admin(),
                                            timeout=UNLOAD_BOUND_S)  # fmt: skip
        row = {"cycle": cycle, "unload": unload, "unload_s": unload_s, "rss_unloaded_mb": rss_mb(server)}
        row |= await load_and_check(client, model) | {"rss_mb": rss_mb(server)}
        rows.append(row)
        say(f"  cycle {cycle}: unload {unload} ({unload_s} s), load {row['load']} ({row['load_s']} s), "
            f"embed {row['embed']}; RSS {row['rss_unloaded_mb']} MB unloaded, {row['rss_mb']} MB loaded")  # fmt: skip
    end = rows[-1]["rss_mb"] if rows else start
    growth = None if start is None or end is None else round(end - start, 1)
    one_load = [r["rss_mb"] - r["rss_unloaded_mb"] for r in rows if None not in (r["rss_mb"], r["rss_unloaded_mb"])]
    return {"cycles": cycles, "rss_after_startup_mb": start, "rss_after_last_cycle_mb": end, "growth_mb": growth,
            "growth_per_cycle_mb": None if growth is None or not cycles else round(growth / cycles, 1),
            "one_load_mb_median": round(statistics.median(one_load), 1) if one_load else None,
            "rows": rows}  # fmt: skip


async def read_within(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the server sent within `seconds` (b"": it closed the connection); None: nothing yet."""
    try:
        return await asyncio.wait_for(reader.read(65536), seconds)
    except TimeoutError:
        return None


def outcome_of(answer: bytes | None) -> str:
    if answer is None:
        return "no answer"
    if not answer:
        return "closed"
    parts = answer.split(b" ", 2)
    return parts[1].decode(errors="replace") if answer.startswith(b"HTTP/1.1 ") and len(parts) > 1 else "garbled"


async def trickle(port: int, path: str, sending: asyncio.Event) -> dict:
    """Headers, then the body a byte a second until the server answers or closes (or the body is all sent):
    seconds from the end of the headers to that moment, and what it was (a status, closed, reset)."""
    body = json.dumps(TEXT).encode().ljust(TRICKLE_BODY_BYTES)  # valid JSON if it ever arrived whole
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write((f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\nX-Request-Timeout-Ms: {DEADLINE_MS}\r\n\r\n").encode())  # fmt: skip
    await writer.drain()
    started, answer = time.perf_counter(), None
    try:
        for index in range(len(body)):
            writer.write(body[index : index + 1])
            await writer.drain()
            sending.set()
            answer = await read_within(reader, 1.0)  # the pace: a byte whenever a second passes unanswered
            if answer is not None:
                break
        else:
            answer = await read_within(reader, 5.0)  # the whole body went in: its answer
        outcome = outcome_of(answer)
    except ConnectionError:
        outcome = "reset"
    elapsed = round(time.perf_counter() - started, 2)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return {"cut_after_s": elapsed, "outcome": outcome, "bytes_sent": index + 1}


async def ordinary_clients(client: httpx.AsyncClient, path: str) -> dict:
    """Closed-loop JSON text embeds for ORDINARY_WINDOW_S: their statuses and slowest answer."""
    statuses, latencies, end = Counter(), [], time.perf_counter() + ORDINARY_WINDOW_S

    async def one() -> None:
        while time.perf_counter() < end:
            status, seconds = await timed_post(client, path, json=TEXT)
            statuses[status] += 1
            latencies.append(seconds)

    await asyncio.gather(*(one() for _ in range(ORDINARY_CLIENTS)))
    return {"clients": ORDINARY_CLIENTS, "window_s": ORDINARY_WINDOW_S, "statuses": dict(sorted(statuses.items())),
            "max_s": max(latencies, default=None)}  # fmt: skip


async def start_tricklers(port: int, path: str) -> tuple[list[asyncio.Future], int, float]:
    """The tricklers, once all are sending (bounded wait): (their tasks, how many are sending, seconds it took)."""
    events = [asyncio.Event() for _ in range(TRICKLERS)]
    started = time.perf_counter()
    tasks = [asyncio.ensure_future(trickle(port, path, event)) for event in events]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(ALL_SENDING_BOUND_S):
            await asyncio.gather(*(event.wait() for event in events))
    return tasks, sum(e.is_set() for e in events), round(time.perf_counter() - started, 2)


async def slow_bodies(server: ServerProcess, client: httpx.AsyncClient, model: str) -> dict:
    """48 tricklers; ordinary clients meanwhile; an unload once all are sending; then a load again."""
    path = f"/v1/models/{model}/embed"
    tasks, sending, all_sending_s = await start_tricklers(server.port, path)
    ordinary = await ordinary_clients(client, path)
    unload, unload_s = await timed_post(client, f"/v2/repository/models/{model}/unload", headers=admin(),
                                        timeout=UNLOAD_BOUND_S)  # fmt: skip
    alive_at_unload = sum(not task.done() for task in tasks)
    done, pending = await asyncio.wait(tasks, timeout=TRICKLE_BODY_BYTES + 30.0)
    for task in pending:
        task.cancel()
    tricklers = [task.result() if not task.exception() else {"error": repr(task.exception())} for task in done]
    cut = [t["cut_after_s"] for t in tricklers if "cut_after_s" in t]
    reload = await load_and_check(client, model)
    say(f"  tricklers: {sending} sending after {all_sending_s} s; ordinary {ordinary['statuses']}; unload {unload} "
        f"in {unload_s} s ({alive_at_unload} tricklers still open); cut after {min(cut, default=None)}–"
        f"{max(cut, default=None)} s; load again {reload['load']}, embed {reload['embed']}")  # fmt: skip
    return {"tricklers": TRICKLERS, "deadline_ms": DEADLINE_MS, "body_bytes": TRICKLE_BODY_BYTES,
            "sending": sending, "all_sending_s": all_sending_s, "ordinary": ordinary,
            "unload": {"status": unload, "seconds": unload_s, "bound_s": UNLOAD_BOUND_S,
                       "tricklers_open_when_it_returned": alive_at_unload},
            "cut_after_s": {"min": min(cut, default=None), "median": statistics.median(cut) if cut else None,
                            "max": max(cut, default=None)},
            "outcomes": dict(Counter(t.get("outcome", "error") for t in tricklers)), "unfinished": len(pending),
            "per_connection": tricklers, "load_again": reload}  # fmt: skip


async def deep_nesting(client: httpx.AsyncClient, model: str) -> dict:
    """A V2 infer body whose text BYTES data is one string inside NESTING lists."""
    data = "[" * NESTING + '"three"' + "]" * NESTING
    body = '{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":' + data + "}]}"
    answer = await client.post(f"/v2/models/{model}/infer", content=body,
                               headers={"Content-Type": "application/json"})  # fmt: skip
    say(f"  V2 infer, data nesting {NESTING} lists: {answer.status_code} {answer.text[:120]}")
    return {"nesting": NESTING, "status": answer.status_code, "answer": answer.text[:300]}


async def foreign_origin_unload(server: ServerProcess, model: str) -> dict:
    """A keyless unload carrying a foreign Origin (explicit model control, loopback, no admin key), then an embed."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0, trust_env=False) as client:
        unload = await client.post(f"/v2/repository/models/{model}/unload", headers={"Origin": EVIL_ORIGIN})
        embed = await client.post(f"/v1/models/{model}/embed", json=TEXT)
    say(f"  unload with Origin {EVIL_ORIGIN}, no admin key: {unload.status_code}; embed after: {embed.status_code}")
    return {"origin": EVIL_ORIGIN, "unload_status": unload.status_code, "unload_answer": unload.text[:300],
            "embed_after_status": embed.status_code}  # fmt: skip
