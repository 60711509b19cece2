"""The BAT video models: C2D / I3D ResNets with optional non-local or BAT blocks, built by name.

`build_model("c2d_resnet50", nonlocal_mod=2, nltype="bat", k=8)` gives the official C2D+BAT network,
with state_dict keys and shapes identical to the released checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from train.models.attention import attention_names, create_attention
from train.models.bat import BATBlock, BATransform
from train.models.errors import ModelConfigError, ModelInputError
from train.models.nonlocal_block import NonLocal3D
from train.models.resnet3d import BasicBlock3D, Bottleneck3D, ResNet3D

__all__ = [
    "BATBlock", "BATransform", "BasicBlock3D", "Bottleneck3D", "ModelConfigError", "ModelInputError",
    "NonLocal3D", "ResNet3D", "attention_names", "build_model", "create_attention", "model_names",
    "register_model",
]

_MODEL_ENTRYPOINTS: dict[str, Callable[..., ResNet3D]] = {}


def register_model(factory: Callable[..., ResNet3D]) -> Callable[..., ResNet3D]:
    """Decorator: make a factory buildable by its function name."""
    _MODEL_ENTRYPOINTS[factory.__name__] = factory
    return factory


def model_names() -> list[str]:
    """Every architecture `build_model` accepts."""
    return sorted(_MODEL_ENTRYPOINTS)


# Temporal kernels per stage: 1 = C2D block, 3 = inflated (I3D) block. Stems: 1 (C2D) or 5 (I3D).
def _c2d(layers: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    return tuple((1,) * n for n in layers)


def _alternate(n: int) -> tuple[int, ...]:
    """3, 1, 3, 1, ... over n blocks: inflate every other block starting with the first."""
    return tuple(3 if i % 2 == 0 else 1 for i in range(n))


# Official patterns (checkpoint-compatible): I3D-50 and I3D-101 inflate res2 fully, res3/res4 every other
# block from the first, res5 the middle block; I3D-18 inflates every block.
I3D_50_KERNELS = ((3, 3, 3), _alternate(4), _alternate(6), (1, 3, 1))
I3D_101_KERNELS = ((3, 3, 3), _alternate(4), _alternate(23), (1, 3, 1))
I3D_18_KERNELS = ((3, 3), (3, 3), (3, 3), (3, 3))
# Ours (the release has no I3D-34): the I3D-50 pattern, since ResNet-34 has the same stage depths.
I3D_34_KERNELS = I3D_50_KERNELS


@register_model
def c2d_resnet18(**kwargs) -> ResNet3D:
    """C2D ResNet-18 (ours; the release has no such factory): 2-D kernels everywhere."""
    return ResNet3D(block=BasicBlock3D, layers=(2, 2, 2, 2), temporal_kernels=_c2d((2, 2, 2, 2)), **kwargs)


@register_model
def c2d_resnet34(**kwargs) -> ResNet3D:
    """C2D ResNet-34."""
    return ResNet3D(block=BasicBlock3D, layers=(3, 4, 6, 3), temporal_kernels=_c2d((3, 4, 6, 3)), **kwargs)


@register_model
def c2d_resnet50(**kwargs) -> ResNet3D:
    """C2D ResNet-50: the paper's C2D baseline (24.33M parameters at 400 classes)."""
    return ResNet3D(block=Bottleneck3D, layers=(3, 4, 6, 3), temporal_kernels=_c2d((3, 4, 6, 3)), **kwargs)


@register_model
def c2d_resnet101(**kwargs) -> ResNet3D:
    """C2D ResNet-101."""
    return ResNet3D(block=Bottleneck3D, layers=(3, 4, 23, 3), temporal_kernels=_c2d((3, 4, 23, 3)), **kwargs)


@register_model
def i3d_resnet18(**kwargs) -> ResNet3D:
    """I3D ResNet-18: 5x7x7 stem, every block's first conv 3x3x3 (the release's pattern)."""
    return ResNet3D(block=BasicBlock3D, layers=(2, 2, 2, 2), temporal_kernels=I3D_18_KERNELS,
                    stem_temporal_kernel=5, **kwargs)


@register_model
def i3d_resnet34(**kwargs) -> ResNet3D:
    """I3D ResNet-34 (ours): the I3D-50 inflation pattern on basic blocks."""
    return ResNet3D(block=BasicBlock3D, layers=(3, 4, 6, 3), temporal_kernels=I3D_34_KERNELS,
                    stem_temporal_kernel=5, **kwargs)


@register_model
def i3d_resnet50(**kwargs) -> ResNet3D:
    """I3D ResNet-50: the paper's I3D baseline (28.04M parameters at 400 classes)."""
    return ResNet3D(block=Bottleneck3D, layers=(3, 4, 6, 3), temporal_kernels=I3D_50_KERNELS,
                    stem_temporal_kernel=5, **kwargs)


@register_model
def i3d_resnet101(**kwargs) -> ResNet3D:
    """I3D ResNet-101."""
    return ResNet3D(block=Bottleneck3D, layers=(3, 4, 23, 3), temporal_kernels=I3D_101_KERNELS,
                    stem_temporal_kernel=5, **kwargs)


def build_model(
    arch: str,
    *,
    num_classes: int = 400,
    nonlocal_mod: int | Sequence[int] = 1000,
    nltype: str = "nl3d",
    k: int = 4,
    tk: int = 0,
    ts: int = 4,
    nl_drop: float = 0.2,
    dropout: float = 0.5,
) -> ResNet3D:
    """Build `arch` with the official `main.py` options; the result maps [N, 3, T, H, W] to [N, num_classes]."""
    if arch not in _MODEL_ENTRYPOINTS:
        raise ModelConfigError(f"unknown arch {arch!r}; valid names are {', '.join(model_names())}")
    attn_layer = create_attention(nltype, k=k, tk=tk, ts=ts, nl_drop=nl_drop)
    return _MODEL_ENTRYPOINTS[arch](num_classes=num_classes, dropout=dropout, attn_layer=attn_layer,
                                    nonlocal_mod=nonlocal_mod)
