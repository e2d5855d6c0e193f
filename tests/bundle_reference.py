"""Independent numpy reference for the test bundles of tests/bundles.py: the same maths as the ONNX graphs of
tests/bundle_graphs.py (weights read back from the files), fed by the server's own preprocessing. Golden
examples, and the API tests' expected answers, come from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from service import preprocess
from service.items import RawItem, VideoArrays
from service.manifest import VIDEO_SLOTS, read_manifest
from service.modalities.video import VIDEO
from service.preprocess.video import decode_video
from service.preprocess.video_plan import VideoLimits
from service.settings import Settings
from tests import bundle_graphs as graphs

MAX_PIXELS = 1 << 24  # generous: the samples are tiny; the server's own limit is tested elsewhere


def preprocess_item(bundle_dir: Path, inputs: dict) -> dict:
    """Raw item → arrays with the server's preprocessing: image [3,S,S], text (ids, mask) [L],
    audio log-mel [n_mels, T], video VideoArrays (the bundle's segmentation). None values count as absent,
    as in GoldenInput."""
    manifest = read_manifest(Path(bundle_dir) / "manifest.json")
    present = {m: v for m, v in inputs.items() if v is not None}
    unknown = set(present) - set(manifest.modalities())
    if unknown or not present:
        raise ValueError(f"inputs {sorted(present)} do not fit bundle modalities {manifest.modalities()}")
    encoders, arrays = manifest.encoders, {}
    if "image" in present:
        spec = encoders.image.preprocess
        arrays["image"] = preprocess.decode_image(present["image"], spec, max_pixels=MAX_PIXELS)
    if "text" in present:
        spec = encoders.text.preprocess
        tokenizer = preprocess.load_tokenizer(Path(bundle_dir) / spec.tokenizer_file, spec)
        text = preprocess.decode_text(present["text"], max_chars=100_000)
        arrays["text"] = preprocess.encode_text(text, tokenizer, spec)
    if "audio" in present:
        spec = encoders.audio.preprocess
        arrays["audio"] = preprocess.decode_audio(present["audio"], spec, max_seconds=spec.max_seconds)
    if "video" in present:
        inputs = VIDEO.preprocess_of(manifest, RawItem(), None)
        arrays["video"] = decode_video(present["video"], inputs, VideoLimits.of(Settings(), inputs.video))
    return arrays


def reference_outputs(bundle_dir: Path, inputs: dict) -> dict:
    """Numpy (float64) outputs for one raw item {"image": png, "audio": wav, "text": str, "video": mp4}, any
    subset, as GoldenOutput's fields: probabilities [C], fused [D], embeddings and (bundles with heads)
    modality_probabilities per present slot, and a video's segments."""
    answer = reference_of_arrays(bundle_dir, preprocess_item(bundle_dir, inputs))
    keep = ("start_s", "end_s", "probabilities", "fused")
    return answer | {"segments": [{k: segment[k] for k in keep} for segment in answer["segments"]]}


def reference_of_arrays(bundle_dir: Path, arrays: dict) -> dict:
    """reference_outputs from prepared arrays (PreparedItem.arrays). A video's segments each carry start_s,
    end_s, probabilities, fused, embeddings and modality_probabilities of its video slots, and `slots`."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir / "manifest.json")
    weights = {m: _weights(bundle_dir / manifest.encoder(m).file) for m in manifest.modalities()}
    weights["fusion"] = _weights(bundle_dir / manifest.fusion.file)
    arrays = dict(arrays)
    if "image" in manifest.modalities() and manifest.encoders.image.preprocess.normalise == "graph":
        spec = manifest.encoders.image.preprocess
        arrays = {m: _normalised_input(m, a, spec) for m, a in arrays.items()}
    video = arrays.pop("video", None)
    others = {m: _ENCODERS[m](weights[m], a) for m, a in arrays.items()}  # slot → [D]
    segments = [] if video is None else _video_segments(weights, VideoArrays(*video))
    clip = _clip(segments)
    answer = _fused(weights["fusion"], manifest, others | clip)
    for segment in segments:
        fused = _fused(weights["fusion"], manifest, others | segment["embeddings"])
        heads = {
            s: fused["modality_probabilities"][s] for s in segment["embeddings"] if fused["modality_probabilities"]
        }
        segment |= {"probabilities": fused["probabilities"], "fused": fused["fused"], "modality_probabilities": heads}
        segment["embeddings"] = {s: e.tolist() for s, e in segment["embeddings"].items()}
    return answer | {"segments": segments}


def _normalised_input(modality: str, array, spec):
    """What an image encoder with normalise="graph" sees first: for an image, and for a video's frames."""
    if modality == "image":
        return _graph_normalised(array, spec)
    if modality == "video":
        video = VideoArrays(*array)
        frames = np.stack([_graph_normalised(f, spec) for f in video.frames]) if len(video.frames) else video.frames
        return video._replace(frames=frames)
    return array


def _video_segments(weights: dict, video: VideoArrays) -> list[dict]:
    """Each segment's bounds and video-slot embeddings: its frames through the image encoder then the pool,
    its sound (audio_length > 0) through the audio encoder."""
    segments = []
    for row, (start, end) in enumerate(video.bounds.tolist()):
        embeddings = {}
        frames = video.frames[video.frame_segment == row]  # [K,3,S,S]
        if len(frames):
            embeddings["video_frames"] = _pool(
                weights["video"], np.stack([_image(weights["image"], f) for f in frames])
            )
        length = int(video.audio_length[row])
        if length:
            embeddings["video_audio"] = _audio(weights["audio"], video.audio[row, :, :length])
        segments.append({"start_s": start, "end_s": end, "embeddings": embeddings, "slots": list(embeddings)})
    return segments


def _clip(segments: list[dict]) -> dict[str, np.ndarray]:
    """The whole clip's video slots: the L2-normalised mean over the segments that have the slot."""
    clip = {}
    for slot in VIDEO_SLOTS:
        rows = [s["embeddings"][slot] for s in segments if slot in s["embeddings"]]
        if rows:
            clip[slot] = _normalise(np.mean(rows, axis=0))
    return clip


def _fused(fusion_weights: dict, manifest, embeddings: dict[str, np.ndarray]) -> dict:
    logits, fused = _fusion(fusion_weights, manifest.fusion.modalities, embeddings, manifest.embedding_dim)
    heads = _heads(fusion_weights, embeddings) if manifest.fusion.has_modality_logits else {}
    return {
        "probabilities": _softmax(logits).tolist(),
        "fused": fused.tolist(),
        "embeddings": {m: e.tolist() for m, e in embeddings.items()},
        "modality_probabilities": {m: _softmax(h).tolist() for m, h in heads.items()},
    }


def _weights(path: Path) -> dict[str, np.ndarray]:
    """The initialisers of an ONNX file: the weights only, the graph's maths is re-done below."""
    graph = onnx.load(str(path)).graph
    return {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.linalg.norm(x)), graphs.EPS)


