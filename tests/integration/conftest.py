"""The real app (real lifespan, real onnxruntime) on small bundles built by tests/bundles.py."""

from __future__ import annotations

import asyncio
import shutil
import threading
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from service.frontend.app import create_app
from service.settings import Settings
from tests.bundles import build_bundle
from tests.integration.live import ThreadedServer


def fast_settings(model_dir: Path, **overrides) -> Settings:
    """Settings for tests: short batching window, one warm-up size, few threads."""
    values = dict(
        model_dir=model_dir,
        max_queue_delay_ms=2.0,
        warmup_batch_sizes=[1],
        intra_op_threads=1,
        providers="cpu",
        default_deadline_ms=20_000,
    )
    values.update(overrides)
    return Settings(**values)


async def wait_ready(app, timeout: float = 30.0) -> None:
    loader = app.state.context.backend.loader
    await asyncio.wait_for(asyncio.shield(loader), timeout)


@asynccontextmanager
async def serving(settings: Settings, wait: bool = True):
    """Yield (app, client) with the lifespan running; the app drains when the block ends."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        if wait:
            await wait_ready(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fusionserve", timeout=60) as client:
            yield app, client


@pytest.fixture(scope="module")
def live(tiny_models):
    """A real uvicorn server on loopback serving the tiny bundles, one per test module; a module that needs
    other settings defines its own `live`."""
    with ThreadedServer(fast_settings(tiny_models)) as server:
        yield server


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """models/tiny/1 with image, text and audio encoders (built once per session, read-only)."""
    root = tmp_path_factory.mktemp("models")
    build_bundle(root, "tiny", "1")
    return root


@pytest.fixture
def models_copy(tiny_models: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model tree that a test may tamper with."""
    target = tmp_path / "models"
    shutil.copytree(tiny_models, target)
    return target


@pytest.fixture
async def client(tiny_models: Path):
    async with serving(fast_settings(tiny_models)) as (_, client):
        yield client


@pytest.fixture
async def app_client(tiny_models: Path):
    async with serving(fast_settings(tiny_models)) as pair:
        yield pair


class Gate:
    """Holds one component's ORT calls until released, and records what reached ORT."""

    def __init__(self, app, component: str, model: str = "tiny"):
        state = app.state.context.registry.get(model)
        self.target = state.pipeline.encoders.get(component) or state.pipeline.fusion
        self.original = self.target.model.run
        self.opened, self.calls = threading.Event(), []
        self.entered = threading.Event()

    def __enter__(self):
        def gated_run(feeds):
            self.calls.append({name: array.copy() for name, array in feeds.items()})
            self.entered.set()
            self.opened.wait(30)
            return self.original(feeds)

        self.target.model.run = gated_run
        return self

    def open(self) -> None:
        self.opened.set()

    def __exit__(self, *exc) -> None:
        self.opened.set()
        self.target.model.run = self.original


def metric(app, name: str, **labels) -> float:
    value = app.state.context.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def form(**fields: str) -> dict:
    """httpx kwargs for a multipart body of plain fields (httpx sends `data=` alone as urlencoded)."""
    return {"files": {name: (None, value) for name, value in fields.items()}}
