"""The local backend's lookup of the version a call runs on: a late holder of an unloaded version gets the
unload's 503, but only until that version is loaded again (then the ordinary lookup answers)."""

from __future__ import annotations

import pytest

from service.engine.local import LocalBackend
from service.errors import NotFound, NotReady
from service.metrics import Metrics
from service.models import ModelEntry, VersionState
from service.settings import Settings


async def test_an_unloaded_version_answers_its_reason_until_it_loads_again(tmp_path):
    backend = LocalBackend(Settings(model_dir=tmp_path), Metrics())
    registry = backend.models
    registry.models["tiny"] = ModelEntry("tiny")
    registry.unloaded_versions[("tiny", "1")] = "model 'tiny' version '1' was unloaded (unload) while held"
    with pytest.raises(NotReady, match="was unloaded"):
        await backend.run("tiny", "1", [], deadline=0.0)
    state = registry.models["tiny"].versions["1"] = VersionState("1")
    await registry.load_version("tiny", tmp_path / "tiny" / "1", state)  # no bundle there: it fails
    assert state.status == "failed" and ("tiny", "1") not in registry.unloaded_versions
    with pytest.raises(NotFound, match="no servable version '1'"):
        await backend.run("tiny", "1", [], deadline=0.0)
