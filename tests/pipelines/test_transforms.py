"""Crop parameters against hand-computed values, and whole-clip ops on small synthetic clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pipelines import transforms as T
from pipelines.transforms import CropBox, TrainCrop, View


def position_clip(t: int, h: int, w: int) -> torch.Tensor:
    """uint8 [3, T, H, W] where channel 0 = row, 1 = column, 2 = frame number (all distinct per pixel)."""
    rows = torch.arange(h).view(1, h, 1).expand(t, h, w)
    cols = torch.arange(w).view(1, 1, w).expand(t, h, w)
    frames = torch.arange(t).view(t, 1, 1).expand(t, h, w)
    return torch.stack([rows, cols, frames]).to(torch.uint8)


def random_clip(t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, t, h, w), generator=g, dtype=torch.uint8)


# ------------------------------------------------------------ crop parameters


def test_multiscale_sizes_at_short_side_256():
    # int(256 * [1, .875, .75, .66]) = 256, 224, 192, 168; pairs with |i - j| <= 1.
    assert T.multiscale_crop_sizes(256, 340) == [
        (256, 256), (256, 224),
        (224, 256), (224, 224), (224, 192),
        (192, 224), (192, 192), (192, 168),
        (168, 192), (168, 168),
    ]


def test_multiscale_snapping_is_strictly_less_than_3_px():
    # base 254: 254, 222 (snaps: 2 px off), 190, 167.
    assert sorted({h for h, _ in T.multiscale_crop_sizes(254, 300)}) == [167, 190, 224, 254]
    # base 253: 253, 221 (3 px off: kept), 189, 166.
    assert sorted({h for h, _ in T.multiscale_crop_sizes(253, 300)}) == [166, 189, 221, 253]
    # base 339: 339 * .66 = 223.74 -> 223 snaps; 339 * .75 = 254.25 -> 254.
    assert sorted({h for h, _ in T.multiscale_crop_sizes(339, 339)}) == [224, 254, 296, 339]
    # Width and height come from the same list; the frame's aspect does not matter.
    assert T.multiscale_crop_sizes(254, 300) == T.multiscale_crop_sizes(300, 254)


def test_thirteen_fixed_offsets_by_hand():
    # 72x96 frame, 48x64 crop: row step (72-48)//4 = 6, column step (96-64)//4 = 8.
    assert T.fixed_offsets(72, 96, crop_height=48, crop_width=64) == [
        (0, 0), (0, 32), (24, 0), (24, 32), (12, 16),
        (12, 0), (12, 32), (24, 16), (0, 16),
        (6, 8), (6, 24), (18, 8), (18, 24),
    ]
    # Steps are floored: 256x341, 224 crop: (32//4, 117//4) = (8, 29); right edge at 116, not 117.
    assert T.fixed_offsets(256, 341, crop_height=224, crop_width=224)[1] == (0, 116)


def test_train_draws_cover_every_size_offset_and_flip():
    rng = np.random.default_rng(0)
    sizes, offsets, flips = set(), set(), []
    allowed = set(T.multiscale_crop_sizes(256, 340))
    for _ in range(3000):
        p = T.sample_train_crop(256, 340, rng=rng)
        size = (p.box.height, p.box.width)
        assert size in allowed
        grid = T.fixed_offsets(256, 340, crop_height=size[0], crop_width=size[1])
        assert (p.box.top, p.box.left) in grid
        assert p.box.top + p.box.height <= 256 and p.box.left + p.box.width <= 340
        sizes.add(size)
        offsets.add((size, grid.index((p.box.top, p.box.left))))
        flips.append(p.flip)
    assert sizes == allowed
    assert {k for _, k in offsets} == set(range(13))
    assert 0.45 < np.mean(flips) < 0.55


def test_train_draw_is_reproducible():
    a = [T.sample_train_crop(256, 340, rng=np.random.default_rng(9)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


@pytest.mark.parametrize(
    ("size", "scaled"),
    [((256, 340), (256, 340)), ((72, 96), (256, 341)), ((96, 72), (341, 256)), ((480, 640), (256, 341)),
     ((256, 256), (256, 256)), ((360, 640), (256, 455))],
)
def test_short_side_size(size, scaled):
    assert T.short_side_size(*size) == scaled


def test_three_crops_at_official_offsets():
    assert [b.left for b in T.three_crop_boxes(256, 341)] == [0, 29, 57]
    assert [b.top for b in T.three_crop_boxes(455, 256)] == [0, 67, 133]
    assert all(b.height == b.width == 256 for b in T.three_crop_boxes(256, 455))
    assert T.three_crop_boxes(256, 256) == [CropBox(0, 0, 256, 256)] * 3
    with pytest.raises(ValueError, match="short side at 256"):
        T.three_crop_boxes(240, 320)


def test_ten_crops_order_and_offsets():
    views = T.ten_crop_views(256, 340)
    # Column step (340-224)//4 = 29, row step (256-224)//4 = 8.
    corners = [(0, 0), (0, 116), (32, 0), (32, 116), (16, 58)]
    assert [(v.box.top, v.box.left) for v in views] == [c for c in corners for _ in (0, 1)]
    assert [v.flip for v in views] == [False, True] * 5
    assert all(v.box.height == v.box.width == 224 for v in views)


def test_center_box():
    assert T.center_box(256, 340) == CropBox(16, 58, 224, 224)
    assert T.center_box(256, 341) == CropBox(16, 58, 224, 224)  # round(58.5) = 58 (half to even)
    with pytest.raises(ValueError, match="smaller than"):
        T.center_box(200, 300)


# ------------------------------------------------------------ whole-clip ops


def test_to_clip_layout():
    frames = np.zeros((4, 6, 8, 3), dtype=np.uint8)
    frames[2, 5, 7] = (1, 2, 3)
    clip = T.to_clip(frames)
    assert clip.shape == (3, 4, 6, 8) and clip.dtype == torch.uint8
    assert clip[:, 2, 5, 7].tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="uint8"):
        T.to_clip(frames.astype(np.float32))


def test_train_crop_without_resize_is_the_exact_box_then_flip():
    clip = position_clip(3, 72, 96)
    # A square box of the output size: no resize, so the values are the box itself.
    box = CropBox(6, 24, 48, 48)
    out = T.train_transform(clip, TrainCrop(box, flip=False, out_size=48))
    assert out[0, :, :, 0].unique().tolist() == list(range(6, 54))  # rows 6..53
    assert out[1, 0, 0].tolist() == list(range(24, 72))  # columns 24..71
    flipped = T.train_transform(clip, TrainCrop(box, flip=True, out_size=48))
    assert flipped[1, 0, 0].tolist() == list(range(71, 23, -1))
    assert torch.equal(flipped, out.flip(-1))


def pil_resize(clip: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
    """The official resize: PIL bilinear on every frame of a uint8 [C, T, H, W] clip."""
    frames = [
        np.asarray(Image.fromarray(frame.numpy()).resize((width, height), Image.BILINEAR))
        for frame in clip.permute(1, 2, 3, 0)
    ]
    return torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2)


@pytest.mark.parametrize(
    ("box", "out_size"),
    [(CropBox(0, 0, 72, 72), 56), (CropBox(12, 16, 48, 64), 56), (CropBox(4, 8, 40, 40), 56)],
    ids=["shrink", "mixed", "enlarge"],
)
def test_train_resize_is_pil_bilinear(box, out_size):
    clip = random_clip(4, 72, 96, seed=1)
    out = T.train_transform(clip, TrainCrop(box, flip=True, out_size=out_size))
    assert out.shape == (3, 4, out_size, out_size) and out.dtype == torch.uint8
    ref = pil_resize(T.crop(clip, box), height=out_size, width=out_size).flip(-1)
    diff = (out.int() - ref.int()).abs()
    # Noise frames are the worst case; plain (not antialiased) bilinear misses by ~100 on shrinking.
    assert int(diff.max()) <= 2 and float(diff.float().mean()) < 0.05


def test_resize_does_not_depend_on_thread_count():
    clip = random_clip(8, 256, 256, seed=4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = T.resize(clip, height=224, width=224)
        torch.set_num_threads(2)
        two = T.resize(clip, height=224, width=224)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_resize_same_size_is_identity_and_uint8():
    clip = random_clip(2, 20, 30)
    assert T.resize(clip, height=20, width=30) is clip
    up = T.resize(clip, height=40, width=60)
    assert up.dtype == torch.uint8 and up.shape == (3, 2, 40, 60)
    # A constant frame stays constant under bilinear.
    flat = torch.full((3, 2, 10, 10), 77, dtype=torch.uint8)
    assert torch.all(T.resize(flat, height=23, width=17) == 77)


def test_val_transform_scales_then_centre_crops():
    clip = random_clip(2, 256, 340, seed=2)
    out = T.val_transform(clip)
    assert torch.equal(out, clip[:, :, 16:240, 58:282])  # no resize at short side 256
    small = random_clip(2, 72, 96, seed=3)
    ref = F.interpolate(small.permute(1, 0, 2, 3), size=(256, 341), mode="bilinear",
                        align_corners=False).permute(1, 0, 2, 3)
    assert torch.equal(T.val_transform(small), ref[:, :, 16:240, 58:282])  # enlarging: plain bilinear
    large = random_clip(2, 288, 384, seed=5)
    diff = (T.val_transform(large).int() - pil_resize(large, height=256, width=341)[:, :, 16:240, 58:282].int())
    assert int(diff.abs().max()) <= 2  # shrinking filters like PIL


def test_test_transform_views():
    clip = position_clip(2, 256, 341)
    three = T.test_transform(clip, test_crops=3)
    assert three.shape == (3, 3, 2, 256, 256)
    assert [int(v[1, 0, 0, 0]) for v in three] == [0, 29, 57]
    ten = T.test_transform(clip, test_crops=10)
    assert ten.shape == (10, 3, 2, 224, 224)
    assert torch.equal(ten[1], ten[0].flip(-1))
    assert int(ten[2][1, 0, 0, 0]) == 116 and int(ten[4][0, 0, 0, 0]) == 32
    one = T.test_transform(clip, test_crops=1)
    assert torch.equal(one[0], T.val_transform(clip))
    with pytest.raises(ValueError, match="test_crops"):
        T.test_transform(clip, test_crops=4)


def test_apply_view_flips():
    clip = position_clip(1, 8, 8)
    v = T.apply_view(clip, View(CropBox(0, 2, 4, 4), flip=True))
    assert v[1, 0, 0].tolist() == [5, 4, 3, 2]


def test_crop_out_of_frame_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        T.crop(random_clip(1, 10, 10), CropBox(5, 5, 6, 6))


# ------------------------------------------------------------ normalisation


def test_official_normalisation_subtracts_bgr_means_in_channel_order():
    clips = torch.zeros((2, 3, 4, 5, 5), dtype=torch.uint8)
    clips[:, 0], clips[:, 1], clips[:, 2] = 10, 20, 30
    out = T.normalize(clips)
    assert out.dtype == torch.float32 and out.shape == clips.shape
    assert torch.allclose(out[:, 0], torch.tensor(10 - 103.939))
    assert torch.allclose(out[:, 2], torch.tensor(30 - 123.68))
    bgr = T.normalize(clips, bgr=True)  # the official img mode: channels flipped to BGR first
    assert torch.allclose(bgr[:, 0], torch.tensor(30 - 103.939))
    assert torch.allclose(bgr[:, 2], torch.tensor(10 - 123.68))
    assert int(clips[0, 0, 0, 0, 0]) == 10, "input untouched"


def test_imagenet_normalisation():
    clips = torch.full((3, 1, 2, 2), 255, dtype=torch.uint8)
    out = T.normalize(clips, norm="imagenet")
    assert torch.allclose(out[0], torch.tensor((1 - 0.485) / 0.229))
    assert torch.allclose(out[2], torch.tensor((1 - 0.406) / 0.225))


def test_normalize_errors():
    with pytest.raises(ValueError, match="norm"):
        T.normalize(torch.zeros((3, 1, 2, 2), dtype=torch.uint8), norm="caffe")
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, T, H, W\]"):
        T.normalize(torch.zeros((4, 1, 2, 2), dtype=torch.uint8))
