"""CTranslate2 reader: the real packaged Whisper tiny.en file, and a synthetic file for every dtype."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from training.model.ct2_reader import (
    packaged_whisper_path,
    read_ct2,
    whisper_dims,
    whisper_encoder_state_dict,
)


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _write_ct2(path, variables: dict[str, tuple[int, np.ndarray]], aliases: dict[str, str]) -> None:
    """Minimal writer of the same layout (name → (ct2 dtype id, array))."""
    out = [struct.pack("<I", 6), _string("TestSpec"), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, (dtype_id, arr) in variables.items():
        out += [_string(name), struct.pack("<B", arr.ndim), struct.pack(f"<{arr.ndim}I", *arr.shape)]
        out += [struct.pack("<BI", dtype_id, arr.nbytes), arr.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    path.write_bytes(b"".join(out))


@pytest.fixture(scope="module")
def ct2():
    return read_ct2(packaged_whisper_path())


def test_real_file_header_and_dims(ct2):
    assert ct2.spec == "WhisperSpec"
    dims = whisper_dims(ct2)
    assert (dims.d_model, dims.n_layers, dims.n_heads, dims.n_mels) == (384, 4, 6, 80)
    assert (dims.n_ctx, dims.ffn_dim) == (1500, 1536)
    assert ct2.get("encoder/conv1/weight").dtype == np.float32  # fp16 on disk, widened


def test_real_file_mapping_complete(ct2):
    from training.model.whisper_encoder import WhisperAudioEncoder

    expected = list(WhisperAudioEncoder(whisper_dims(ct2)).state_dict())
    state, missing, extra = whisper_encoder_state_dict(ct2, expected)
    assert missing == [] and extra == []
    n_params = sum(a.size for a in state.values())
    assert n_params == 8_208_384  # 8.21 M, incl. the 1500 x 384 position table
    q = state["layers.2.self_attn.q_proj.weight"]
    assert np.array_equal(q, ct2.get("encoder/layer_2/self_attention/linear_0/weight")[:384])


def test_k_bias_is_zero_so_dropping_it_is_exact(ct2):
    for i in range(4):
        bias = ct2.get(f"encoder/layer_{i}/self_attention/linear_0/bias")
        assert bias.shape == (1152,) and not bias[384:768].any()


def test_fp16_kept_when_asked():
    model = read_ct2(packaged_whisper_path(), float32=False)
    assert model.get("encoder/conv1/weight").dtype == np.float16
    assert int(model.get("encoder/num_heads")) == 6


def test_synthetic_file_all_dtypes_and_aliases(tmp_path):
    f32 = np.arange(6, dtype=np.float32).reshape(2, 3)
    bf16 = (np.array([1.5, -2.0], dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
    variables = {
        "a/f32": (0, f32),
        "a/i8": (1, np.array([-1, 2], dtype=np.int8)),
        "a/i16": (2, np.array(7, dtype=np.int16)),
        "a/i32": (3, np.array([1, 2, 3], dtype=np.int32)),
        "a/f16": (4, np.array([0.5, 3.0], dtype=np.float16)),
        "a/bf16": (5, bf16),
    }
    path = tmp_path / "model.bin"
    _write_ct2(path, variables, {"b/alias": "a/f32"})
    model = read_ct2(path)
    assert (model.spec, model.binary_version, model.revision) == ("TestSpec", 6, 3)
    np.testing.assert_array_equal(model.get("b/alias"), f32)
    np.testing.assert_array_equal(model.get("a/bf16"), [1.5, -2.0])
    np.testing.assert_array_equal(model.get("a/f16"), [0.5, 3.0])
    assert model.get("a/f16").dtype == np.float32 and model.get("a/i8").dtype == np.int8
    assert model.get("a/i16").shape == () and int(model.get("a/i16")) == 7


def test_truncated_file_rejected(tmp_path):
    path = tmp_path / "model.bin"
    _write_ct2(path, {"x": (0, np.ones(4, np.float32))}, {})
    path.write_bytes(path.read_bytes() + b"\0\0")
    with pytest.raises(ValueError, match="trailing bytes"):
        read_ct2(path)


def test_unknown_variables_reported_as_extra(ct2):
    ct2.variables["encoder/mystery/weight"] = np.zeros(1, np.float32)
    try:
        _, missing, extra = whisper_encoder_state_dict(ct2, ["conv1.weight", "nonexistent.weight"])
    finally:
        del ct2.variables["encoder/mystery/weight"]
    assert missing == ["nonexistent.weight"]
    assert "encoder/mystery/weight" in extra and "conv2.weight" in extra
