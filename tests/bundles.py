"""Factory of small but real model bundles for tests (docs/bundle-format.md).

`build_bundle` writes real ONNX encoders + fusion (tests/bundle_graphs.py) with seeded random weights,
a real `tokenizers` tokenizer, and a manifest whose golden examples come from `reference_outputs`: an
independent numpy implementation of the same maths, fed by the server's own preprocessing
(service.preprocess), so golden replay at load checks ORT + batching + padding against numpy.

Server parity needs (what the graphs assume):
  * text: ids and attention_mask padded on the right with anything (0 = [PAD]) and mask 0;
  * audio: log-mel frames padded with any finite value and frame_mask 0 (float32, 1 = real frame);
  * fusion: one "<modality>_embedding" per bundle modality, absent ones zero (any finite value works)
    with their "present" column 0.
"""

from __future__ import annotations

import base64
import io
from datetime import datetime
from pathlib import Path

import numpy as np
import onnx
import soundfile
from PIL import Image
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from service.manifest import (
    MODALITIES,
    AudioEncoder,
    AudioPreprocess,
    Encoders,
    FusionSpec,
    GoldenExample,
    GoldenInput,
    GoldenOutput,
    ImageEncoder,
    ImagePreprocess,
    Manifest,
    TextEncoder,
    TextPreprocess,
    VideoEncoder,
    VideoPreprocess,
    sha256_file,
    write_manifest,
)
from tests import bundle_graphs as graphs
from tests.bundle_reference import reference_outputs

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")  # [PAD] = 0, the id the server pads with
# 50 lowercase words; sample texts are drawn from these, so they never hit [UNK]
WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "red", "green", "blue", "yellow",
    "black", "white", "orange", "purple", "brown", "grey", "cat", "dog", "bird", "fish", "horse", "mouse", "cow",
    "sheep", "frog", "bear", "a", "the", "is", "an", "number", "digit", "odd", "even", "big", "small", "above",
    "below", "near", "far", "left", "right", "up", "down", "hot", "cold",
)  # fmt: skip
SAMPLE_RATE = 16_000
IMAGE_MEAN = (123.675, 116.28, 103.53)  # ImageNet statistics in 0-255 units, like the real encoders
IMAGE_STD = (58.395, 57.12, 57.375)
FILES = {
    "image": "image_encoder.onnx",
    "text": "text_encoder.onnx",
    "audio": "audio_encoder.onnx",
    "video": "video_pool.onnx",
    "fusion": "fusion.onnx",
    "tokenizer": "tokenizer.json",
}
# What a bundle has unless asked: a video needs its test media (tests/media_video.py), so it is asked for by name
DEFAULT_MODALITIES = ("image", "text", "audio")
# The weight streams' order: fixed, so a bundle's weights never change when a modality is added to MODALITIES
COMPONENTS = ("image", "text", "audio", "fusion", "video")
# Preferred modality subsets for golden examples; intersected with what the bundle has.
GOLDEN_SUBSETS = (
    ("image", "text", "audio"),
    ("text",),
    ("image", "audio"),
    ("image",),
    ("audio",),
    ("image", "text"),
    ("text", "audio"),
)
VIDEO_SUBSETS = (("video",), ("text", "video"))  # a video bundle's golden examples add these
# 1 s segments of 2 frames (a 2.5 s clip: 3 segments, the last 0.5 s with one frame), so K varies in a batch
VIDEO_SPEC = VideoPreprocess(frames_per_second=2.0, max_frames_per_segment=4, segment_s=1.0, max_seconds=60.0)


# ----------------------------------------------------------------------------------------- building


