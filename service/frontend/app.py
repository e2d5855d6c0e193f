"""create_app(settings) and its lifespan: load → warm up → ready; drain on shutdown.

Models load in a background task so /healthz answers at once and /readyz says 503 until every
configured model is loaded, verified and warm (Kubernetes startupProbe friendly).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import tracing
from service.frontend.api.body import BodyLimitMiddleware
from service.frontend.api.door import DoorMiddleware
from service.frontend.api.errors import install_error_handlers
from service.frontend.api.middleware import ApiKeyMiddleware
from service.frontend.api.model_control import ModelControlMiddleware
from service.frontend.api.openai_embeddings import router as openai_router
from service.frontend.api.pages import declare_api_key
from service.frontend.api.pages import router as pages_router
from service.frontend.api.refusals import ERROR_SHAPES
from service.frontend.api.repository import router as repository_router
from service.frontend.api.request_id import RequestIdMiddleware
from service.frontend.api.rerank import router as rerank_router
from service.frontend.api.routes import router
from service.frontend.api.v2 import grpc_server
from service.frontend.api.v2.rest import router as v2_router
from service.frontend.api.zero_shot import router as zero_shot_router
from service.frontend.context import ServerContext
from service.settings import Settings
from service.threads import lower_priority
from service.tracing import asgi as tracing_asgi

log = logging.getLogger("fusionserve")


@asynccontextmanager
async def lifespan(app: FastAPI):
    context: ServerContext = app.state.context
    # KServe V2 gRPC when FUSIONSERVE_GRPC_PORT is set; first, so a port in use fails the start at once
    context.grpc_server = await grpc_server.start(context.plane, reuse_port=context.reuse_port)
    context.preprocess_pool = ThreadPoolExecutor(
        context.settings.preprocess_threads, thread_name_prefix="preprocess", initializer=lower_priority,
        initargs=(context.settings.compute_nice,),  # decoding yields to the event loop too
    )  # fmt: skip
    context.plane.preprocess_pool = context.preprocess_pool
    await context.start_models()
    try:
        yield
    finally:
        context.draining = True  # /readyz → 503 while queued work finishes
        # new RPCs → UNAVAILABLE; those in flight finish while the batchers still run
        await grpc_server.stop(context.grpc_server, context.settings.drain_timeout_s)
        await context.stop_models()
        context.preprocess_pool.shutdown(wait=True)
        log.info("drained; bye")


def create_app(settings: Settings | None = None, engines: list[str] | None = None, front_ends: int = 1) -> FastAPI:
    """The app of one process, or (`engines`: their endpoints) of one of `front_ends` front-end processes."""
    settings = settings or Settings()
    tracing.configure("frontend" if engines else "server")  # from the OTEL_* environment; off without an endpoint
    app = FastAPI(
        telemetry=tracing_asgi.telemetry(),  # FastAPI's own request spans, when tracing is on
        title="fusionserve",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc from local assets: service/frontend/api/pages.py
        redoc_url=None,
        description="Fused image + text + audio inference: classifications and joint-space embeddings.",
    )
    app.state.context = context = ServerContext.build(settings, engines, front_ends)
    shapes = ERROR_SHAPES  # each protocol's error body, by path
    install_error_handlers(app, shapes)
    app.include_router(router)
    app.include_router(v2_router)
    app.include_router(openai_router)
    app.include_router(rerank_router)  # /v1/rerank, /v2/rerank, /v1/score
    app.include_router(zero_shot_router)
    app.include_router(pages_router)
    app.include_router(repository_router)
    # innermost of ours: a body's bytes are reserved (api/body.py) only once the door has let it by, so a
    # connection the door holds until its Retry-After holds no share of the body budget
    app.add_middleware(BodyLimitMiddleware, plane=context.plane, error_shapes=shapes)
    app.add_middleware(DoorMiddleware, plane=context.plane, error_shapes=shapes)
    if settings.api_key is not None:
        declare_api_key(app)  # Swagger UI's "Authorize" sends it
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key.get_secret_value(), error_shapes=shapes)
    app.add_middleware(ModelControlMiddleware, settings=settings, error_shapes=shapes)  # load/unload: outermost
    if tracing.ENABLED:  # off: no middleware at all
        app.add_middleware(tracing_asgi.RequestSpanMiddleware)  # inside RequestIdMiddleware: reads the id it sets
    app.add_middleware(RequestIdMiddleware)  # every answer, refusals included, carries X-Request-Id
    return app
