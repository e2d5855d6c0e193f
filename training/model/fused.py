"""The trainable model on frozen-backbone features: per-encoder projections + fusion + auxiliary heads.

features {slot: [B,F]} → projection (Linear F → D, L2-normalise; the same maths as
EncoderWithProjection.project, whose `proj` receives these weights at export) → fusion → logits, fused.
`modalities` are fusion's SLOTS (service.manifest.SLOTS order): image, text, audio, and a video's two,
video_frames ([B,K,F_image] frame features: the IMAGE projection per frame, then TemporalPool) and video_audio
(the AUDIO projection). Projections are per encoder because the served image_encoder.onnx / audio_encoder.onnx
contain them and a video's frames and sound run through those same graphs.
The auxiliary linear heads (one per slot) train each embedding to classify on its own and are
exported as fusion.onnx's `modality_logits` (per-slot evidence, `?explain=true`). `temperature` holds the
calibration (training/calibration.py): [fused, then one per slot], 1 until fitted; outputs are divided by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.model.fusion import build_fusion
from training.model.temporal import TemporalPool, encoder_of, frame_mask

ENCODER_ORDER = ("image", "text", "audio")


@dataclass
class FusedOutput:
    logits: torch.Tensor  # [B,C]
    fused: torch.Tensor  # [B,D], unit norm
    embeddings: dict[str, torch.Tensor]  # modality → [B,D], unit norm (garbage where absent)
    aux_logits: dict[str, torch.Tensor]  # modality → [B,C]


class FusedModel(nn.Module):
    def __init__(
        self,
        modalities: list[str],
        feature_dims: dict[str, int],
        n_classes: int,
        *,
        fusion: str = "attention",
        dim: int = 256,
        hidden: int = 256,
        heads: int = 4,
        layers: int = 1,
        dropout: float = 0.1,
        image_feature: str = "pooled",
        text_encoder: str = "",
        text_pooling: str = "mean",
        image_encoder: str = "",
        audio_encoder: str = "",
        video_pooling: str = "attention",
    ):
        super().__init__()
        # constructor arguments, stored in checkpoints so that load_checkpoint rebuilds the same model
        self.hparams = dict(
            modalities=list(modalities), feature_dims=dict(feature_dims), n_classes=n_classes, fusion=fusion,
            dim=dim, hidden=hidden, heads=heads, layers=layers, dropout=dropout, image_feature=image_feature,
            text_encoder=text_encoder, text_pooling=text_pooling, image_encoder=image_encoder,
            audio_encoder=audio_encoder, video_pooling=video_pooling,
        )  # fmt: skip
        # which encoders (and read-outs) the features came from: "" = the packaged ones (training/encoders.py)
        self.image_encoder, self.image_feature = image_encoder, image_feature
        self.text_encoder, self.text_pooling, self.audio_encoder = text_encoder, text_pooling, audio_encoder
        self.modalities, self.dim, self.n_classes = list(modalities), dim, n_classes  # fusion's slots
        wanted = {encoder_of(m) for m in self.modalities}
        self.encoders = [e for e in ENCODER_ORDER if e in wanted]  # without video: the same list as modalities
        self.feature_dims = {e: int(feature_dims[e]) for e in self.encoders}
        self.projections = nn.ModuleDict({e: nn.Linear(self.feature_dims[e], dim) for e in self.encoders})
        self.aux = nn.ModuleDict({m: nn.Linear(dim, n_classes) for m in self.modalities})
        self.fusion = build_fusion(
            fusion, self.modalities, dim, n_classes, hidden=hidden, heads=heads, layers=layers, dropout=dropout
        )
        self.register_buffer("temperature", torch.ones(1 + len(self.modalities)))  # [1+M]
        # created last, and only for video: a model without video draws the same initial weights as before
        self.video_pooling = video_pooling
        self.pool = TemporalPool(dim, video_pooling) if "video_frames" in self.modalities else None
        # modality → the fine-tuned backbone tensors ({} = frozen packaged backbones); see training/finetune.py
        self.backbone_state: dict[str, dict[str, torch.Tensor]] = {}

    def project(self, slot: str, features: torch.Tensor) -> torch.Tensor:
        """[...,F] features of a slot → [...,D] unit norm through its encoder's projection."""
        return F.normalize(self.projections[encoder_of(slot)](features), dim=-1)

    def embed(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {m: self.project(m, features[m]) for m in self.modalities if m != "video_frames"}  # [B,D] each
        if self.pool is not None:
            frames = features["video_frames"]  # [B,K,F_image], zero rows = padding
            out["video_frames"] = self.pool(self.project("video_frames", frames), frame_mask(frames))  # [B,D]
        return {m: out[m] for m in self.modalities}

    def forward(self, features: dict[str, torch.Tensor], present: torch.Tensor) -> FusedOutput:
        embeddings = self.embed(features)
        logits, fused = self.fusion(embeddings, present)  # [B,C], [B,D]
        aux = {m: self.aux[m](embeddings[m]) / self.temperature[1 + i] for i, m in enumerate(self.modalities)}
        return FusedOutput(logits / self.temperature[0], fused, embeddings, aux)

    def fusion_parameters(self) -> int:
        return sum(p.numel() for p in self.fusion.parameters())


def build_model(modalities: list[str], feature_dims: dict[str, int], n_classes: int, cfg) -> FusedModel:
    """FusedModel from a TrainConfig (seeded by the caller)."""
    return FusedModel(
        modalities,
        feature_dims,
        n_classes,
        fusion=cfg.fusion,
        dim=cfg.dim,
        hidden=cfg.hidden,
        heads=cfg.heads,
        layers=cfg.layers,
        dropout=cfg.dropout,
        image_feature=cfg.image_feature,
        text_encoder=cfg.text_encoder,
        text_pooling=cfg.text_pooling,
        image_encoder=cfg.image_encoder,
        audio_encoder=cfg.audio_encoder,
        video_pooling=cfg.video_pooling,
    )


class ServingGraph(nn.Module):
    """What fusion.onnx computes. Inputs: <m>_embedding [B,D] per modality (in order), present [B,M].
    Outputs: calibrated fused logits [B,C], fused [B,D], calibrated per-modality logits [B,M,C] (rows of
    absent modalities are meaningless; the server ignores them)."""

    def __init__(self, model: FusedModel):
        super().__init__()
        self.fusion, self.aux, self.modalities = model.fusion, model.aux, model.modalities
        self.register_buffer("temperature", model.temperature.detach().clone())

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        *embeddings, present = inputs  # M × [B,D], [B,M]
        logits, fused = self.fusion(dict(zip(self.modalities, embeddings, strict=True)), present)
        heads = torch.stack([self.aux[m](e) for m, e in zip(self.modalities, embeddings, strict=True)], dim=1)
        return logits / self.temperature[0], fused, heads / self.temperature[1:, None]  # [B,C], [B,D], [B,M,C]


def save_checkpoint(model: FusedModel, path, *, labels: list[str], extra: dict | None = None) -> None:
    blob = {"state_dict": model.state_dict(), "hparams": model.hparams, "labels": labels, **(extra or {})}
    torch.save(blob | {"backbone_state": model.backbone_state}, path)


def load_checkpoint(path) -> tuple[FusedModel, dict]:
    blob = torch.load(path, map_location="cpu", weights_only=False)
    hp = dict(blob["hparams"])
    model = FusedModel(hp.pop("modalities"), hp.pop("feature_dims"), hp.pop("n_classes"), **hp)
    state = blob["state_dict"]
    state.setdefault("temperature", model.temperature)  # checkpoints from before calibration existed
    model.load_state_dict(state)
    model.backbone_state = blob.get("backbone_state", {})
    return model.eval(), blob
