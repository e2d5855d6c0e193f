"""The trainable model on frozen-backbone features: per-modality projections + fusion + auxiliary heads.

features {m: [B,F_m]} → projection (Linear F_m → D, L2-normalise; the same maths as
EncoderWithProjection.project, whose `proj` receives these weights at export) → fusion → logits, fused.
The auxiliary linear heads (one per modality) exist only for the training loss and are not exported.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.model.fusion import build_fusion


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
    ):
        super().__init__()
        # constructor arguments, stored in checkpoints so that load_checkpoint rebuilds the same model
        self.hparams = dict(
            modalities=list(modalities), feature_dims=dict(feature_dims), n_classes=n_classes, fusion=fusion,
            dim=dim, hidden=hidden, heads=heads, layers=layers, dropout=dropout,
        )  # fmt: skip
        self.modalities, self.dim, self.n_classes = list(modalities), dim, n_classes
        self.feature_dims = {m: int(feature_dims[m]) for m in self.modalities}
        self.projections = nn.ModuleDict({m: nn.Linear(self.feature_dims[m], dim) for m in self.modalities})
        self.aux = nn.ModuleDict({m: nn.Linear(dim, n_classes) for m in self.modalities})
        self.fusion = build_fusion(
            fusion, self.modalities, dim, n_classes, hidden=hidden, heads=heads, layers=layers, dropout=dropout
        )
        # modality → the fine-tuned backbone tensors ({} = frozen packaged backbones); see training/finetune.py
        self.backbone_state: dict[str, dict[str, torch.Tensor]] = {}

    def embed(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: F.normalize(self.projections[m](features[m]), dim=-1) for m in self.modalities}  # [B,D] each

    def forward(self, features: dict[str, torch.Tensor], present: torch.Tensor) -> FusedOutput:
        embeddings = self.embed(features)
        logits, fused = self.fusion(embeddings, present)  # [B,C], [B,D]
        aux = {m: self.aux[m](e) for m, e in embeddings.items()}
        return FusedOutput(logits, fused, embeddings, aux)

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
    )


def save_checkpoint(model: FusedModel, path, *, labels: list[str], extra: dict | None = None) -> None:
    blob = {"state_dict": model.state_dict(), "hparams": model.hparams, "labels": labels, **(extra or {})}
    torch.save(blob | {"backbone_state": model.backbone_state}, path)


def load_checkpoint(path) -> tuple[FusedModel, dict]:
    blob = torch.load(path, map_location="cpu", weights_only=False)
    hp = dict(blob["hparams"])
    model = FusedModel(hp.pop("modalities"), hp.pop("feature_dims"), hp.pop("n_classes"), **hp)
    model.load_state_dict(blob["state_dict"])
    model.backbone_state = blob.get("backbone_state", {})
    return model.eval(), blob
