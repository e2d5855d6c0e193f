"""Schema of a model bundle's manifest.json (docs/bundle-format.md), shared by service/ and training/.

A bundle is `models/<name>/<version>/`; every path in the manifest is relative to that directory.
Absolute paths and paths that leave the bundle are rejected here (syntactically) and again by the
registry after resolving symlinks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from service.joint_space import JointSpace

SCHEMA_VERSION = 1
# the one list of modality names, in the order answers list them; each has a spec in service/modalities
MODALITIES = ("image", "text", "audio", "video")
Modality = Literal[MODALITIES]
# What fusion takes: one embedding per slot. A video fills two, its frames (the image encoder, then the
# bundle's temporal pooling) and its sound track (the audio encoder); every other modality fills its own.
VIDEO_SLOTS = ("video_frames", "video_audio")
SLOTS = ("image", "text", "audio", *VIDEO_SLOTS)
Slot = Literal[SLOTS]
DType = Literal["float32", "float16", "int64", "int32", "bool", "uint8"]
FUSION_OUTPUTS = ("logits", "fused")  # required; the server picks fusion outputs by name
MODALITY_LOGITS = "modality_logits"  # optional: each modality's own head, for classify?explain=true


def _relative_path(value: str) -> str:
    path = PurePosixPath(value.replace("\\", "/"))
    if not value or path.is_absolute() or value.startswith(("/", "\\")) or ":" in path.parts[0]:
        raise ValueError(f"path {value!r} must be relative to the bundle directory")
    if ".." in path.parts:
        raise ValueError(f"path {value!r} leaves the bundle directory")
    return value


BundlePath = Annotated[str, AfterValidator(_relative_path)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(Strict):
    name: str
    dtype: DType
    shape: list[int | str]  # str = named dynamic axis, e.g. "batch", "sequence", "frames"


class Preprocess(Strict):
    """What an encoder's input needs from the raw bytes; each modality's is its own subclass."""

    def bundle_files(self) -> list[str]:
        """The bundle files this preprocessing reads (besides the encoder's graph)."""
        return []


class ImagePreprocess(Preprocess):
    size: int = Field(224, ge=1)  # output is size x size
    # center_crop: shorter side → size (rounded), then crop; stretch: straight to size x size; shortest_edge:
    # Hugging Face image processors' resize — shorter side → resize_size, longer side truncated — then the
    # centred size x size crop (CLIP, DINOv2, ConvNeXt)
    resize: Literal["center_crop", "stretch", "shortest_edge"] = "center_crop"
    resize_size: int | None = Field(None, ge=1)  # shortest_edge: the shorter side before the crop (None: size)
    resample: Literal["nearest", "bilinear", "bicubic"] = "bilinear"
    # normalised = (pixel_0_255 - mean) / std, per RGB channel
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    # True: a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps the output size, and crop and
    # resize are one pass (a resize box) — about half the CPU of a photo. False: decoded whole, resized, then
    # cropped: what bundles exported before this field were checked against, so their golden replay still holds
    single_pass: bool = False
    # "server": the encoder takes float32 (pixel - mean) / std; "graph": it takes the uint8 pixels [3,S,S] and
    # normalises inside (a quarter of the bytes through batching and between processes; docs/bundle-format.md)
    normalise: Literal["server", "graph"] = "server"


class TextPreprocess(Preprocess):
    tokenizer_file: BundlePath = "tokenizer.json"
    max_length: int = Field(128, ge=2)  # tokens including special tokens
    truncate: bool = True  # False: longer texts are rejected with 422

    def bundle_files(self) -> list[str]:
        return [self.tokenizer_file]


class AudioPreprocess(Preprocess):
    # log_mel: Whisper's features [n_mels,T frames]; waveform: the resampled samples [1,T] for encoders that read
    # raw audio (wav2vec2, HuBERT, WavLM); hop_length is then the samples per budget frame (docs/bundle-format.md)
    front_end: Literal["log_mel", "waveform"] = "log_mel"
    sample_rate: int = Field(16_000, ge=1000)
    max_seconds: float = Field(30.0, gt=0)
    n_mels: int = Field(80, ge=1)  # waveform: 1 (one channel)
    n_fft: int = Field(400, ge=16)
    hop_length: int = Field(160, ge=1)
    normalize: bool = False  # waveform: zero mean, unit variance per clip (Wav2Vec2FeatureExtractor's do_normalize)
    min_samples: int = Field(1, ge=1)  # waveform: the encoder's receptive field; a shorter clip has no frame
    # Whisper's log-mel: log10(clamp(power mel, 1e-10)), floor at max - 8, then (x + 4) / 4
    log_floor_db: float = 8.0
    frames_multiple: int = Field(1, ge=1)  # pad frame count to a multiple (conv strides)


class VideoPreprocess(Preprocess):
    """How a video becomes segments (service/preprocess/video.py; docs/bundle-format.md). Frames are then
    preprocessed as the image encoder's spec says, and the sound track as the audio encoder's."""

    frames_per_second: float = Field(1.0, gt=0, le=30)  # sampling rate of the frames kept
    max_frames_per_segment: int = Field(8, ge=1, le=64)  # at most K frames per segment (spread evenly)
    segment_s: float = Field(4.0, gt=0)  # a request's default segment length (`segment_s`)
    overlap_s: float = Field(0.0, ge=0)  # a request's default overlap between segments (`overlap_s`)
    max_seconds: float = Field(600.0, gt=0)  # the bundle's own cap on a clip (the server's may be lower)

    @model_validator(mode="after")
    def _overlap_below_segment(self) -> VideoPreprocess:
        if self.overlap_s >= self.segment_s:
            raise ValueError(f"overlap_s {self.overlap_s} must be below segment_s {self.segment_s}")
        return self


class EncoderSpec(Strict):
    file: BundlePath
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]  # one output: the L2-normalised embedding [batch, D]


