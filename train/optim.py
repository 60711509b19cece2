"""SGD parameter groups and the per-iteration learning-rate rule of the official BAT trainer.

Groups: conv/linear weights (lr x1, weight decay x1), their biases (lr x2, no decay),
normalisation weights and biases (lr x1, no decay). The learning rate is recomputed at
every iteration: linear warm-up, then cosine (--coslr) or steps of 0.1 (--lr_steps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
_WEIGHTED_TYPES = (nn.modules.conv._ConvNd, nn.Linear)

# name -> (lr multiplier, weight-decay multiplier); order is the official group order.
GROUP_POLICY: dict[str, tuple[float, float]] = {"weight": (1.0, 1.0), "bias": (2.0, 0.0), "bn": (1.0, 0.0)}


def build_param_groups(model: nn.Module) -> list[dict]:
    """Split parameters into the official weight / bias / bn groups; unknown layer types are an error."""
    members: dict[str, list[tuple[str, nn.Parameter]]] = {name: [] for name in GROUP_POLICY}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if id(param) in seen:
                continue
            if isinstance(module, _NORM_TYPES):
                group = "bn"
            elif isinstance(module, _WEIGHTED_TYPES) and param_name in ("weight", "bias"):
                group = param_name
            else:
                raise ValueError(
                    f"parameter {full} of {type(module).__name__} has no learning policy "
                    "(known: conv/linear weight and bias, normalisation layers)"
                )
            seen.add(id(param))
            members[group].append((full, param))
    groups = []
    for name, (lr_mult, decay_mult) in GROUP_POLICY.items():
        if members[name]:
            groups.append({
                "name": name,
                "params": [p for _, p in members[name]],
                "param_names": [n for n, _ in members[name]],
                "lr_mult": lr_mult,
                "decay_mult": decay_mult,
            })
    return groups


def build_optimizer(
    model: nn.Module, *, lr: float, momentum: float, weight_decay: float, nesterov: bool
) -> torch.optim.SGD:
    """SGD over the official parameter groups; lr and decay are set per group by apply_lr."""
    groups = build_param_groups(model)
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    apply_lr(optimizer, lr=lr, weight_decay=weight_decay)
    return optimizer


def apply_lr(optimizer: torch.optim.Optimizer, *, lr: float, weight_decay: float) -> None:
    """Set every group's lr and weight decay from the base values and its multipliers."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
        group["weight_decay"] = weight_decay * group.get("decay_mult", 1.0)


@dataclass(frozen=True)
class LRSchedule:
    """The official rule: warm-up, then cosine or step decay; evaluated at every iteration."""

    base_lr: float
    epochs: int
    lr_steps: Sequence[float] = (20.0, 40.0)
    warmup_epochs: int = 0
    cosine: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs ({self.epochs}) must be >= 1")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be >= 0")

    def lr_at(self, *, epoch: int, iteration: int, iters_per_epoch: int) -> float:
        """Learning rate for `iteration` (0-based) of `epoch` (0-based)."""
        step = epoch * iters_per_epoch + iteration
        if epoch < self.warmup_epochs:
            # Linear from 0 over the warm-up iterations (the first step trains at lr 0, as upstream).
            return self.base_lr * step / (self.warmup_epochs * iters_per_epoch)
        if self.cosine:
            total = iters_per_epoch * self.epochs
            return self.base_lr * 0.5 * (math.cos(step / total * math.pi) + 1.0)
        passed = sum(1 for milestone in self.lr_steps if epoch >= milestone)
        return self.base_lr * 0.1**passed


def freeze_batchnorm(model: nn.Module) -> int:
    """--freeze_bn: BN layers in eval mode (running stats fixed) and their affine params frozen."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            for param in module.parameters(recurse=False):
                param.requires_grad_(False)
            count += 1
    return count


def drop_running_stats(model: nn.Module) -> int:
    """--use_affine: BN normalises with batch statistics only (no running averages)."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.track_running_stats = False
            count += 1
    return count
