"""Bilinear Attentional Transform (BAT, Zheng et al. CVPR 2020), video form of the official release.

Shapes: x is [N, C, T, H, W]. BAT predicts, per frame and per channel group, a row matrix P and a
column matrix Q on an m x m grid of H/m x W/m cells and returns P x Q (with P, Q expanded to H x H
and W x W by a Kronecker product with the identity), optionally followed by a learned temporal
mixing (3D-BAT). The Kronecker products are never materialised: the grid is an axis of a reshape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from train.models.errors import ModelConfigError, ModelInputError

# Side of the predicted matrices; the official code fixes it at 7 (ResNet-50 res3/res4 at 224 input).
BAT_MATRIX_SIZE = 7


def matrix_size(length: int, *, s: int = BAT_MATRIX_SIZE) -> int:
    """Grid size m = length // (length // s) used along one spatial axis (7 at 28/14, 8 at 32/16)."""
    if length < s:
        raise ModelInputError(
            f"BAT needs feature maps of at least {s}x{s}, got a side of {length}; "
            "use a larger input (224 or 256) or no BAT in that layer"
        )
    m = length // (length // s)
    if length % m:
        raise ModelInputError(
            f"BAT feature side {length} is not a multiple of its grid size {m} = {length} // ({length} // {s}); "
            "sides that work are multiples of 7 or of 8 up to 63 (224 and 256 inputs)"
        )
    return m


def overlap_average(shift_logits: torch.Tensor, *, m: int) -> torch.Tensor:
    """Place the s x s logits of each shift i at [i:i+s, i:i+s] of an m x m grid, averaged by overlap.

    shift_logits: [..., shifts, s, s] with shifts = m - s + 1. Cells no shift covers (two corners
    when m = s + 1) stay at logit 0, as in the official release.
    """
    shifts, s = shift_logits.shape[-3], shift_logits.shape[-1]
    if shifts != m - s + 1:
        raise ModelInputError(f"got {shifts} shifts of {s}x{s} logits for a {m}x{m} grid; expected {m - s + 1}")
    if shifts == 1:
        return shift_logits[..., 0, :, :]
    total = shift_logits.new_zeros((*shift_logits.shape[:-3], m, m))
    count = shift_logits.new_zeros((m, m))
    for i in range(shifts):
        pad = (i, m - s - i, i, m - s - i)
        total = total + F.pad(shift_logits[..., i, :, :], pad)
        count = count + F.pad(count.new_ones((s, s)), pad)
    return total / count.clamp(min=1)


