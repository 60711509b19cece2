"""Parameter groups and the per-iteration learning-rate rule of the official trainer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from train.models import build_model
from train.optim import (
    LRSchedule,
    apply_lr,
    build_optimizer,
    build_param_groups,
    drop_running_stats,
    freeze_batchnorm,
)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1, bias=True)
        self.conv_nobias = nn.Conv3d(4, 4, 1, bias=False)
        self.bn = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, 2)


def test_groups_follow_official_policy():
    groups = {g["name"]: g for g in build_param_groups(_Tiny())}
    assert list(groups) == ["weight", "bias", "bn"]
    assert groups["weight"]["param_names"] == ["conv.weight", "conv_nobias.weight", "fc.weight"]
    assert groups["bias"]["param_names"] == ["conv.bias", "fc.bias"]
    assert groups["bn"]["param_names"] == ["bn.weight", "bn.bias"]
    assert (groups["weight"]["lr_mult"], groups["weight"]["decay_mult"]) == (1.0, 1.0)
    assert (groups["bias"]["lr_mult"], groups["bias"]["decay_mult"]) == (2.0, 0.0)
    assert (groups["bn"]["lr_mult"], groups["bn"]["decay_mult"]) == (1.0, 0.0)


def test_groups_cover_every_parameter_of_a_bat_model_once():
    model = build_model("c2d_resnet18", num_classes=3, nonlocal_mod=1, nltype="bat", k=2, tk=0)
    groups = build_param_groups(model)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_unknown_layer_type_is_named():
    model = _Tiny()
    model.scale = nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError, match="parameter scale of _Tiny has no learning policy"):
        build_param_groups(model)


def test_apply_lr_sets_multipliers():
    opt = build_optimizer(_Tiny(), lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=False)
    apply_lr(opt, lr=0.01, weight_decay=5e-4)
    got = {g["name"]: (g["lr"], g["weight_decay"]) for g in opt.param_groups}
    assert got == {"weight": (0.01, 5e-4), "bias": (0.02, 0.0), "bn": (0.01, 0.0)}


def test_step_schedule_counts_passed_milestones():
    s = LRSchedule(base_lr=0.01, epochs=100, lr_steps=(40, 80))
    assert s.lr_at(epoch=0, iteration=0, iters_per_epoch=10) == pytest.approx(0.01)
    assert s.lr_at(epoch=39, iteration=9, iters_per_epoch=10) == pytest.approx(0.01)
    assert s.lr_at(epoch=40, iteration=0, iters_per_epoch=10) == pytest.approx(0.001)
    assert s.lr_at(epoch=99, iteration=9, iters_per_epoch=10) == pytest.approx(0.0001)


def test_warmup_is_linear_per_iteration_then_schedule():
    s = LRSchedule(base_lr=0.1, epochs=10, lr_steps=(5,), warmup_epochs=2)
    lrs = [s.lr_at(epoch=e, iteration=i, iters_per_epoch=4) for e in range(3) for i in range(4)]
    assert lrs[:8] == pytest.approx([0.1 * k / 8 for k in range(8)])
    assert lrs[8:] == pytest.approx([0.1] * 4)


def test_cosine_spans_the_whole_run():
    s = LRSchedule(base_lr=0.2, epochs=4, cosine=True)
    assert s.lr_at(epoch=0, iteration=0, iters_per_epoch=5) == pytest.approx(0.2)
    assert s.lr_at(epoch=2, iteration=0, iters_per_epoch=5) == pytest.approx(0.1)
    last = s.lr_at(epoch=3, iteration=4, iters_per_epoch=5)
    assert last == pytest.approx(0.2 * 0.5 * (math.cos(19 / 20 * math.pi) + 1))


def test_schedule_rejects_bad_epochs():
    with pytest.raises(ValueError, match="epochs \\(0\\) must be >= 1"):
        LRSchedule(base_lr=0.1, epochs=0)


def test_freeze_bn_keeps_running_stats_and_affine_fixed():
    model = _Tiny()
    model.train()
    assert freeze_batchnorm(model) == 1
    assert not model.bn.training and model.conv.training
    assert not model.bn.weight.requires_grad and not model.bn.bias.requires_grad
    before = model.bn.running_mean.clone()
    model.bn(torch.randn(2, 4, 1, 3, 3) + 5)
    assert torch.equal(model.bn.running_mean, before)


def test_use_affine_drops_running_stats():
    model = _Tiny()
    assert drop_running_stats(model) == 1
    assert model.bn.track_running_stats is False
