"""Images to the engine as uint8 (docs/bundle-format.md): an image encoder whose manifest says
`normalise: "graph"` takes the pixels and normalises them itself. The server then hands it a quarter of the
bytes, and answers as the same weights with server-side normalisation do; the manifest refuses a pixel type
that does not fit the declared normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from service.engine.bundle import load_bundle
from service.engine.pipeline import run_direct
from service.items import RawItem
from service.manifest import read_manifest
from service.preprocess.prepare import prepare_item
from tests.bundles import build_bundle, sample_inputs
from tests.integration.conftest import fast_settings, serving
from tests.unit.preprocess.image_helpers import encode
from tests.unit.preprocess.test_image_single_pass import photo


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    build_bundle(root, "floats", "1")
    build_bundle(root, "pixels", "1", image_normalise="graph")  # the same seed: the same weights
    return root


def answers(models, name: str, raws: list[RawItem]):
    settings = fast_settings(models)
    bundle = load_bundle(models / name / "1", settings)  # golden replay included
    items = [prepare_item(raw, bundle.manifest, bundle.tokenizer, settings) for raw in raws]
    return items, run_direct(bundle.encoders, bundle.fusion, items)


def test_uint8_pixels_answer_as_server_side_normalisation_does(models):
    raws = [RawItem(**sample_inputs(seed)) for seed in (1, 2)]
    raws.append(RawItem(image=encode(photo((640, 480)), "JPEG", quality=90)))
    float_items, float_answers = answers(models, "floats", raws)
    pixel_items, pixel_answers = answers(models, "pixels", raws)
    for floats, pixels in zip(float_items, pixel_items, strict=True):
        assert floats.arrays["image"].dtype == np.float32 and pixels.arrays["image"].dtype == np.uint8
        assert pixels.arrays["image"].nbytes * 4 == floats.arrays["image"].nbytes
    for a, b in zip(float_answers, pixel_answers, strict=True):
        np.testing.assert_allclose(b.probabilities, a.probabilities, atol=1e-6)
        np.testing.assert_allclose(b.fused, a.fused, atol=1e-6)
        np.testing.assert_allclose(b.embeddings["image"], a.embeddings["image"], atol=1e-6)


async def test_a_graph_normalising_bundle_serves_over_http(models):
    async with serving(fast_settings(models)) as (_, client):
        image = encode(photo((480, 640)), "JPEG")
        files = {"image": ("photo.jpg", image, "image/jpeg")}
        floats = await client.post("/v1/models/floats/embed", files=files)
        pixels = await client.post("/v1/models/pixels/embed", files=files)
    assert floats.status_code == pixels.status_code == 200, pixels.text
    np.testing.assert_allclose(pixels.json()["results"][0]["fused"], floats.json()["results"][0]["fused"], atol=1e-6)


def test_the_manifest_refuses_pixels_that_do_not_fit_the_normalisation(models):
    manifest = read_manifest(models / "pixels" / "1" / "manifest.json").model_dump()
    manifest["encoders"]["image"]["preprocess"]["normalise"] = "server"  # uint8 input, but floats promised
    with pytest.raises(ValidationError, match="preprocess.normalise 'graph' takes uint8 pixels"):
        type(read_manifest(models / "pixels" / "1" / "manifest.json")).model_validate(manifest)
