"""ResNet3D: the C2D / I3D ResNets of the BAT release as one configurable class.

Module names follow torchvision's ResNet (conv1, bn1, layer1..4, layerX.i.{conv1,bn1,...,downsample},
fc) and the inserted blocks are `layerX.nl{i}`: they are kept stable so official checkpoints load with
strict=True. Only the stem and the blocks' first conv carry a temporal kernel; the only temporal
downsampling is a max pool (2,1,1) after layer1.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from train.models.attention import AttentionLayer
from train.models.errors import ModelConfigError, ModelInputError

# Side of the head's average pool: the layer4 map at 224 input (8 at 256 gives a 2x2 logit map, averaged).
HEAD_POOL_SIZE = 7


def _check_temporal_kernel(temporal_kernel: int) -> int:
    if temporal_kernel < 1 or temporal_kernel % 2 == 0:
        raise ModelConfigError(f"temporal_kernel ({temporal_kernel}) must be an odd number >= 1")
    return temporal_kernel


class BasicBlock3D(nn.Module):
    """Two 3x3 convs (ResNet-18/34); conv1 has the temporal kernel and the spatial stride."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, temporal_kernel: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        kt = _check_temporal_kernel(temporal_kernel)
        self.conv1 = nn.Conv3d(in_channels, planes, kernel_size=(kt, 3, 3), stride=(1, stride, stride),
                               padding=(kt // 2, 1, 1), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=(1, 3, 3), padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck3D(nn.Module):
    """1x1 (temporal kernel) -> 3x3 (spatial stride) -> 1x1 bottleneck (ResNet-50/101), stride on the 3x3."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, temporal_kernel: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        kt = _check_temporal_kernel(temporal_kernel)
        self.conv1 = nn.Conv3d(in_channels, planes, kernel_size=(kt, 1, 1), padding=(kt // 2, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=(1, 3, 3), stride=(1, stride, stride),
                               padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock3D] | type[Bottleneck3D]


def nonlocal_mods(nonlocal_mod: int | Sequence[int]) -> tuple[int, int]:
    """`--nonlocal_mod` as (layer2, layer3): one int applies to both, a one-item list is repeated."""
    is_list = isinstance(nonlocal_mod, Sequence) and not isinstance(nonlocal_mod, str)
    mods = [int(m) for m in nonlocal_mod] if is_list else [int(nonlocal_mod)]
    if not 1 <= len(mods) <= 2:
        raise ModelConfigError(f"nonlocal_mod ({nonlocal_mod!r}) must be one int or two [layer2, layer3]")
    if any(m < 1 for m in mods):
        raise ModelConfigError(f"nonlocal_mod ({nonlocal_mod!r}) must be >= 1 (1000 = no inserted blocks)")
    return (mods[0], mods[-1])


class ResNet3D(nn.Module):
    """Video ResNet for N,C,T,H,W clips -> logits [N, num_classes], fully convolutional head.

    temporal_kernels[i][j] is the temporal kernel (1 or 3) of block j of layer i+1; attention blocks
    from `attn_layer` go after block j of layer2/layer3 when j % mod == mod - 1 (named nl{j}).
    """

    def __init__(
        self,
        *,
        block: Block,
        layers: Sequence[int],
        temporal_kernels: Sequence[Sequence[int]],
        stem_temporal_kernel: int = 1,
        num_classes: int = 400,
        dropout: float = 0.5,
        attn_layer: AttentionLayer | None = None,
        nonlocal_mod: int | Sequence[int] = 1000,
        width: int = 64,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or len(temporal_kernels) != 4:
            raise ModelConfigError("layers and temporal_kernels must have one entry per stage (4)")
        for depth, kernels in zip(layers, temporal_kernels, strict=True):
            if len(kernels) != depth:
                raise ModelConfigError(f"temporal kernels {list(kernels)} do not match a stage of {depth} blocks")
        if num_classes < 1:
            raise ModelConfigError(f"num_classes ({num_classes}) must be >= 1")
        mod2, mod3 = nonlocal_mods(nonlocal_mod)
        kt = _check_temporal_kernel(stem_temporal_kernel)
        self.block, self.in_channels = block, width
        self.conv1 = nn.Conv3d(3, width, kernel_size=(kt, 7, 7), stride=(1, 2, 2), padding=(kt // 2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=0)  # 112 -> 55, as released
        self.layer1 = self._make_layer(width, temporal_kernels[0], stride=1)
        self.temp_pool = nn.MaxPool3d(kernel_size=(2, 1, 1), stride=(2, 1, 1))
        self.layer2 = self._make_layer(width * 2, temporal_kernels[1], stride=2, attn_layer=attn_layer, mod=mod2)
        self.layer3 = self._make_layer(width * 4, temporal_kernels[2], stride=2, attn_layer=attn_layer, mod=mod3)
        self.layer4 = self._make_layer(width * 8, temporal_kernels[3], stride=2)
        self.dropout = nn.Dropout(p=dropout)
        # A 1x1x1 conv rather than Linear: the official checkpoints store fc.weight as [classes, C, 1, 1, 1].
        self.fc = nn.Conv3d(width * 8 * block.expansion, num_classes, kernel_size=1, bias=True)
        self.init_weights()

    def _make_layer(self, planes: int, kernels: Sequence[int], *, stride: int,
                    attn_layer: AttentionLayer | None = None, mod: int = 1000) -> nn.Sequential:
        out_channels = planes * self.block.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv3d(self.in_channels, out_channels, kernel_size=1, stride=(1, stride, stride), bias=False),
                nn.BatchNorm3d(out_channels),
            )
        modules: list[tuple[str, nn.Module]] = []
        for i, kt in enumerate(kernels):
            modules.append((str(i), self.block(self.in_channels, planes, stride=stride if i == 0 else 1,
                                               temporal_kernel=kt, downsample=downsample if i == 0 else None)))
            self.in_channels = out_channels
            if attn_layer is not None and i % mod == mod - 1:
                modules.append((f"nl{i}", attn_layer(out_channels)))
        return nn.Sequential(OrderedDict(modules))

    def init_weights(self) -> None:
        """Official init: conv weight ~ N(0, sqrt(2 / (kT*kH*out))), BN 1/0; inserted blocks then their own."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                fan = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan))
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if module is not self and hasattr(module, "init_weights"):
                module.init_weights()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone: [N, 3, T, H, W] -> layer4 map [N, C, T // 2, 7, 7] at 224 input (8x8 at 256)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.temp_pool(self.layer1(x))
        return self.layer4(self.layer3(self.layer2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ModelInputError(f"expected a [N, C, T, H, W] clip tensor, got shape {tuple(x.shape)}")
        x = self.features(x)
        t, h, w = x.shape[2:]
        # (T, 7, 7) window, stride 1: 1x1 at 224, 2x2 at 256 (then averaged); clipped for small inputs.
        x = F.avg_pool3d(x, kernel_size=(t, min(HEAD_POOL_SIZE, h), min(HEAD_POOL_SIZE, w)), stride=1)
        x = self.fc(self.dropout(x))
        return x.mean(dim=(2, 3, 4))
