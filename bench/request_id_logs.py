"""CPU cost per request of the request-id layer with the access log off, on in text and on in JSON (logs written
to /dev/null through the handler service/logs.py configures), interleaved rounds in one run so the machine's load
falls on all three alike. The app under it answers at once, so the figure is the layer's own cost.

    .venv/bin/python bench/request_id_logs.py [--requests 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time
from types import SimpleNamespace

from service import logs
from service.frontend.api.request_id import RequestIdMiddleware

BODY = b'{"label":"cat","probabilities":[0.9,0.1]}'


async def app(scope, receive, send) -> None:
    scope["path_params"] = {"model": "tiny"}
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})


async def run(layer, requests: int) -> float:
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    start = time.process_time()
    for _ in range(requests):
        scope = {"type": "http", "method": "POST", "path": "/v1/models/tiny/classify", "query_string": b"",
                 "headers": [(b"x-request-id", b"bench-1")], "client": ("127.0.0.1", 5000)}  # fmt: skip
        await layer(scope, receive, send)
    return (time.process_time() - start) / requests * 1e6


def configure(log_format: str) -> None:
    logs.configure_logging(SimpleNamespace(log_format=log_format, log_level="info"), "bench")
    logging.getLogger().handlers[0].stream = open(os.devnull, "w")  # noqa: SIM115 — lives for the run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cases = {"no id layer": (app, "text"), "id, access log off": (RequestIdMiddleware(app), "text"),
             "id, access log text": (RequestIdMiddleware(app, access_log=True), "text"),
             "id, access log json": (RequestIdMiddleware(app, access_log=True), "json")}  # fmt: skip
    got = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (layer, log_format) in cases.items():
            configure(log_format)
            got[name].append(asyncio.run(run(layer, args.requests)))
    base = statistics.median(got["no id layer"])
    for name, values in got.items():
        median = statistics.median(values)
        print(f"{name:22s} {median:7.2f} µs CPU/request  (+{median - base:6.2f} over no layer)")


if __name__ == "__main__":
    main()
