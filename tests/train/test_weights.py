"""Checkpoint loading: safe unpickling, official layout, `module.` prefixes, 2-D -> 3-D inflation, reports."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from train.models import build_model
from train.weights import (
    CheckpointError,
    adapt_state_dict,
    checkpoint_state_dict,
    inflate_weight,
    load_checkpoint,
    load_into,
)

BAT_OPTIONS = {"nonlocal_mod": 2, "nltype": "bat", "k": 8}


def as_2d(state: dict[str, torch.Tensor], *, num_classes: int = 1000) -> dict[str, torch.Tensor]:
    """A 2-D ImageNet-style state dict from a C2D one: [O, I, 1, kh, kw] -> [O, I, kh, kw], Linear fc."""
    out = {k: (v.squeeze(2) if v.dim() == 5 else v.clone()) for k, v in state.items()}
    gen = torch.Generator().manual_seed(0)
    out["fc.weight"] = torch.randn(num_classes, state["fc.weight"].shape[1], generator=gen)
    out["fc.bias"] = torch.randn(num_classes, generator=gen)
    return out


@pytest.fixture(scope="module")
def c2d_bat_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_model("c2d_resnet50", **BAT_OPTIONS).state_dict()


def test_official_checkpoint_layout_loads_strictly(tmp_path: Path):
    torch.manual_seed(1)
    source = build_model("i3d_resnet18", num_classes=10, nonlocal_mod=2, nltype="bat", k=4, tk=2)
    path = tmp_path / "i3d_resnet18_checkpoint.pth.tar"
    # DataParallel-style keys inside the official dict.
    torch.save({"epoch": 7, "arch": "i3d_resnet18", "best_prec1": torch.tensor(61.5),
                "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()},
                "optim": {"state": {}, "param_groups": []}}, path)
    checkpoint = load_checkpoint(path)
    assert checkpoint["epoch"] == 7 and checkpoint["arch"] == "i3d_resnet18"
    torch.manual_seed(2)
    target = build_model("i3d_resnet18", num_classes=10, nonlocal_mod=2, nltype="bat", k=4, tk=2)
    report = load_into(target, path, strict=True)
    assert report.exact and len(report.loaded) == len(source.state_dict())
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_bare_state_dict_is_accepted(tmp_path: Path):
    model = build_model("c2d_resnet18", num_classes=4)
    path = tmp_path / "bare.pth"
    torch.save(model.state_dict(), path)
    checkpoint = load_checkpoint(path)
    assert checkpoint_state_dict(checkpoint).keys() == model.state_dict().keys()
    assert load_into(build_model("c2d_resnet18", num_classes=4), path, strict=True).exact


def test_pickled_objects_need_the_trusted_legacy_flag(tmp_path: Path):
    model = build_model("c2d_resnet18", num_classes=4)
    path = tmp_path / "legacy.pth.tar"
    torch.save({"state_dict": model.state_dict(), "args": argparse.Namespace(lr=0.01)}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == (f"{path}: holds pickled Python objects beyond tensors (argparse.Namespace); "
                                 "if you trust this file, add --trusted-legacy-checkpoint (full unpickling runs any "
                                 "code the file holds)")
    checkpoint = load_checkpoint(path, trusted_legacy=True)
    assert checkpoint["args"].lr == 0.01
    assert load_into(build_model("c2d_resnet18", num_classes=4), path, trusted_legacy=True, strict=True).exact


def test_old_serialization_format_with_objects_also_points_to_the_flag(tmp_path: Path):
    path = tmp_path / "old.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "args": argparse.Namespace(x=1)}, path,
               _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"old\.pth: cannot be read with weights_only=True .*"
                                              r"add --trusted-legacy-checkpoint \(full unpickling"):
        load_checkpoint(path)
    assert load_checkpoint(path, trusted_legacy=True)["args"].x == 1


RETRY = "check --resume (a file written by torch.save, e.g. a run's {arch}_checkpoint.pth.tar)"


def _error(path: Path) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, given_as="--resume")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_every_unreadable_file_is_one_line_naming_the_flag(tmp_path: Path):
    assert _error(tmp_path / "nope.pth") == f"{tmp_path / 'nope.pth'}: no such checkpoint file; {RETRY}"
    text = tmp_path / "text.pth"
    text.write_text("hello\n")  # 6 bytes: torch.load itself says "KeyError: 101"
    assert _error(text) == f"{text}: is a text file ('hello'...), not a checkpoint; {RETRY}"
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert _error(empty) == f"{empty}: is empty (0 bytes), not a checkpoint; {RETRY}"
    noise = tmp_path / "noise.pth"
    noise.write_bytes(bytes(range(1, 256)) * 16)
    assert _error(noise) == (f"{noise}: is not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle); "
                             f"{RETRY}")
    truncated = tmp_path / "truncated.pth"
    torch.save({"w": torch.ones(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    assert _error(truncated) == (f"{truncated}: is a truncated or corrupt checkpoint (500 bytes; its zip directory "
                                 f"is missing); {RETRY}")
    listing = tmp_path / "list.pth"
    torch.save([torch.ones(1)], listing)
    assert _error(listing) == f"{listing}: holds a list, not a dict of tensors; {RETRY}"


def test_2d_imagenet_weights_inflate_into_i3d_with_bat(c2d_bat_state):
    imagenet = as_2d(c2d_bat_state)
    imagenet["head.extra.weight"] = torch.ones(3)  # a key our model lacks: ignored, reported
    model = build_model("i3d_resnet50", **BAT_OPTIONS)
    adapted, report = adapt_state_dict(model, {"state_dict": {f"module.{k}": v for k, v in imagenet.items()}})
    assert report.missing == []
    assert report.unexpected == ["head.extra.weight"]
    assert report.skipped == ["fc.weight", "fc.bias"]  # 1000 ImageNet classes vs 400
    assert report.reasons["fc.weight"] == "checkpoint shape [1000, 2048] vs model shape [400, 2048, 1, 1, 1]"
    assert "fc.weight" not in adapted
    four_d = {k for k, v in imagenet.items() if v.dim() == 4}
    assert set(report.inflated) == four_d  # every 2-D kernel, 2-D BAT's conv_p / conv_q included
    stem = imagenet["conv1.weight"]
    assert torch.equal(adapted["conv1.weight"], stem.unsqueeze(2).repeat(1, 1, 5, 1, 1) / 5)
    inflated_block = imagenet["layer1.0.conv1.weight"]
    assert adapted["layer1.0.conv1.weight"].shape == (64, 64, 3, 1, 1)
    assert torch.equal(adapted["layer1.0.conv1.weight"], inflated_block.unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3)
    assert torch.equal(adapted["layer2.nl1.batransform.conv_p.weight"],
                       imagenet["layer2.nl1.batransform.conv_p.weight"].unsqueeze(2))
    assert torch.equal(adapted["layer3.0.bn2.running_var"], imagenet["layer3.0.bn2.running_var"])

    model.load_state_dict(adapted, strict=False)
    # The inflated stem gives the 2-D response on a static clip, away from the temporal border.
    frame = torch.randn(1, 3, 32, 32)
    clip = frame.unsqueeze(2).repeat(1, 1, 7, 1, 1)
    with torch.no_grad():
        response_3d = model.conv1(clip)
        response_2d = F.conv2d(frame, stem, stride=2, padding=3)
    for t in (2, 3, 4):
        assert torch.allclose(response_3d[:, :, t], response_2d, atol=1e-5)
    assert not torch.allclose(response_3d[:, :, 0], response_2d, atol=1e-3)  # zero temporal padding at the border


def test_2d_weights_into_c2d_give_back_the_same_model(c2d_bat_state):
    imagenet = as_2d(c2d_bat_state, num_classes=400)
    imagenet["fc.weight"] = c2d_bat_state["fc.weight"].flatten(1)  # a Linear head of the right size
    imagenet["fc.bias"] = c2d_bat_state["fc.bias"]
    model = build_model("c2d_resnet50", **BAT_OPTIONS)
    adapted, report = adapt_state_dict(model, imagenet)
    assert report.skipped == [] and report.missing == [] and "fc.weight" in report.inflated
    assert adapted.keys() == c2d_bat_state.keys()
    for key, value in c2d_bat_state.items():
        assert torch.equal(adapted[key], value), key


def test_plain_2d_weights_leave_inserted_blocks_missing(c2d_bat_state):
    plain = {k: v for k, v in as_2d(c2d_bat_state).items() if ".nl" not in k}
    model = build_model("c2d_resnet50", **BAT_OPTIONS)
    _, report = adapt_state_dict(model, plain)
    assert report.missing and all(".nl" in key for key in report.missing)
    assert not any(key.endswith("num_batches_tracked") for key in report.missing)  # counters are not weights
    assert "missing" in report.details()


def test_strict_loading_lists_what_differs_in_one_line(tmp_path: Path, c2d_bat_state):
    path = tmp_path / "imagenet.pth"
    torch.save(as_2d(c2d_bat_state), path)
    model = build_model("i3d_resnet50", **BAT_OPTIONS)
    before = model.conv1.weight.clone()
    with pytest.raises(CheckpointError) as caught:
        load_into(model, path, strict=True)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: does not fit the model (")
    assert "of another shape: fc.weight checkpoint shape [1000, 2048] vs model shape [400, 2048, 1, 1, 1]" in message
    assert message.endswith("; pass the model flags it was trained with (--arch, --nonlocal_mod, --nltype, --k, --tk, "
                            "--num_classes), or --non-strict to load what fits")
    assert torch.equal(model.conv1.weight, before)  # nothing loaded on failure
    report = load_into(model, path)
    assert not report.exact and not torch.equal(model.conv1.weight, before)


def test_wrong_architecture_and_wrong_class_count_name_the_flag_to_fix(tmp_path: Path):
    torch.manual_seed(0)
    bat = build_model("c2d_resnet18", num_classes=4, nonlocal_mod=2, nltype="bat", k=4)
    path = tmp_path / "bat.pth"
    torch.save({"state_dict": bat.state_dict()}, path)
    with pytest.raises(CheckpointError) as caught:
        load_into(build_model("c2d_resnet18", num_classes=4), path, strict=True)  # the BAT flags left out
    message = str(caught.value)
    assert message.startswith(f"{path}: does not fit the model (")
    assert " unexpected: layer2.nl1.conv1.0.weight, " in message
    assert message.endswith("or --non-strict to load what fits")
    with pytest.raises(CheckpointError) as caught:
        load_into(build_model("c2d_resnet18", num_classes=3, nonlocal_mod=2, nltype="bat", k=4), path, strict=True)
    assert str(caught.value) == (
        f"{path}: does not fit the model (2 of another shape: fc.weight checkpoint shape [4, 512, 1, 1, 1] vs model "
        "shape [3, 512, 1, 1, 1], fc.bias checkpoint shape [4] vs model shape [3]); the checkpoint has 4 classes: "
        "pass --num_classes 4 (or --non-strict to load what fits)")


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        ((8, 4, 3, 3), (8, 4, 3, 3, 3), (8, 4, 3, 3, 3)),
        ((8, 4, 1, 3, 3), (8, 4, 5, 3, 3), (8, 4, 5, 3, 3)),
        ((8, 4), (8, 4, 1, 1, 1), (8, 4, 1, 1, 1)),
        ((8, 4, 3, 3), (8, 5, 3, 3, 3), None),  # in-channels differ
        ((8, 4, 3, 3), (8, 4, 3, 1, 1), None),  # spatial kernel differs
        ((8, 4, 2, 3, 3), (8, 4, 3, 3, 3), None),  # already temporal: no resampling
        ((1000,), (400,), None),
    ],
)
def test_inflate_weight_rules(source, target, expected):
    weight = torch.randn(source)
    fitted = inflate_weight(weight, target_shape=target)
    if expected is None:
        assert fitted is None
    else:
        assert fitted.shape == expected
        # Summed over time, an inflated kernel is the 2-D one.
        if len(source) >= 4:
            assert torch.allclose(fitted.sum(dim=2), weight.reshape(*source[:2], *source[-2:]), atol=1e-6)
