"""An encoder named by its Hugging Face model id is read from the local Hugging Face cache, offline:
the config holds the cached snapshot's directory, and an id that is not cached is refused naming the cache."""

from __future__ import annotations

import shutil

import pytest
from huggingface_hub import constants

from tests.integration.test_text_encoders import tiny_encoder
from training.config import load_config
from training.errors import ConfigError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache holding acme/tiny-bert at one commit, in the layout `hf download` writes."""
    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-bert"
    shutil.copytree(tiny_encoder(tmp_path / "tiny-bert", "bert"), repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_a_cached_model_id_names_its_snapshot(hub_cache):
    config = load_config("default", text_encoder="acme/tiny-bert")
    assert config.text_encoder == str(hub_cache / "models--acme--tiny-bert" / "snapshots" / COMMIT)


def test_an_id_not_in_the_cache_is_refused_naming_the_cache(hub_cache):
    with pytest.raises(ConfigError) as refused:
        load_config("default", image_encoder="acme/not-downloaded")
    message = str(refused.value)
    assert "image_encoder: acme/not-downloaded is neither a directory nor a model in the Hugging Face cache" in message
    assert str(hub_cache) in message and "nothing is downloaded" in message
