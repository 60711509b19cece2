"""The BAT models: key/shape parity with the official release, initialisation, forward shapes, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from train.models import (
    BATBlock,
    ModelConfigError,
    ModelInputError,
    NonLocal3D,
    ResNet3D,
    attention_names,
    build_model,
    create_attention,
    model_names,
)
from train.models import c2d_resnet50 as c2d_resnet50_factory
from train.models import i3d_resnet50 as i3d_resnet50_factory

# (arch, options, state_dict keys or None, parameters in millions to 2 decimals): the spec's figures.
PUBLISHED = [
    ("c2d_resnet50", {}, 320, 24.33),
    ("i3d_resnet50", {}, 320, 28.04),
    ("c2d_resnet50", {"nonlocal_mod": 2, "nltype": "bat", "k": 8}, 480, 29.18),
    ("c2d_resnet50", {"nonlocal_mod": 2, "nltype": "bat", "k": 8, "tk": 4}, 490, 29.19),
    ("c2d_resnet50", {"nonlocal_mod": 2, "nltype": "nl3d"}, 385, 31.69),
    ("i3d_resnet50", {"nonlocal_mod": 2, "nltype": "bat", "k": 8}, 480, 32.90),
]


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("arch", "options", "num_keys", "millions"), PUBLISHED)
def test_published_configs_have_the_official_key_counts_and_sizes(arch, options, num_keys, millions):
    model = build_model(arch, **options)
    assert len(model.state_dict()) == num_keys
    assert round(param_count(model) / 1e6, 2) == millions


BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
NL3D_KEYS = ["g.1.weight", "g.1.bias", "W.0.weight", "W.0.bias", *(f"W.1.{s}" for s in BN_KEYS),
             "theta.weight", "theta.bias", "phi.1.weight", "phi.1.bias"]


def bat_keys(*, temporal: bool) -> list[str]:
    def conv_bn(prefix: str) -> list[str]:
        return [f"{prefix}.0.weight", f"{prefix}.0.bias", *(f"{prefix}.1.{s}" for s in BN_KEYS)]

    t = ["batransform.conv_t.weight", "batransform.conv_t.bias"] if temporal else []
    return [*conv_bn("conv1"), *conv_bn("batransform.conv1"), "batransform.conv_p.weight", "batransform.conv_p.bias",
            "batransform.conv_q.weight", "batransform.conv_q.bias", *t, *conv_bn("batransform.conv2"), *conv_bn("conv2")]


def expected_keys(*, layers, bottleneck: bool, mods=(1000, 1000), block_keys=()) -> list[str]:
    """The release's state_dict keys in order, from the naming rules (torchvision names + layerX.nl{i})."""
    keys = ["conv1.weight", *(f"bn1.{s}" for s in BN_KEYS)]
    for stage, depth in enumerate(layers, start=1):
        mod = {2: mods[0], 3: mods[1]}.get(stage, 1000)
        for i in range(depth):
            for j in range(1, 4 if bottleneck else 3):
                keys += [f"layer{stage}.{i}.conv{j}.weight", *(f"layer{stage}.{i}.bn{j}.{s}" for s in BN_KEYS)]
            if i == 0 and (stage > 1 or bottleneck):
                keys += [f"layer{stage}.0.downsample.0.weight", *(f"layer{stage}.0.downsample.1.{s}" for s in BN_KEYS)]
            if i % mod == mod - 1:
                keys += [f"layer{stage}.nl{i}.{k}" for k in block_keys]
    return [*keys, "fc.weight", "fc.bias"]


@pytest.mark.parametrize(
    ("arch", "options", "expected"),
    [
        ("c2d_resnet50", {}, expected_keys(layers=(3, 4, 6, 3), bottleneck=True)),
        ("c2d_resnet50", {"nonlocal_mod": 2}, expected_keys(layers=(3, 4, 6, 3), bottleneck=True, mods=(2, 2),
                                                            block_keys=NL3D_KEYS)),
        ("c2d_resnet50", {"nonlocal_mod": 2, "nltype": "bat", "k": 8, "tk": 4},
         expected_keys(layers=(3, 4, 6, 3), bottleneck=True, mods=(2, 2), block_keys=bat_keys(temporal=True))),
        ("i3d_resnet18", {"nonlocal_mod": [1, 2], "nltype": "bat"},
         expected_keys(layers=(2, 2, 2, 2), bottleneck=False, mods=(1, 2), block_keys=bat_keys(temporal=False))),
    ],
    ids=["c2d", "c2d-nl", "c2d-3dbat", "i3d18-bat"],
)
def test_state_dict_keys_are_the_release_keys_in_order(arch, options, expected):
    model = build_model(arch, **options)
    assert list(model.state_dict()) == expected
    # Parameters in the same order too: optimizer state in official checkpoints is indexed by it.
    assert [name for name, _ in model.named_parameters()] == [
        k for k in expected if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    ]


