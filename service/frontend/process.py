"""Running the HTTP app under uvicorn with the draining shutdown (service/frontend/drain.py): the one process of today's
mode (`fusionserve serve`), or one front-end process of multi-process mode (service/supervisor/supervisor.py), which
serves on the listening socket the supervisor bound and hands its items to the engines."""

from __future__ import annotations

import signal
import socket

import uvicorn

from service import logs
from service.frontend.api.request_id import RequestIdMiddleware
from service.frontend.app import create_app
from service.frontend.drain import DrainingServer, DrainMiddleware
from service.settings import Settings, load_settings


def configure_logging(settings: Settings, role: str = "server") -> None:
    """This process's logging (service/logs.py): `serve` calls it for the one process or the supervisor."""
    logs.configure_logging(settings, role)


def uvicorn_config(app, settings: Settings) -> uvicorn.Config:
    """uvicorn for `app` (create_app's) behind the draining middleware. limit_concurrency caps the open
    connections and requests: past it uvicorn answers 503 at once, so however many clients connect (or
    trickle a body, each cut at its deadline: api/body.py), a process holds a bounded number of them."""
    drain = DrainMiddleware(
        app,
        lambda: app.state.context.draining,
        settings.max_upload_bytes,
        app.state.context.plane,
        body_timeout_s=settings.default_deadline_ms / 1000,
    )
    # The request id outside the drain too, so its 503s carry it; the app's own instance then passes through.
    # uvicorn's access log stays off (ours names the request id and model) and so does its log config (ours).
    return uvicorn.Config(
        RequestIdMiddleware(drain, access_log=settings.access_log),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,
        limit_concurrency=settings.max_connections,
    )


def run_http(settings: Settings, engines: list[str] | None = None, front_ends: int = 1,
             listener: socket.socket | None = None) -> None:  # fmt: skip
    """Serve until SIGTERM / SIGINT, then drain: on settings.host:port, or on `listener` when given."""
    app = create_app(settings, engines, front_ends)
    config = uvicorn_config(app, settings)
    # uvicorn re-raises the stop signal after its graceful shutdown, which would end the process with
    # -SIGTERM; a drained server should exit 0, so the handler it restores and re-raises into is a no-op.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    server = DrainingServer(config, app.state.context, settings.drain_grace_s, settings.drain_timeout_s)
    server.run(sockets=[listener] if listener is not None else None)


def run_front_end(overrides: dict, listener: socket.socket, engines: list[str], front_ends: int) -> None:
    """A supervised front-end process's entry point. SIGTERM (the supervisor's) or SIGINT (Ctrl-C reaches the
    whole process group) drains it while the engines still run: the supervisor stops them only afterwards."""
    settings = load_settings(**overrides)
    configure_logging(settings, "front-end")
    run_http(settings, engines, front_ends, listener)
