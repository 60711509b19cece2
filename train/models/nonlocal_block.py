"""Embedded-Gaussian non-local block (Wang et al. 2018) as the BAT release uses it (`--nltype nl3d`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NonLocal3D(nn.Module):
    """z = x + W(softmax(theta(x)^T phi(x) / sqrt(C')) g(x)), with phi and g on a (1,2,2)-max-pooled x.

    Submodule names (theta, phi.1, g.1, W.0, W.1) are kept for checkpoint compatibility with the
    official release; index 0 of phi and g is the parameter-free max pool.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.inter_channels = max(channels // 2, 1)
        inter = self.inter_channels
        # Registration order g, W, theta, phi is the release's: parameters() (and so the order of
        # optimizer state saved in official checkpoints) lines up with it.
        self.g = nn.Sequential(nn.MaxPool3d(kernel_size=(1, 2, 2)), nn.Conv3d(channels, inter, kernel_size=1))
        self.W = nn.Sequential(nn.Conv3d(inter, channels, kernel_size=1), nn.BatchNorm3d(channels))
        self.theta = nn.Conv3d(channels, inter, kernel_size=1)
        self.phi = nn.Sequential(nn.MaxPool3d(kernel_size=(1, 2, 2)), nn.Conv3d(channels, inter, kernel_size=1))

    def init_weights(self) -> None:
        """Kaiming (fan-out) convs with zero bias, then W's BN at gamma 0 so the block starts as identity."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.W[0].weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.W[0].bias)
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        theta = self.theta(x).flatten(2)  # [N, C', THW]
        phi = self.phi(x).flatten(2)  # [N, C', THW/4]
        g = self.g(x).flatten(2)  # [N, C', THW/4]
        affinity = torch.matmul(theta.transpose(1, 2), phi) * self.inter_channels**-0.5
        attention = F.softmax(affinity, dim=-1)  # [N, THW, THW/4], rows sum to 1
        y = torch.matmul(attention, g.transpose(1, 2))  # [N, THW, C']
        y = y.transpose(1, 2).reshape(n, self.inter_channels, *x.shape[2:])
        return self.W(y) + x