class ImageEncoder(EncoderSpec):
    preprocess: ImagePreprocess = ImagePreprocess()

    @model_validator(mode="after")
    def _pixels_fit_the_normalisation(self) -> ImageEncoder:
        dtype = self.inputs[0].dtype if self.inputs else None
        if (self.preprocess.normalise == "graph") != (dtype == "uint8"):
            raise ValueError(
                f"image encoder input is {dtype}: preprocess.normalise 'graph' takes uint8 pixels, "
                f"'server' the normalised float pixels (got {self.preprocess.normalise!r})"
            )
        return self


class TextEncoder(EncoderSpec):
    preprocess: TextPreprocess = TextPreprocess()


class AudioEncoder(EncoderSpec):
    preprocess: AudioPreprocess = AudioPreprocess()


class VideoEncoder(EncoderSpec):
    """The temporal pooling graph: frame_embeddings [batch, frames, D] f32 (each frame through the image
    encoder), frame_mask [batch, frames] f32 → embedding [batch, D], L2-normalised. A video needs the image
    encoder (its frames) or the audio encoder (its sound track), or both."""

    preprocess: VideoPreprocess = VideoPreprocess()
    pooling: Literal["attention", "mean"] = "attention"


class Encoders(Strict):
    image: ImageEncoder | None = None
    text: TextEncoder | None = None
    audio: AudioEncoder | None = None
    video: VideoEncoder | None = None

    def present(self) -> list[str]:
        return [m for m in MODALITIES if getattr(self, m) is not None]

    def slots(self) -> list[str]:
        """Fusion's inputs for these encoders, in SLOTS order (video_frames needs the image encoder,
        video_audio the audio encoder)."""
        present = set(self.present())
        video = {"video_frames": "image", "video_audio": "audio"} if "video" in present else {}
        return [s for s in SLOTS if s in present - {"video"} or video.get(s) in present]


class FusionSpec(Strict):
    file: BundlePath
    strategy: str = "concat"
    # inputs: one embedding [batch, D] per slot (a modality, or a video's frames and sound track), in
    # `modalities` order, then present [batch, M] f32
    modalities: list[Slot]
    inputs: list[TensorSpec]
    # by name: logits [batch, C], fused [batch, D], optionally modality_logits [batch, M, C] (M in
    # `modalities` order; each modality's own calibrated head; rows of absent modalities are meaningless)
    outputs: list[TensorSpec]

    @model_validator(mode="after")
    def _named_outputs(self) -> FusionSpec:
        names = [t.name for t in self.outputs]
        missing = [n for n in FUSION_OUTPUTS if n not in names]
        if missing or len(set(names)) != len(names):
            raise ValueError(f"fusion.outputs {names} must name {list(FUSION_OUTPUTS)} once each")
        return self

    @property
    def has_modality_logits(self) -> bool:
        return any(t.name == MODALITY_LOGITS for t in self.outputs)

    def output(self, name: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.name == name), None)


class GoldenInput(Strict):
    image_b64: str | None = None  # encoded image file (PNG/JPEG…), base64
    audio_b64: str | None = None  # encoded audio file (WAV/FLAC…), base64
    text: str | None = None
    video_b64: str | None = None  # encoded video file (MP4/WebM…), base64; segmented by the bundle's defaults

    def modalities(self) -> list[str]:
        present = {"image": self.image_b64, "audio": self.audio_b64, "text": self.text, "video": self.video_b64}
        return [m for m in MODALITIES if present[m] is not None]


class GoldenSegment(Strict):
    start_s: float
    end_s: float
    probabilities: list[float]
    fused: list[float]