def test_bat_block_keys_and_shapes_match_the_release():
    state = build_model("c2d_resnet50", nonlocal_mod=2, nltype="bat", k=8, tk=4).state_dict()
    block = {key.removeprefix("layer2.nl1."): tuple(v.shape) for key, v in state.items() if key.startswith("layer2.nl1.")}
    expected_convs = {
        "conv1.0": (256, 512, 1, 1, 1),
        "batransform.conv1.0": (8, 256, 1, 1, 1),
        "batransform.conv_p": (392, 8, 1, 7, 1),
        "batransform.conv_q": (392, 8, 1, 1, 7),
        "batransform.conv_t": (64, 8, 4, 1, 1),
        "batransform.conv2.0": (256, 256, 1, 1, 1),
        "conv2.0": (512, 256, 1, 1, 1),
    }
    for name, shape in expected_convs.items():
        assert block[f"{name}.weight"] == shape
        assert block[f"{name}.bias"] == (shape[0],)  # every conv in the block has a bias
    for bn, width in {"conv1.1": 256, "batransform.conv1.1": 8, "batransform.conv2.1": 256, "conv2.1": 512}.items():
        for stat in ("weight", "bias", "running_mean", "running_var"):
            assert block[f"{bn}.{stat}"] == (width,)
        assert block[f"{bn}.num_batches_tracked"] == ()
    assert len(block) == 2 * len(expected_convs) + 5 * 4


def test_inserted_blocks_follow_nonlocal_mod_and_names():
    def inserted(model):
        return sorted({".".join(k.split(".")[:2]) for k in model.state_dict() if ".nl" in k})

    assert inserted(build_model("c2d_resnet50", nonlocal_mod=2)) == [
        "layer2.nl1", "layer2.nl3", "layer3.nl1", "layer3.nl3", "layer3.nl5",
    ]
    assert inserted(build_model("c2d_resnet50", nonlocal_mod=[2, 1000])) == ["layer2.nl1", "layer2.nl3"]
    assert inserted(build_model("c2d_resnet50", nonlocal_mod=[1000, 3])) == ["layer3.nl2", "layer3.nl5"]
    assert inserted(build_model("c2d_resnet50")) == []
    # Blocks sit between the residual blocks, in order, inside the stage's Sequential.
    names = [name for name, _ in build_model("c2d_resnet50", nonlocal_mod=2).layer2.named_children()]
    assert names == ["0", "1", "nl1", "2", "3", "nl3"]


def test_nl_alias_and_non_local_keys():
    nl = build_model("c2d_resnet50", nonlocal_mod=2, nltype="nl")
    assert nl.state_dict().keys() == build_model("c2d_resnet50", nonlocal_mod=2, nltype="nl3d").state_dict().keys()
    keys = {k.removeprefix("layer3.nl1.") for k in nl.state_dict() if k.startswith("layer3.nl1.")}
    assert {"theta.weight", "theta.bias", "phi.1.weight", "g.1.bias", "W.0.weight", "W.1.running_var"} <= keys
    assert nl.state_dict()["layer3.nl1.theta.weight"].shape == (512, 1024, 1, 1, 1)


