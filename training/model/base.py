"""The freezing logic every backbone shares (training/model/backbones.py, hf_image.py)."""

from __future__ import annotations

from torch import nn


class Backbone(nn.Module):
    """Freezing logic shared by the three backbones; subclasses list their blocks in order."""

    out_dim: int
    modality: str

    def blocks(self) -> list[nn.Module]:
        """Trainable units from input to output (the last ones are unfrozen first)."""
        raise NotImplementedError

    def tail(self) -> list[nn.Module]:
        """Modules after the last block (final norm/head); trained whenever any block is."""
        return []

    def finetune_last(self, n: int) -> Backbone:
        self.requires_grad_(False)
        self._trainable = (self.blocks()[-n:] + self.tail()) if n > 0 else []
        for module in self._trainable:
            module.requires_grad_(True)
        return self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(False)
        self.training = mode
        for module in getattr(self, "_trainable", []):
            module.train(mode)
        for module in self.modules():  # too few images per batch to re-estimate BN statistics
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def block_list(model: nn.Module, owners: tuple[str, ...], names: tuple[str, ...]) -> list[nn.Module]:
    """A Hugging Face model's blocks, input to output: the first ModuleList called one of `names` on the first of
    the `owners` submodules it has, or on the model itself (transformers moves them between versions)."""
    for owner in [getattr(model, o) for o in owners if hasattr(model, o)] + [model]:
        for name in names:
            if isinstance(blocks := getattr(owner, name, None), nn.ModuleList):
                return list(blocks)
    raise ValueError(f"no block list ({', '.join(names)}) in {type(model).__name__}")