class GoldenOutput(Strict):
    probabilities: list[float]
    fused: list[float]
    # by slot: a video input's are video_frames / video_audio (the clip's, pooled over its segments)
    embeddings: dict[Slot, list[float]] = Field(default_factory=dict)
    # softmax over labels of each present slot's modality_logits row (bundles that declare it)
    modality_probabilities: dict[Slot, list[float]] = Field(default_factory=dict)
    segments: list[GoldenSegment] = Field(default_factory=list)  # a video input's, in order


class GoldenExample(Strict):
    inputs: GoldenInput
    outputs: GoldenOutput  # what the reference (torch) produced for these inputs


class Manifest(Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    version: str = Field(pattern=r"^[0-9]+$")
    created: str
    task: Literal["classification"] = "classification"
    labels: list[str] = Field(min_length=2)
    embedding_dim: int = Field(ge=1)
    encoders: Encoders
    fusion: FusionSpec
    files: dict[BundlePath, str]  # path → sha256 hex of every file the bundle uses
    metrics: dict = Field(default_factory=dict)
    golden: list[GoldenExample] = Field(default_factory=list)
    golden_tolerance: float = Field(1e-4, gt=0)
    description: str = ""
    # Matryoshka dims, int8/uint8 ranges, the zero-shot temperature (service/joint_space.py)
    joint_space: JointSpace = Field(default_factory=JointSpace)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        present = self.encoders.present()
        if not present:
            raise ValueError("a bundle needs at least one encoder")
        if present == ["video"] or (present and "video" in present and not self.encoders.slots()):
            raise ValueError("a video encoder needs the image encoder or the audio encoder beside it")
        if sorted(self.fusion.modalities) != sorted(self.encoders.slots()):
            slots = self.encoders.slots()
            raise ValueError(f"fusion.modalities {self.fusion.modalities} != the encoders' slots {slots}")
        missing = [p for p in self.referenced_files() if p not in self.files]
        if missing:
            raise ValueError(f"files without a sha256 entry: {missing}")
        self._check_modality_logits()
        self.joint_space.check(self.embedding_dim)
        for example in self.golden:
            self._check_golden(example)
        return self

    def _check_modality_logits(self) -> None:
        spec = self.fusion.output(MODALITY_LOGITS)
        expected = [len(self.fusion.modalities), len(self.labels)]
        if spec is not None and (len(spec.shape) != 3 or spec.shape[1:] != expected):
            raise ValueError(f"fusion output {MODALITY_LOGITS} must have shape [batch, {expected[0]}, {expected[1]}]")

    def _check_golden(self, example: GoldenExample) -> None:
        inputs, outputs = example.inputs.modalities(), example.outputs
        if not inputs:
            raise ValueError("a golden example needs at least one input")
        if len(outputs.probabilities) != len(self.labels):
            raise ValueError("golden probabilities must have one score per label")
        slots = set(inputs) - {"video"} | (set(VIDEO_SLOTS) if "video" in inputs else set())
        stray = set(outputs.embeddings) - slots
        if stray:
            raise ValueError(f"golden embeddings for {sorted(stray)}, not among its inputs")
        if outputs.segments and "video" not in inputs:
            raise ValueError("golden segments need a video input")
        stray = set(outputs.modality_probabilities) - slots
        if stray:
            raise ValueError(f"golden modality_probabilities for {sorted(stray)}, not among its inputs")
        if any(len(p) != len(self.labels) for p in outputs.modality_probabilities.values()):
            raise ValueError("golden modality_probabilities must have one score per label")
        if outputs.modality_probabilities and not self.fusion.has_modality_logits:
            raise ValueError(f"golden modality_probabilities need a fusion output named {MODALITY_LOGITS}")

    def modalities(self) -> list[str]:
        return self.encoders.present()

    def encoder(self, modality: str) -> EncoderSpec | None:
        """The encoder of `modality`, None when the bundle has none."""
        return getattr(self.encoders, modality, None)

    def graph_files(self) -> list[str]:
        """The ONNX graphs: each encoder's, then fusion's."""
        return [getattr(self.encoders, m).file for m in self.encoders.present()] + [self.fusion.file]

    def referenced_files(self) -> list[str]:
        paths = [self.fusion.file]
        for modality in self.encoders.present():
            encoder = getattr(self.encoders, modality)
            paths += [encoder.file, *encoder.preprocess.bundle_files()]
        return paths


def is_version_name(name: str) -> bool:
    """A version directory's name: ASCII decimal digits only. str.isdigit() alone also takes "²" (which int()
    refuses) and "٣" (which int() reads as 3: a second directory for the same number)."""
    return name.isascii() and name.isdigit()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def manifest_digest(manifest: Manifest) -> str:
    """sha256 of the manifest's content as parsed: what an engine verified, for a front-end to compare with."""
    return hashlib.sha256(manifest.model_dump_json().encode()).hexdigest()


def read_manifest(path: Path) -> Manifest:
    return Manifest.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


def write_manifest(manifest: Manifest, path: Path) -> None:
    Path(path).write_text(manifest.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