def _graph_normalised(pixels: np.ndarray, spec) -> np.ndarray:
    """What an image encoder with normalise="graph" does to its uint8 input first."""
    mean, std = (np.asarray(v, np.float64)[:, None, None] for v in (spec.mean, spec.std))
    return (pixels.astype(np.float64) - mean) / std


def _image(w: dict, pixels: np.ndarray) -> np.ndarray:
    pooled = pixels.astype(np.float64).mean(axis=(1, 2))  # [3]
    return _normalise(np.tanh(pooled @ w["image_w1"] + w["image_b1"]) @ w["image_w2"])


def _text(w: dict, arrays: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    ids, mask = arrays
    valid = ids[mask.astype(bool)]  # select real tokens instead of multiplying by the mask
    pooled = w["text_table"][valid].mean(axis=0) if len(valid) else np.zeros(w["text_w"].shape[0])
    return _normalise(pooled @ w["text_w"])


def _audio(w: dict, mel: np.ndarray) -> np.ndarray:
    pooled = mel.astype(np.float64).mean(axis=1)  # every frame of one unpadded item is real
    return _normalise(np.tanh(pooled @ w["audio_w1"]) @ w["audio_w2"])


def _pool(w: dict, frames: np.ndarray) -> np.ndarray:
    """Attention pooling of one segment's frame embeddings [K,D] (all real: no mask needed)."""
    scores = frames @ w["pool_attention"][:, 0]  # [K]
    weights = np.exp(scores - scores.max())
    return _normalise((weights / weights.sum()) @ frames @ w["pool_w"])


_ENCODERS = {"image": _image, "text": _text, "audio": _audio}


def _fusion(w: dict, modalities: list[str], embeddings: dict, dim: int) -> tuple[np.ndarray, np.ndarray]:
    slots = [embeddings.get(m, np.zeros(dim)) for m in modalities]  # absent → zeros (present = 0)
    logits = np.concatenate(slots) @ w["fusion_w"] + w["fusion_b"]
    return logits, _normalise(np.sum(slots, axis=0))


def _heads(w: dict, embeddings: dict) -> dict[str, np.ndarray]:
    """Each present modality's own logits [C]; absent modalities have none (their rows are meaningless)."""
    names = {m: [n.format(modality=m) for n in graphs.HEAD_WEIGHTS] for m in embeddings}
    return {m: e @ w[names[m][0]] + w[names[m][1]] for m, e in embeddings.items()}


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()