def test_backbone_kernels_follow_c2d_and_i3d_patterns():
    c2d = build_model("c2d_resnet50").state_dict()
    i3d = build_model("i3d_resnet50").state_dict()
    assert c2d["conv1.weight"].shape == (64, 3, 1, 7, 7)
    assert i3d["conv1.weight"].shape == (64, 3, 5, 7, 7)
    assert c2d["fc.weight"].shape == (400, 2048, 1, 1, 1)
    assert c2d["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1, 1)
    pattern = {1: [3, 3, 3], 2: [3, 1, 3, 1], 3: [3, 1, 3, 1, 3, 1], 4: [1, 3, 1]}
    for stage, kernels in pattern.items():
        got = [i3d[f"layer{stage}.{i}.conv1.weight"].shape[2] for i in range(len(kernels))]
        assert got == kernels
        assert all(i3d[f"layer{stage}.{i}.conv2.weight"].shape[2:] == (1, 3, 3) for i in range(len(kernels)))
    assert all(v.shape[2] == 1 for k, v in c2d.items() if k.endswith("weight") and v.dim() == 5)
    # Basic-block variants: the temporal kernel sits on the first 3x3 conv.
    r18 = build_model("i3d_resnet18").state_dict()
    assert r18["layer1.0.conv1.weight"].shape == (64, 64, 3, 3, 3)
    assert r18["layer4.1.conv2.weight"].shape == (512, 512, 1, 3, 3)
    assert r18["fc.weight"].shape == (400, 512, 1, 1, 1)
    assert "layer1.0.downsample.0.weight" not in r18


@pytest.mark.parametrize("arch", ["c2d_resnet18", "c2d_resnet34", "c2d_resnet101", "i3d_resnet34", "i3d_resnet101"])
def test_other_depths_build_with_their_stage_sizes(arch):
    depth = int(arch.split("resnet")[1])
    stages = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    model = build_model(arch, num_classes=7)
    assert tuple(len(getattr(model, f"layer{i + 1}")) for i in range(4)) == stages
    assert model.fc.out_channels == 7
    assert model.conv1.kernel_size[0] == (5 if arch.startswith("i3d") else 1)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ModelConfigError, match="unknown arch 'resnet50'; valid names are c2d_resnet101, .*i3d_resnet50"):
        build_model("resnet50")
    with pytest.raises(ModelConfigError, match="unknown nltype 'nl2d'; valid names are bat, nl, nl3d"):
        build_model("c2d_resnet50", nltype="nl2d")
    assert {"c2d_resnet50", "i3d_resnet50", "i3d_resnet18"} <= set(model_names())
    assert attention_names() == ["bat", "nl", "nl3d"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nonlocal_mod": 0}, r"nonlocal_mod \(0\) must be >= 1"),
        ({"nonlocal_mod": [2, 2, 2]}, r"must be one int or two"),
        ({"nonlocal_mod": 2, "nltype": "bat", "k": 3}, r"BAT k \(3\) must be >= 1 and divide the channel count 256"),
        ({"nonlocal_mod": 2, "nltype": "bat", "tk": 3}, r"BAT tk \(3\) must be 0 \(2D-BAT\) or divide"),
        ({"num_classes": 0}, r"num_classes \(0\) must be >= 1"),
    ],
)
def test_bad_options_are_rejected_with_the_rule(options, message):
    with pytest.raises(ModelConfigError, match=message):
        build_model("c2d_resnet50", **options)


def test_conv_init_follows_the_official_std_rule():
    torch.manual_seed(0)
    model = build_model("i3d_resnet50")
    checks = {  # kernel (kT, kH) x out channels -> std sqrt(2 / (kT * kH * out))
        "conv1": model.conv1,  # (5, 7) x 64
        "layer4.0.conv2": model.layer4[0].conv2,  # (1, 3) x 512
        "layer3.0.conv1": model.layer3[0].conv1,  # (3, 1) x 256
        "fc": model.fc,  # (1, 1) x 400
    }
    for name, conv in checks.items():
        fan = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels
        std = conv.weight.std().item()
        assert std == pytest.approx(math.sqrt(2.0 / fan), rel=0.05), name
        assert conv.weight.mean().abs().item() < 0.1 * std, name
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert all(bool((bn.weight == 1).all() and (bn.bias == 0).all()) for bn in bns)


def test_bat_blocks_start_with_unit_bn_gamma_and_zero_biases():
    model = build_model("c2d_resnet50", nonlocal_mod=2, nltype="bat", k=8, tk=4)
    blocks = [m for m in model.modules() if isinstance(m, BATBlock)]
    assert len(blocks) == 5
    for block in blocks:
        for module in block.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                assert bool((module.weight == 1).all() and (module.bias == 0).all())
            if isinstance(module, torch.nn.Conv3d):
                assert bool((module.bias == 0).all())
                fan_out = module.out_channels * math.prod(module.kernel_size)
                if module.weight.numel() > 10_000:
                    assert module.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_out), rel=0.1)


def test_non_local_block_is_the_identity_at_init():
    torch.manual_seed(0)
    model = build_model("c2d_resnet50", nonlocal_mod=2, nltype="nl3d")
    blocks = [m for m in model.modules() if isinstance(m, NonLocal3D)]
    assert len(blocks) == 5
    x = torch.randn(2, 512, 2, 14, 14)
    block = model.layer2.nl1.train()
    assert bool((block.W[1].weight == 0).all())
    assert torch.equal(block(x), x)
    # ...and not the identity once W's BN gamma moves: the test can fail.
    with torch.no_grad():
        block.W[1].weight.fill_(1.0)
    assert not torch.allclose(block(x), x)


