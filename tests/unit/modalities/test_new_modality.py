"""Adding a modality is one module: a made-up fourth one ("depth", a row of 8-bit depth samples), registered
in a test-local copy of the registry, goes through the generic code paths (preprocessing, the KServe V2 rows,
collation and the encoder's feeds, item length, the batch policy, warm-up) without an edit to any of them.

Only its bundle side is faked: a real modality also needs its encoder and preprocessing spec in the manifest
schema (service/manifest.py) and in the trainer (docs/architecture.md "Adding a modality")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from service import manifest as schema
from service.engine.components import EncoderComponent, item_length
from service.engine.pipeline import policy_for
from service.engine.warmup import largest_batches
from service.errors import InvalidInput
from service.frontend.api.inputs import input_item_model
from service.frontend.api.v2.core import InferRequest, Tensor, raw_items
from service.items import PreparedItem, RawItem
from service.manifest import EncoderSpec, Strict, TensorSpec
from service.modalities import registry
from service.modalities.spec import Item, ModalitySpec, PartNames, as_tuples
from service.preprocess.batch import collate
from service.preprocess.padding import pad_stack
from service.preprocess.prepare import prepare_item
from service.settings import Settings


class DepthPreprocess(Strict):
    scale: float = 1 / 255


class DepthEncoder(EncoderSpec):
    preprocess: DepthPreprocess = DepthPreprocess()


class DepthModality(ModalitySpec):
    """What the new module would hold: its part names, decode and limit, collation, cost, budget, warm-up."""

    name = "depth"
    parts = PartNames(v1="depth", v2="depth", openai=None)
    encoded_file = True
    accepted_formats = ("raw 8-bit depth",)
    encoder_class = DepthEncoder
    preprocess_class = DepthPreprocess
    limit_setting = "max_field_bytes"  # read by ModalitySpec.limit

    def decode(self, value, preprocess, settings, field, tokenizer=None) -> np.ndarray:
        if len(value) > self.limit(preprocess, settings):
            raise InvalidInput(f"{field} is over {self.limit(preprocess, settings)} samples", field)
        return np.frombuffer(value, np.uint8).astype(np.float32) * preprocess.scale  # [L]

    def collate(self, items: Sequence[Item], pad_multiple: int = 1) -> tuple[np.ndarray, ...]:
        rows = [item[0] for item in as_tuples(items)]
        return (pad_stack(rows, max(len(row) for row in rows)),)  # [B,L]

    def item_length(self, item, preprocess) -> int:
        return len(item)

    def budget(self, settings) -> int:
        return 10  # samples per batch

    def warmup_input(self, preprocess, length, tokenizer=None) -> np.ndarray:
        return np.zeros(4 if length is None else length, np.float32)

    def longest_length(self, preprocess, settings) -> int:
        return 4


ENCODER = DepthEncoder(
    file="depth.onnx",
    inputs=[TensorSpec(name="depth", dtype="float32", shape=["batch", "length"])],
    outputs=[TensorSpec(name="embedding", dtype="float32", shape=["batch", 8])],
)


@dataclass
class DepthOnlyManifest:
    """What the generic code asks of a bundle's manifest, for a bundle with only the new modality's encoder."""

    name: str = "depthy"

    def modalities(self) -> list[str]:
        return ["depth"]

    def encoder(self, modality: str) -> EncoderSpec | None:
        return ENCODER if modality == "depth" else None


@pytest.fixture(autouse=True)
def depth_registered(monkeypatch):
    """The registry with the new module's spec added, and its name in the one list of names."""
    monkeypatch.setattr(registry, "MODALITIES", {**registry.MODALITIES, "depth": DepthModality()})
    monkeypatch.setattr(schema, "MODALITIES", (*schema.MODALITIES, "depth"))


def test_a_request_item_of_the_new_modality_is_prepared():
    raw = RawItem(depth=bytes([0, 255, 51]), prefix="inputs[0].")
    assert raw.modalities() == ["depth"]
    prepared = prepare_item(raw, DepthOnlyManifest(), None, Settings())
    assert prepared.modalities == ["depth"]
    np.testing.assert_allclose(prepared.arrays["depth"], [0.0, 1.0, 0.2])
    with pytest.raises(InvalidInput) as refused:
        prepare_item(RawItem(depth=bytes(20), prefix="inputs[0]."), DepthOnlyManifest(), None,
                     Settings(max_field_bytes=16))  # fmt: skip
    assert refused.value.field == "inputs[0].depth"
    with pytest.raises(InvalidInput, match="has no image encoder"):
        prepare_item(RawItem(image=b"x"), DepthOnlyManifest(), None, Settings())


def test_the_protocols_take_it_by_its_part_names():
    assert "depth" in input_item_model().model_fields  # v1 JSON
    request = InferRequest([Tensor("depth", "BYTES", [2], [bytes([1, 2]), b""])])
    with pytest.raises(InvalidInput, match="no input"):  # row 1 is empty
        raw_items(request, DepthOnlyManifest(), limit=4)
    request.inputs[0].data[1] = bytes([3])
    assert [item.depth for item in raw_items(request, DepthOnlyManifest(), limit=4)] == [bytes([1, 2]), bytes([3])]


def test_it_is_batched_by_its_own_collation_cost_and_budget():
    items = [np.ones(3, np.float32), np.ones(5, np.float32)]
    (batch,) = collate("depth", items)
    assert batch.shape == (2, 5) and batch[0, 3:].tolist() == [0.0, 0.0]
    feeds = EncoderComponent("depth", None, ENCODER).feeds(items)  # the engine's ONNX feeds
    assert list(feeds) == ["depth"] and feeds["depth"].shape == (2, 5)
    assert [item_length("depth", item, ENCODER) for item in items] == [3, 5]
    assert policy_for("depth", Settings()).budget == 10
    assert policy_for("fusion", Settings()).budget is None


def test_warmup_runs_its_largest_batch():
    bundle = type("Bundle", (), {"manifest": DepthOnlyManifest(), "tokenizer": None})()
    (batch,) = largest_batches(bundle, Settings(max_batch_size=8))
    assert len(batch) == 2  # 2 x 4 samples fit the budget of 10, 3 x 4 do not
    assert all(isinstance(item, PreparedItem) and item.modalities == ["depth"] for item in batch)
