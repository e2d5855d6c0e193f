"""Peer 1, the baseline: what a user writes in 30 lines. FastAPI + uvicorn, one onnxruntime session per
graph, no batching: each request runs in Starlette's thread pool (a sync endpoint) and calls the model on
its own one item. Run by bench/peers/launch.py in its own venv ($BENCH_VENVS/fastapi)."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI
from peer_common import Model, parse_args
from pydantic import BaseModel


class Item(BaseModel):
    text: str | None = None
    image: str | None = None  # base64


class Request(BaseModel):
    inputs: list[Item]


def build(model: Model) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    @app.post("/v1/classify")
    def classify(request: Request) -> dict:  # sync: FastAPI runs it in its worker thread pool
        prepared = [model.prepare(item.model_dump()) for item in request.inputs]
        return {"results": [model.respond(p) for p in model.predict_mixed(prepared)]}

    return app


if __name__ == "__main__":
    args = parse_args(__doc__.splitlines()[0])
    app = build(Model(args.bundle, args.threads))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