def build_bundle(
    root: Path,
    name: str = "tiny",
    version: str = "1",
    *,
    modalities=DEFAULT_MODALITIES,
    labels=("zero", "one", "two", "three"),
    dim: int = 8,
    seed: int = 0,
    image_size: int = 16,
    n_mels: int = 80,
    text_max_length: int = 16,
    golden: bool = True,
    audio_max_seconds: float = 10.0,
    modality_heads: bool = True,
    image_normalise: str = "server",
    video: VideoPreprocess | None = None,
    joint_space: dict | None = None,
) -> Path:
    """Write models/<name>/<version>/ under `root` and return that directory. `modality_heads`: fusion.onnx
    also outputs modality_logits (classify?explain=true); without it the bundle is like older ones.
    `image_normalise="graph"`: the image encoder takes uint8 pixels and normalises them itself. "video" in
    `modalities` adds an attention pool (video_pool.onnx) segmenting as `video` says (default VIDEO_SPEC);
    fusion then takes the slots (video_frames with the image encoder, video_audio with the audio encoder).
    `joint_space`: the manifest's block (service/joint_space.py), e.g. tests.bundles.joint_space_for(dim)."""
    modalities = [m for m in MODALITIES if m in modalities]  # canonical order = fusion input order
    if not modalities:
        raise ValueError("a bundle needs at least one modality")
    bundle = Path(root) / name / version
    bundle.mkdir(parents=True, exist_ok=True)
    specs = {
        "image": ImagePreprocess(
            size=image_size,
            resize="center_crop",
            mean=IMAGE_MEAN,
            std=IMAGE_STD,
            single_pass=True,
            normalise=image_normalise,
        ),
        "text": TextPreprocess(max_length=text_max_length, truncate=True),
        "audio": AudioPreprocess(sample_rate=SAMPLE_RATE, max_seconds=audio_max_seconds, n_mels=n_mels),
        "video": video or VIDEO_SPEC,
    }
    encoders = {m: _write_encoder(bundle, m, specs[m], _rng(seed, m), dim) for m in modalities}
    slots = Encoders(**encoders).slots()
    fusion = _write_fusion(bundle, slots, _rng(seed, "fusion"), dim, len(labels), modality_heads)
    (bundle / "model_card.md").write_text(f"# {name} {version}\n\nRandom weights (seed {seed}), for tests.\n")
    files = sorted(p.name for p in bundle.iterdir() if p.name != "manifest.json")
    manifest = Manifest(
        name=name,
        version=version,
        created=datetime.now().astimezone().isoformat(timespec="seconds"),
        labels=list(labels),
        embedding_dim=dim,
        encoders=Encoders(**encoders),
        fusion=fusion,
        files={f: sha256_file(bundle / f) for f in files},
        metrics={"note": "random weights", "seed": seed},
        description="tiny test bundle built by tests/bundles.py",
        joint_space=joint_space or {},
    )
    write_manifest(manifest, bundle / "manifest.json")  # reference_outputs reads it back
    if golden:
        examples = _golden_examples(bundle, modalities)
        manifest = Manifest.model_validate({**manifest.model_dump(), "golden": examples})
        write_manifest(manifest, bundle / "manifest.json")
    return bundle


def joint_space_for(dim: int = 8, matryoshka_dims=(4,), temperature: float | None = 0.05) -> dict:
    """A joint_space block for a random-weight bundle: the given prefixes, ranges [-1, 1] per dimension for each
    supported dim (every value of a unit vector is in them), and a zero-shot temperature unless None."""
    dims = [*matryoshka_dims, dim]
    block = {
        "matryoshka_dims": list(matryoshka_dims),
        "quantization": {str(d): {"min": [-1.0] * d, "max": [1.0] * d} for d in dims},
    }
    if temperature is not None:
        block["zero_shot"] = {"temperature": temperature, "template": "{}", "n": 0, "accuracy": 0.0, "ece": 0.0}
    return block


def _rng(seed: int, component: str) -> np.random.Generator:
    """One stream per component, so a text-only bundle has the same text weights as a full one."""
    return np.random.default_rng([seed, COMPONENTS.index(component)])


def _write_encoder(bundle: Path, modality: str, spec, rng: np.random.Generator, dim: int):
    if modality == "image":
        hidden = graphs.HIDDEN
        weights = {
            "image_w1": rng.normal(0, 2.0, (3, hidden)),
            "image_b1": rng.normal(0, 0.1, hidden),
            "image_w2": rng.normal(0, hidden**-0.5, (hidden, dim)),
        }
        normalise = (spec.mean, spec.std) if spec.normalise == "graph" else None
        model, inputs, outputs = graphs.image_encoder(weights, spec.size, dim, normalise)
        encoder = ImageEncoder
    elif modality == "text":
        vocab = _write_tokenizer(bundle / FILES["tokenizer"])
        weights = {
            "text_table": rng.normal(0, 1.0, (vocab, dim)),
            "text_w": rng.normal(0, dim**-0.5, (dim, dim)),
        }
        model, inputs, outputs = graphs.text_encoder(weights, dim)
        encoder = TextEncoder
    elif modality == "video":
        weights = {"pool_attention": rng.normal(0, 2.0, (dim, 1)), "pool_w": rng.normal(0, dim**-0.5, (dim, dim))}
        model, inputs, outputs = graphs.video_pool(weights, dim)
        onnx.save(model, bundle / FILES[modality])
        return VideoEncoder(file=FILES[modality], inputs=inputs, outputs=outputs, preprocess=spec, pooling="attention")
    else:
        weights = {
            "audio_w1": rng.normal(0, 2.0 * spec.n_mels**-0.5, (spec.n_mels, dim)),
            "audio_w2": rng.normal(0, dim**-0.5, (dim, dim)),
        }
        model, inputs, outputs = graphs.audio_encoder(weights, spec.n_mels, dim)
        encoder = AudioEncoder
    onnx.save(model, bundle / FILES[modality])
    return encoder(file=FILES[modality], inputs=inputs, outputs=outputs, preprocess=spec)


