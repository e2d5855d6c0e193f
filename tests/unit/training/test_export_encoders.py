"""ONNX export of each encoder (real backbone + projection): ORT matches torch on other batch sizes and
lengths than the export example, the manifest specs are right, and audio stays batch-invariant in ORT."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from training.export_encoders import ParityError, export_encoder, ort_session  # noqa: E402
from training.model.backbones import build_encoder  # noqa: E402

torch.set_num_threads(1)


def _masked(lengths: list[int]) -> torch.Tensor:
    mask = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return mask


def text_inputs(lengths: list[int], seed: int = 0):
    """Random token ids, [CLS] first, padded with id 0 / mask 0 like the server."""
    g = torch.Generator().manual_seed(seed)
    mask = _masked(lengths).long()
    ids = torch.randint(1000, 20000, mask.shape, generator=g) * mask
    ids[:, 0] = 101
    return ids, mask


def audio_inputs(lengths: list[int], seed: int = 0):
    """Random log-mels padded with zeros / mask 0 like the server."""
    g = torch.Generator().manual_seed(seed)
    mask = _masked(lengths)
    return torch.randn(len(lengths), 80, max(lengths), generator=g) * mask[:, None], mask


def image_inputs(batch: int, seed: int = 0):
    return (torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(seed)),)


CASES = {  # modality → (export example, [check inputs: batch 1 and 3, other lengths, padding])
    "image": (image_inputs(2), [image_inputs(1, 1), image_inputs(3, 2)]),
    "text": (
        text_inputs([9, 5]),
        [text_inputs([4], 1), text_inputs([17, 3, 11], 2), text_inputs([6] * 3, 3)],
    ),
    "audio": (audio_inputs([160, 97]), [audio_inputs([57], 1), audio_inputs([301, 100, 1], 2)]),
}
EXPECTED_INPUTS = {
    "image": [("pixel_values", "float32", ["batch", 3, 224, 224])],
    "text": [
        ("input_ids", "int64", ["batch", "sequence"]),
        ("attention_mask", "int64", ["batch", "sequence"]),
    ],
    "audio": [
        ("input_features", "float32", ["batch", 80, "frames"]),
        ("frame_mask", "float32", ["batch", "frames"]),
    ],
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export each encoder once; tests share the files."""
    out = tmp_path_factory.mktemp("onnx")
    results = {}
    for modality, (example, checks) in CASES.items():
        torch.manual_seed(0)  # the projection is freshly initialised
        encoder = build_encoder(modality, dim=256).eval()
        results[modality] = (
            encoder,
            export_encoder(encoder, modality, out / f"{modality}.onnx", example, checks),
        )
    return results


@pytest.mark.parametrize("modality", ["image", "text", "audio"])
def test_ort_matches_torch_on_dynamic_shapes(exported, modality):
    _, result = exported[modality]
    assert result.max_abs_diff <= 1e-4
    assert result.path.exists() and result.size_bytes == result.path.stat().st_size
    got = [(s.name, s.dtype, s.shape) for s in result.inputs]
    assert got == EXPECTED_INPUTS[modality]
    assert [(s.name, s.dtype, s.shape) for s in result.outputs] == [("embedding", "float32", ["batch", 256])]
    session = ort_session(result.path)
    assert [i.name for i in session.get_inputs()] == [name for name, _, _ in EXPECTED_INPUTS[modality]]


def test_audio_onnx_batch_invariant(exported):
    encoder, result = exported["audio"]
    session = ort_session(result.path)
    lengths = [600, 311, 64, 30]
    x, mask = audio_inputs(lengths, seed=4)
    x = x + torch.randn(x.shape) * (1 - mask[:, None])  # garbage in padding must not matter either
    (batched,) = session.run(None, {"input_features": x.numpy(), "frame_mask": mask.numpy()})
    alone = []
    for i, n in enumerate(lengths):
        feeds = {"input_features": x[i : i + 1, :, :n].numpy(), "frame_mask": np.ones((1, n), np.float32)}
        alone.append(session.run(None, feeds)[0])
    assert np.abs(batched - np.concatenate(alone)).max() <= 1e-5
    with torch.no_grad():
        assert np.abs(batched - encoder(x, mask).numpy()).max() <= 1e-4


def test_parity_failure_raises(tmp_path):
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 8)).eval()
    example = (torch.randn(2, 3, 4, 4),)
    result = export_encoder(module, "image", tmp_path / "ok.onnx", example)
    assert result.inputs[0].shape == ["batch", 3, 4, 4] and result.outputs[0].shape == ["batch", 8]
    with pytest.raises(ParityError):
        export_encoder(module, "image", tmp_path / "bad.onnx", example, tolerance=-1.0)
    with pytest.raises(ValueError, match="modality"):
        export_encoder(module, "video", tmp_path / "x.onnx", example)
