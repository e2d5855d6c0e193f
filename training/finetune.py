"""`--finetune-last N`: train the last N blocks of every backbone (and its final norm) together with the heads.

Cached features assume a frozen backbone, so while fine-tuning the train and val splits get *live*
features: inputs are decoded once (service.preprocess, as the server decodes them) and kept in memory,
and every batch runs the backbones, the frozen blocks without gradients and the last N with. Frozen blocks
and every BatchNorm stay in eval mode (Backbone.train), so only the tuned blocks' dropout is active.
Memory: a decoded 224x224 image is 0.6 MB, so a few thousand images fit; audio and text are far smaller.

After training, the tuned tensors go into the checkpoint (`backbone_state`: trainable parameters only)
and every split's features are recomputed with the tuned backbones (cached under their new weight digest),
so evaluation, the fusion comparison and export all see what the tuned encoders compute.
"""

from __future__ import annotations

import torch
from torch import nn

from training.data.features import collate, decoded_inputs
from training.data.specs import preprocess_for
from training.data.splits import load_train_data
from training.encoders import backbone_options
from training.errors import UserError
from training.model.backbones import build_backbone


class LiveFeatures:
    """rows → {modality: [B,F]}: backbone features computed now (zero rows where an item lacks the modality).

    Everything happens where the backbones' parameters are (model.to(device) moves them): inputs are collated on
    the CPU and copied over without blocking; features come out float32 (autocast may run the backbone in
    bf16/fp16) so the heads and the zero rows share one dtype.
    """

    def __init__(self, backbones: nn.ModuleDict, inputs: dict[str, list], dims: dict[str, int]):
        self.backbones, self.inputs, self.dims = backbones, inputs, dims

    def __call__(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        rows_list, out = rows.tolist(), {}
        for modality, backbone in self.backbones.items():
            device = _device_of(backbone)
            having = [i for i, row in enumerate(rows_list) if self.inputs[modality][row] is not None]
            table = torch.zeros(len(rows_list), self.dims[modality], device=device)  # [B,F]
            if having:
                batch = collate(modality, [self.inputs[modality][rows_list[i]] for i in having])
                batch = tuple(_to(tensor, device) for tensor in batch)
                index = torch.tensor(having, device=device)
                table = table.index_copy(0, index, backbone(*batch).float())  # keeps the graph
            out[modality] = table
        return out


def _device_of(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device`: pinned first on a GPU so the copy can overlap (non_blocking)."""
    if device.type == "cpu":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def attach_live_backbones(model: nn.Module, data, cfg) -> None:
    """Give `model` trainable backbones (model.backbones) and the train/val splits live features."""
    if not data.examples.get("train"):
        raise ValueError("fine-tuning needs the dataset's examples (load_train_data), not features alone")
    if data.encoders != data.modalities:  # a video's rows are segments: live features per segment are not built
        raise UserError("finetune_last > 0 is for datasets without video; train a video dataset with frozen backbones")
    model.backbones = nn.ModuleDict(
        {m: build_backbone(m, cfg.finetune_last, **backbone_options(cfg)) for m in data.modalities}
    )
    specs = preprocess_for(cfg)
    for name in ("train", "val"):
        inputs = decoded_inputs(data.examples.get(name, []), data.modalities, specs)
        data.splits[name].live = LiveFeatures(model.backbones, inputs, data.feature_dims())


def parameter_groups(model: nn.Module, cfg) -> list[dict]:
    """Heads at cfg.lr; tuned backbone blocks at cfg.finetune_lr (pretrained weights move gently)."""
    backbones = getattr(model, "backbones", None)
    tuned = [p for p in backbones.parameters() if p.requires_grad] if backbones is not None else []
    tuned_ids = {id(p) for p in backbones.parameters()} if backbones is not None else set()
    heads = [p for p in model.parameters() if id(p) not in tuned_ids]
    return [{"params": heads}] + ([{"params": tuned, "lr": cfg.finetune_lr}] if tuned else [])


def trainable_state(backbone: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in backbone.named_parameters() if p.requires_grad}


def detach_backbones(model: nn.Module, data, cfg) -> None:
    """Move the tuned weights into model.backbone_state and recompute every split's features with them
    (load_train_data: the same path `evaluate` and `export` take for a fine-tuned checkpoint)."""
    model.backbone_state = {m: trainable_state(b) for m, b in model.backbones.items()}
    del model.backbones
    data.splits = load_train_data(cfg, data.examples, model.backbone_state).splits