class BATransform(nn.Module):
    """The transform on C channels: k spatial groups (P, Q per frame) and tk temporal groups (3D-BAT).

    Parameter names (conv1, conv_p, conv_q, conv_t, conv2) match the official release.
    """

    def __init__(self, channels: int, *, k: int, tk: int = 0, ts: int = 4, s: int = BAT_MATRIX_SIZE) -> None:
        super().__init__()
        if k < 1 or channels % k:
            raise ModelConfigError(f"BAT k ({k}) must be >= 1 and divide the channel count {channels}")
        if tk < 0 or (tk and channels % tk):
            raise ModelConfigError(f"BAT tk ({tk}) must be 0 (2D-BAT) or divide the channel count {channels}")
        if ts < 1:
            raise ModelConfigError(f"BAT ts ({ts}) must be >= 1")
        self.channels, self.k, self.tk, self.ts, self.s = channels, k, tk, ts, s
        self.conv1 = nn.Sequential(nn.Conv3d(channels, k, kernel_size=1), nn.BatchNorm3d(k), nn.ReLU(inplace=True))
        self.conv_p = nn.Conv3d(k, s * s * k, kernel_size=(1, s, 1))
        self.conv_q = nn.Conv3d(k, s * s * k, kernel_size=(1, 1, s))
        if tk > 0:
            self.conv_t = nn.Conv3d(k, ts * ts * tk, kernel_size=(ts, 1, 1))
        self.conv2 = nn.Sequential(
            nn.Conv3d(channels, channels, kernel_size=1), nn.BatchNorm3d(channels), nn.ReLU(inplace=True)
        )

    def extra_repr(self) -> str:
        return f"channels={self.channels}, s={self.s}, k={self.k}, tk={self.tk}, ts={self.ts}"

    def _grid_logits(self, conv_out: torch.Tensor, *, m: int) -> torch.Tensor:
        """Conv output [N, k*s*s, T, a, b] (a*b shifts) -> logits [N, k, T, m, m]; channel = (group, row, col)."""
        n, _, t = conv_out.shape[:3]
        s = self.s
        raw = conv_out.reshape(n, self.k, s, s, t, -1).permute(0, 1, 4, 5, 2, 3)  # [N, k, T, shifts, s, s]
        return overlap_average(raw, m=m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        mh, mw = matrix_size(h, s=self.s), matrix_size(w, s=self.s)
        k = self.k
        feat = self.conv1(x)
        rows = F.adaptive_max_pool3d(feat, (t, mh, 1))
        cols = F.adaptive_max_pool3d(feat, (t, 1, mw))
        p = F.softmax(self._grid_logits(self.conv_p(rows), m=mh), dim=-1)  # rows of P sum to 1
        q = F.softmax(self._grid_logits(self.conv_q(cols), m=mw), dim=-2)  # columns of Q sum to 1
        # (P kron I) x: row a*r+i of the output mixes rows b*r+i of x with weights P[a, b].
        y = x.reshape(n, k, c // k, t, mh, h // mh, w)
        y = torch.einsum("ngtab,ngctbiw->ngctaiw", p, y)
        # x (Q kron I): column a*r+j of the output mixes columns b*r+j with weights Q[b, a].
        y = y.reshape(n, k, c // k, t, h, mw, w // mw)
        y = torch.einsum("ngcthbj,ngtba->ngcthaj", y, q).reshape(n, c, t, h, w)
        if self.tk > 0:
            y = self._temporal(y, feat)
        return self.conv2(y)

    def _temporal(self, y: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """3D-BAT: tk matrices ts x ts (rows sum to 1) mix the T/ts-long time blocks of each group."""
        n, c, t, h, w = y.shape
        ts, tk = self.ts, self.tk
        if t % ts:
            raise ModelInputError(f"3D-BAT needs the frame count at its layer ({t}) to be a multiple of ts ({ts})")
        pooled = F.adaptive_avg_pool3d(feat, (ts, 1, 1))
        mix = F.softmax(self.conv_t(pooled).reshape(n, tk, ts, ts), dim=-1)
        y = y.reshape(n, tk, c // tk, ts, t // ts, h, w)
        return torch.einsum("ngab,ngcbihw->ngcaihw", mix, y).reshape(n, c, t, h, w)


class BATBlock(nn.Module):
    """Residual BAT block: x + Dropout3d(conv2(BATransform(conv1(x)))), at half the channels inside."""

    def __init__(
        self, channels: int, *, k: int = 4, tk: int = 0, ts: int = 4, nl_drop: float = 0.2, s: int = BAT_MATRIX_SIZE
    ) -> None:
        super().__init__()
        inter = channels // 2
        self.conv1 = nn.Sequential(nn.Conv3d(channels, inter, kernel_size=1), nn.BatchNorm3d(inter), nn.ReLU(inplace=True))
        self.batransform = BATransform(inter, k=k, tk=tk, ts=ts, s=s)
        # ReLU before the residual add, as in the official block.
        self.conv2 = nn.Sequential(nn.Conv3d(inter, channels, kernel_size=1), nn.BatchNorm3d(channels), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout3d(p=nl_drop)

    def init_weights(self) -> None:
        """Kaiming (fan-out) convs with zero bias and every BN at gamma 1, beta 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.conv2(self.batransform(self.conv1(x))))