def _write_fusion(bundle: Path, modalities: list[str], rng: np.random.Generator, dim: int, classes: int, heads: bool):
    """`modalities`: fusion's slots (service.manifest.SLOTS), a video's two among them."""
    # std 1.5 gives logits of a few units: probabilities far from uniform, so parity checks bite
    weights = {
        "fusion_w": rng.normal(0, 1.5, (len(modalities) * dim, classes)),
        "fusion_b": rng.normal(0, 0.1, classes),
    }
    if heads:  # drawn after the fusion weights, which therefore do not depend on `heads`
        for i, modality in enumerate(modalities):
            # the modality's block of fusion_w plus noise: heads agree with the fusion often, not always
            block = weights["fusion_w"][i * dim : (i + 1) * dim]  # [D, C]
            weight, bias = (name.format(modality=modality) for name in graphs.HEAD_WEIGHTS)
            weights |= {weight: block + rng.normal(0, 1.5, (dim, classes)), bias: rng.normal(0, 0.1, classes)}
    model, inputs, outputs = graphs.fusion(weights, modalities, dim, classes, heads)
    onnx.save(model, bundle / FILES["fusion"])
    return FusionSpec(file=FILES["fusion"], strategy="concat", modalities=modalities, inputs=inputs, outputs=outputs)


def _write_tokenizer(path: Path) -> int:
    """WordLevel tokenizer: lowercase, whitespace split, [CLS] … [SEP]. Returns the vocabulary size."""
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.save(str(path))
    return len(vocab)


def _golden_subsets(modalities: list[str], count: int = 3) -> list[list[str]]:
    subsets, video = [], [list(s) for s in VIDEO_SUBSETS if set(s) <= set(modalities)]
    modalities = [m for m in modalities if m != "video"]
    if not modalities:
        return video
    for preferred in GOLDEN_SUBSETS:
        subset = [m for m in modalities if m in preferred]
        if subset and subset not in subsets:
            subsets.append(subset)
    return [subsets[i % len(subsets)] for i in range(count)] + video  # a 1-modality bundle repeats its subset


def _golden_examples(bundle: Path, modalities: list[str]) -> list[dict]:
    examples = []
    for i, subset in enumerate(_golden_subsets(modalities)):
        raw = {m: v for m, v in sample_inputs(seed=100 + i).items() if m in subset}
        if "video" in subset:
            raw["video"] = sample_video(seed=100 + i)
        golden_input = GoldenInput(
            text=raw.get("text"), image_b64=_b64(raw.get("image")), audio_b64=_b64(raw.get("audio")),
            video_b64=_b64(raw.get("video")),
        )  # fmt: skip
        output = GoldenOutput(**reference_outputs(bundle, raw))
        examples.append(GoldenExample(inputs=golden_input, outputs=output).model_dump())
    return examples


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


# ----------------------------------------------------------------------------------------- samples


def sample_inputs(seed: int = 0) -> dict:
    """One raw item: {"image": PNG bytes, "audio": WAV bytes, "text": str, "video": MP4 bytes}, varying with seed."""
    rng = np.random.default_rng(seed)
    return {"image": _sample_png(rng), "audio": _sample_wav(rng), "text": _sample_text(rng)}


def sample_video(seed: int = 0, **options) -> bytes:
    """A 2.1-2.9 s MP4 (H.264 + AAC) of digits and a tone: three segments of VIDEO_SPEC, the last one short.
    `options` go to tests/media_video.py's video_bytes (audio=False, video=False, container=...)."""
    from tests.media_video import video_bytes  # PyAV; only a video bundle needs it

    rng = np.random.default_rng([seed, 1])
    digits = tuple(int(d) for d in rng.integers(0, 10, 2))
    seconds, tone = round(float(rng.uniform(2.1, 2.9)), 2), float(rng.uniform(200, 2000))
    return video_bytes(**{"seconds": seconds, "digits": digits, "tone_hz": tone, **options})


def _sample_png(rng: np.random.Generator) -> bytes:
    # non-square and not image_size, so decode_image really resizes and crops;
    # a per-seed base colour + gradient keeps the pooled means (and embeddings) apart between seeds
    height, width = (int(v) for v in rng.integers(12, 49, size=2))
    ramp = np.linspace(-1, 1, width)[None, :, None] * rng.uniform(-80, 80, 3)
    pixels = rng.integers(0, 256, 3) + ramp + rng.normal(0, 20, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _sample_wav(rng: np.random.Generator) -> bytes:
    """16 kHz mono int16 WAV of 0.5-1.5 s: a tone plus a little noise."""
    samples = int(SAMPLE_RATE * rng.uniform(0.5, 1.5))
    t = np.arange(samples) / SAMPLE_RATE
    wave = 0.4 * np.sin(2 * np.pi * rng.uniform(150, 3000) * t) + rng.normal(0, 0.02, samples)
    buffer = io.BytesIO()
    soundfile.write(
        buffer, (np.clip(wave, -1, 1) * 32767).astype(np.int16), SAMPLE_RATE, format="WAV", subtype="PCM_16"
    )
    return buffer.getvalue()


def _sample_text(rng: np.random.Generator) -> str:
    words = [str(w) for w in rng.choice(WORDS, size=int(rng.integers(1, 9)))]
    words[0] = words[0].capitalize()  # exercises the tokenizer's lowercase normaliser
    return " ".join(words)


if __name__ == "__main__":  # `make tiny-bundle`: python -m tests.bundles [models-dir]
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "models")
    print(f"wrote {build_bundle(target, 'tiny', '1')}")
