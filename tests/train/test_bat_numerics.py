"""BAT numerics against an independent, slow float64 reference written from the spec's description.

The reference loops over samples, frames, shifts, groups and channels, builds the Kronecker
matrices explicitly with numpy and multiplies them out, so it shares no code path with the
reshape/einsum implementation in train/models/bat.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.models import BATransform, create_attention
from train.models import c2d_resnet50 as c2d_resnet50_factory
from train.models.bat import overlap_average

S = 7  # matrix side fixed by the release


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).numpy()


def conv1x1_bn_relu(x: np.ndarray, conv: torch.nn.Conv3d, bn: torch.nn.BatchNorm3d) -> np.ndarray:
    """[N, Cin, T, H, W] -> [N, Cout, T, H, W] with an eval-mode BN and ReLU."""
    y = np.einsum("oc,nc...->no...", _np(conv.weight)[:, :, 0, 0, 0], x) + _np(conv.bias)[None, :, None, None, None]
    shape = (1, -1, 1, 1, 1)
    y = (y - _np(bn.running_mean).reshape(shape)) / np.sqrt(_np(bn.running_var).reshape(shape) + bn.eps)
    y = y * _np(bn.weight).reshape(shape) + _np(bn.bias).reshape(shape)
    return np.maximum(y, 0.0)


def softmax(a: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def grid_matrices(pooled: np.ndarray, weight: np.ndarray, bias: np.ndarray, k: int, m: int) -> np.ndarray:
    """pooled [k_in, m] (one frame), conv weight [k*49, k_in, 7] -> logits [k, m, m], overlap-averaged."""
    shifts = m - S + 1
    per_shift = np.zeros((shifts, k, S, S))
    for i in range(shifts):
        window = pooled[:, i:i + S]  # [k_in, 7]
        for g in range(k):
            for a in range(S):
                for b in range(S):
                    o = g * S * S + a * S + b
                    per_shift[i, g, a, b] = bias[o] + np.sum(weight[o] * window)
    logits = np.zeros((k, m, m))
    for row in range(m):
        for col in range(m):
            covering = [i for i in range(shifts) if i <= row < i + S and i <= col < i + S]
            if covering:  # uncovered corners stay at logit 0
                logits[:, row, col] = np.mean([per_shift[i, :, row - i, col - i] for i in covering], axis=0)
    return logits


def reference_batransform(module: BATransform, x_t: torch.Tensor, *, transpose_p: bool = False) -> np.ndarray:
    """The spec's BAT, one sample / frame / channel at a time, in float64."""
    x = _np(x_t)
    n_batch, channels, frames, height, width = x.shape
    k, tk, ts = module.k, module.tk, module.ts
    feat = conv1x1_bn_relu(x, module.conv1[0], module.conv1[1])  # [N, k, T, H, W]
    m = height // (height // S)
    rh, rw = height // m, width // m
    wp = _np(module.conv_p.weight)[:, :, 0, :, 0]  # [k*49, k, 7]
    wq = _np(module.conv_q.weight)[:, :, 0, 0, :]
    out = np.zeros_like(x)
    for n in range(n_batch):
        for t in range(frames):
            rows = np.stack([feat[n, :, t, a * rh:(a + 1) * rh, :].max(axis=(1, 2)) for a in range(m)], axis=1)
            cols = np.stack([feat[n, :, t, :, b * rw:(b + 1) * rw].max(axis=(1, 2)) for b in range(m)], axis=1)
            p = softmax(grid_matrices(rows, wp, _np(module.conv_p.bias), k, m), axis=2)  # rows sum to 1
            q = softmax(grid_matrices(cols, wq, _np(module.conv_q.bias), k, m), axis=1)  # columns sum to 1
            for c in range(channels):
                g = c // (channels // k)
                pg = p[g].T if transpose_p else p[g]
                big_p = np.kron(pg, np.eye(rh))
                big_q = np.kron(q[g], np.eye(rw))
                out[n, c, t] = big_p @ x[n, c, t] @ big_q
    if tk > 0:
        wt = _np(module.conv_t.weight)[:, :, :, 0, 0]  # [tk*ts*ts, k, ts]
        bt = _np(module.conv_t.bias)
        block = frames // ts
        for n in range(n_batch):
            pooled = np.stack([feat[n, :, j * block:(j + 1) * block].mean(axis=(1, 2, 3)) for j in range(ts)], axis=1)
            logits = np.array([bt[o] + np.sum(wt[o] * pooled) for o in range(tk * ts * ts)]).reshape(tk, ts, ts)
            mix = softmax(logits, axis=2)
            for c in range(channels):
                big_t = np.kron(mix[c // (channels // tk)], np.eye(block))  # [T, T]
                out[n, c] = np.einsum("ts,shw->thw", big_t, out[n, c])
    return conv1x1_bn_relu(out, module.conv2[0], module.conv2[1])


def randomised(module: torch.nn.Module, *, seed: int) -> torch.nn.Module:
    """Weights and BN statistics far from init, so that P, Q and the temporal mix are far from uniform."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 if "conv_" in name else 0.3))
        for bn in module.modules():
            if isinstance(bn, torch.nn.BatchNorm3d):
                bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=gen) * 0.1)
                bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=gen) + 0.5)
    return module.eval()


# Feature sizes BAT sees in layer2 / layer3: 28 / 14 at 224 input (m = 7), 32 / 16 at 256 (m = 8).
@pytest.mark.parametrize("side", [28, 14, 32, 16])
@pytest.mark.parametrize(("tk", "ts", "frames"), [(0, 4, 4), (2, 4, 4), (2, 2, 4)], ids=["2d", "3d-ts4", "3d-ts2"])
def test_bat_transform_matches_the_reference(side, tk, ts, frames):
    module = randomised(BATransform(16, k=4, tk=tk, ts=ts), seed=side + 100 * tk + ts)
    x = torch.randn(2, 16, frames, side, side, generator=torch.Generator().manual_seed(side), dtype=torch.float64)
    with torch.no_grad():
        got = module.double()(x).numpy()
    expected = reference_batransform(module, x)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-10)


def test_reference_tells_p_from_its_transpose():
    """Guard: the comparison is sensitive to the row/column convention."""
    module = randomised(BATransform(8, k=2), seed=7).double()
    x = torch.randn(1, 8, 1, 32, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        got = module(x).numpy()
    wrong = reference_batransform(module, x, transpose_p=True)
    assert np.abs(got - wrong).max() > 1e-3


def test_overlap_average_places_two_shifts_on_an_8x8_grid():
    raw = torch.arange(2 * 49, dtype=torch.float64).reshape(2, 7, 7) + 1.0
    grid = overlap_average(raw, m=8)
    assert grid.shape == (8, 8)
    assert grid[0, 7] == 0 and grid[7, 0] == 0  # the two uncovered corners stay at logit 0
    assert grid[0, 0] == raw[0, 0, 0] and grid[7, 7] == raw[1, 6, 6]
    assert grid[0, 3] == raw[0, 0, 3] and grid[7, 4] == raw[1, 6, 3]  # covered once
    assert grid[3, 4] == (raw[0, 3, 4] + raw[1, 2, 3]) / 2  # covered by both shifts
    assert torch.equal(overlap_average(raw[:1], m=7), raw[0])


@pytest.mark.parametrize(("size", "sides"), [(224, {28, 14}), (256, {32, 16})])
def test_bat_inside_a_model_matches_the_reference(size, sides):
    """In place in a C2D network (1/8 width): each BAT sees the spec's map sizes and computes the spec's transform."""
    torch.manual_seed(0)
    model = c2d_resnet50_factory(
        width=8, num_classes=5, attn_layer=create_attention("bat", k=4, tk=2, ts=2), nonlocal_mod=[2, 3]
    )
    randomised(model, seed=size)
    seen: list[tuple[BATransform, torch.Tensor, torch.Tensor]] = []
    for module in model.modules():
        if isinstance(module, BATransform):
            module.register_forward_hook(lambda mod, args, out: seen.append((mod, args[0].clone(), out.clone())))
    with torch.no_grad():
        model(torch.randn(1, 3, 8, size, size))
    assert {inp.shape[-1] for _, inp, _ in seen} == sides
    assert len(seen) == 4  # layer2.nl1, layer2.nl3, layer3.nl2, layer3.nl5
    for module, inp, out in seen:
        expected = reference_batransform(module, inp)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