def test_non_local_attention_matches_a_direct_computation():
    torch.manual_seed(0)
    block = NonLocal3D(8).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        block.W[1].running_var.fill_(1.0)
    x = torch.randn(1, 8, 2, 4, 6)
    with torch.no_grad():
        got = block(x)
        theta = F.conv3d(x, block.theta.weight, block.theta.bias)[0].flatten(1)  # [4, THW]
        pooled = F.max_pool3d(x, (1, 2, 2))
        phi = F.conv3d(pooled, block.phi[1].weight, block.phi[1].bias)[0].flatten(1)
        g = F.conv3d(pooled, block.g[1].weight, block.g[1].bias)[0].flatten(1)
        out = torch.empty_like(theta)
        for i in range(theta.shape[1]):  # one query position at a time
            weights = torch.softmax(theta[:, i] @ phi / 2.0, dim=0)  # inter = 4 -> scale 4^-0.5
            out[:, i] = g @ weights
        y = block.W(out.reshape(1, 4, 2, 4, 6)) + x
    assert torch.allclose(got, y, atol=1e-5)


def small_model(factory, **kwargs) -> ResNet3D:
    """The same architecture at 1/8 width: every shape rule holds, forward is ~50x cheaper."""
    return factory(width=8, num_classes=5, **kwargs).eval()


@pytest.mark.parametrize(
    ("factory", "nltype", "options", "size"),
    [
        (c2d_resnet50_factory, "bat", {"k": 4, "tk": 2, "ts": 2}, 224),
        (c2d_resnet50_factory, "nl3d", {}, 256),
        (i3d_resnet50_factory, "bat", {"k": 4, "tk": 2, "ts": 2}, 256),
        (i3d_resnet50_factory, "nl3d", {}, 224),
    ],
    ids=["c2d-3dbat-224", "c2d-nl-256", "i3d-3dbat-256", "i3d-nl-224"],
)
def test_forward_gives_logits_at_224_and_256(factory, nltype, options, size):
    torch.manual_seed(0)
    model = small_model(factory, attn_layer=create_attention(nltype, **options), nonlocal_mod=2)
    x = torch.randn(2, 3, 4, size, size)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()


def test_head_is_fully_convolutional_at_256():
    torch.manual_seed(0)
    model = small_model(c2d_resnet50_factory)
    x = torch.randn(1, 3, 4, 256, 256)
    with torch.no_grad():
        feats = model.features(x)
        assert feats.shape[2:] == (2, 8, 8)  # T halved once, 256 / 32
        # Four 7x7 windows (2x2 positions), fc on each, then their mean.
        windows = [feats[:, :, :, i:i + 7, j:j + 7].mean(dim=(2, 3, 4)) for i in (0, 1) for j in (0, 1)]
        expected = torch.stack([model.fc(w[:, :, None, None, None]).flatten(1) for w in windows]).mean(0)
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert model.features(torch.randn(1, 3, 4, 224, 224)).shape[2:] == (2, 7, 7)


def test_full_size_bat_model_runs_forward_and_backward():
    torch.manual_seed(0)
    model = build_model("i3d_resnet18", num_classes=3, nonlocal_mod=1, nltype="bat", k=4, tk=2, ts=2)
    x = torch.randn(1, 3, 4, 112, 112)  # layer2 14x14 and layer3 7x7: the smallest input BAT takes
    logits = model(x)
    assert logits.shape == (1, 3)
    logits.sum().backward()
    for name in ("layer2.nl1.batransform.conv_p", "layer3.nl0.batransform.conv_q", "layer3.nl1.batransform.conv_t"):
        grad = model.get_submodule(name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_bat_rejects_maps_it_cannot_tile():
    model = small_model(c2d_resnet50_factory, attn_layer=create_attention("bat", k=4), nonlocal_mod=2)
    with pytest.raises(ModelInputError, match="at least 7x7, got a side of 6"):
        model(torch.randn(1, 3, 2, 96, 96))  # layer2 12x12 works (m = 12), layer3 6x6 cannot
    model3d = small_model(c2d_resnet50_factory, attn_layer=create_attention("bat", k=4, tk=2, ts=4), nonlocal_mod=2)
    with pytest.raises(ModelInputError, match=r"frame count at its layer \(3\) to be a multiple of ts \(4\)"):
        model3d(torch.randn(1, 3, 6, 224, 224))
    with pytest.raises(ModelInputError, match=r"expected a \[N, C, T, H, W\] clip tensor"):
        model(torch.randn(3, 8, 224, 224))
