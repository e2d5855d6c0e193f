"""`--quantize int8` per encoder family: each family's exported encoder, quantised as export does it
(MatMul weights int8, per channel; convolutions stay fp32), gives embeddings within cosine 0.999 of the fp32
graph on a padded batch. Tiny random-initialised models built offline from their configs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from tests.integration.test_audio_encoders import WAVEFORM_FAMILIES, tiny_waveform_encoder, tiny_whisper
from tests.integration.test_image_encoders import FAMILIES, tiny_vision_encoder
from tests.integration.test_text_encoders import tiny_encoder
from training.encoders import image_preprocess
from training.export_encoders import export_encoder, ort_session
from training.model.backbones import build_encoder
from training.quantize import quantize_graph

TEXT, IMAGE, AUDIO = ("bert", "distilbert"), tuple(sorted(FAMILIES)), ("whisper", *WAVEFORM_FAMILIES)


def masked(lengths: list[int], channels: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Audio inputs padded as the server pads: [B,channels,T] (zeros past each length), mask [B,T]."""
    mask = (torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]).float()
    return torch.randn(len(lengths), channels, max(lengths), generator=generator) * mask[:, None], mask


def family_inputs(tmp_path, family: str) -> tuple[str, dict, tuple[torch.Tensor, ...]]:
    """(modality, build_encoder's choices, a padded batch of 3) for a tiny model of `family`."""
    generator = torch.Generator().manual_seed(0)
    if family in TEXT:
        mask = (torch.arange(12)[None] < torch.tensor([[12], [7], [9]])).long()
        ids = torch.randint(5, 20, (3, 12), generator=generator) * mask  # within the tiny vocabulary
        return "text", {"text": (str(tiny_encoder(tmp_path / family, family)), "mean")}, (ids, mask)
    if family in IMAGE:
        directory = str(tiny_vision_encoder(tmp_path / family, family))
        size = image_preprocess(directory).size
        return "image", {"image_encoder": directory}, (torch.randn(3, 3, size, size, generator=generator),)
    if family == "whisper":
        return "audio", {"audio_encoder": str(tiny_whisper(tmp_path / family))}, masked([300, 180, 240], 80, generator)
    directory = str(tiny_waveform_encoder(tmp_path / family, family))
    return "audio", {"audio_encoder": directory}, masked([16_000, 9_000, 12_000], 1, generator)


@pytest.mark.parametrize("family", [*TEXT, *IMAGE, *AUDIO])
def test_int8_keeps_each_familys_embeddings(tmp_path, family):
    modality, choices, inputs = family_inputs(tmp_path, family)
    torch.manual_seed(0)
    encoder = build_encoder(modality, dim=32, **choices).eval()
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    export_encoder(encoder, modality, fp32, inputs)
    quantize_graph(fp32, int8)
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert "DynamicQuantizeLinear" in ops and "ConvInteger" not in ops  # MatMuls quantised, convolutions not
    feeds = {i.name: t.numpy() for i, t in zip(ort_session(fp32).get_inputs(), inputs, strict=True)}
    a, b = ort_session(fp32).run(None, feeds)[0], ort_session(int8).run(None, feeds)[0]  # [3,32] each
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.999, cosine
