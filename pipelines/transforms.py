"""Crops, resizes, flips and normalisation of whole clips, as the official BAT code does them.

Crop *parameters* are pure functions of the frame size (and a numpy Generator for the
random train draw); the ops then work on a whole clip at once as a torch tensor laid
out [C, T, H, W]. Clips stay uint8 until `normalize`, which runs in the training
process (on the device), so workers ship 4x fewer bytes.

Resizing is `torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
antialias=True)` on the uint8 clip: torch's fixed-point kernel, identical whatever the
thread count, and PIL's bilinear filter (the official code resized with PIL, which filters
when shrinking): within 2 grey levels of PIL, mean difference ~0.003 on noisy frames, where
the plain bilinear kernel differs by up to ~30 when a train crop of 256 shrinks to 224. The
val/test resize is the identity for videos already at short side 256 (what `videoprep
transcode` writes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

# The official multi-scale crop: crop sides are these fractions of the short side.
TRAIN_SCALES: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
# Crop sides that differ from the output size by less than this many pixels snap to it.
SNAP_PX = 3
# How far apart (in scale steps) the width and height scales of one crop may be.
MAX_DISTORT = 1
CROP_SIZE = 224
SCALE_SIZE = 256

# Caffe-style per-channel means of the released BAT models, applied in channel order 0,1,2 (std 1).
OFFICIAL_MEAN: tuple[float, float, float] = (103.939, 116.779, 123.68)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
Norm = Literal["official", "imagenet"]
NORMS: tuple[str, ...] = ("official", "imagenet")


@dataclass(frozen=True)
class CropBox:
    """A crop rectangle in pixels: top-left corner and size."""

    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class View:
    """One crop of a clip: the box (on the frame the box refers to), then an optional h-flip."""

    box: CropBox
    flip: bool = False


@dataclass(frozen=True)
class TrainCrop:
    """One draw of the official train augmentation: a box on the native frame, resize, flip."""

    box: CropBox
    flip: bool
    out_size: int = CROP_SIZE


# ---------------------------------------------------------------- crop parameters (pure)


def multiscale_crop_sizes(
    height: int, width: int, *, out_size: int = CROP_SIZE, scales: Sequence[float] = TRAIN_SCALES,
    max_distort: int = MAX_DISTORT, snap_px: int = SNAP_PX,
) -> list[tuple[int, int]]:
    """Every (crop_height, crop_width) the official multi-scale crop may draw from this frame size."""
    base = min(height, width)
    sides = [int(base * s) for s in scales]
    sides = [out_size if abs(x - out_size) < snap_px else x for x in sides]
    return [
        (h, w)
        for i, h in enumerate(sides)
        for j, w in enumerate(sides)
        if abs(i - j) <= max_distort
    ]


def fixed_offsets(height: int, width: int, *, crop_height: int, crop_width: int) -> list[tuple[int, int]]:
    """The 13 official (top, left) positions: corners, centre, edge midpoints, quarter points."""
    hs = (height - crop_height) // 4
    ws = (width - crop_width) // 4
    grid = [
        (0, 0), (0, 4), (4, 0), (4, 4), (2, 2),  # corners (top-left, top-right, bottom-left, bottom-right), centre
        (2, 0), (2, 4), (4, 2), (0, 2),  # left, right, bottom, top edge midpoints
        (1, 1), (1, 3), (3, 1), (3, 3),  # quarter points
    ]
    return [(r * hs, c * ws) for r, c in grid]


def sample_train_crop(
    height: int, width: int, *, rng: np.random.Generator, out_size: int = CROP_SIZE
) -> TrainCrop:
    """Draw one official train crop (size pair, one of 13 offsets) and flip (p=0.5) for a whole clip."""
    sizes = multiscale_crop_sizes(height, width, out_size=out_size)
    crop_h, crop_w = sizes[int(rng.integers(len(sizes)))]
    offsets = fixed_offsets(height, width, crop_height=crop_h, crop_width=crop_w)
    top, left = offsets[int(rng.integers(len(offsets)))]
    flip = bool(rng.random() < 0.5)
    return TrainCrop(CropBox(top, left, crop_h, crop_w), flip, out_size)


def short_side_size(height: int, width: int, *, short_side: int = SCALE_SIZE) -> tuple[int, int]:
    """(height, width) after scaling the short side to `short_side`, long side truncated."""
    if height <= width:
        return short_side, short_side * width // height
    return short_side * height // width, short_side


def center_box(height: int, width: int, *, size: int = CROP_SIZE) -> CropBox:
    """A centred size x size box (offsets rounded as torchvision's CenterCrop)."""
    if height < size or width < size:
        raise ValueError(f"frame {height}x{width} is smaller than the {size}x{size} crop")
    return CropBox(int(round((height - size) / 2.0)), int(round((width - size) / 2.0)), size, size)


def three_crop_boxes(height: int, width: int, *, size: int = SCALE_SIZE) -> list[CropBox]:
    """The official fully-convolutional test crops: size x size at round(arange(0, L-size+1, (L-size+1)/3)).

    A square frame has one crop; it is returned three times so every video has the same number of
    views (the mean of the logits over identical views is unchanged).
    """
    long_side = max(height, width)
    if min(height, width) != size:
        raise ValueError(f"three-crop expects the short side at {size}, got {height}x{width}")
    if long_side == size:
        return [CropBox(0, 0, size, size)] * 3
    span = long_side - size + 1
    starts = [int(x) for x in np.round(np.arange(0, span, span / 3))]
    if width >= height:
        return [CropBox(0, s, size, size) for s in starts]
    return [CropBox(s, 0, size, size) for s in starts]


def ten_crop_views(height: int, width: int, *, size: int = CROP_SIZE) -> list[View]:
    """Four corners and the centre (official order), each followed by its horizontal flip."""
    offsets = fixed_offsets(height, width, crop_height=size, crop_width=size)[:5]
    views = []
    for top, left in offsets:
        box = CropBox(top, left, size, size)
        views += [View(box, False), View(box, True)]
    return views


def test_views_for(
    height: int, width: int, *, test_crops: int, crop_size: int = CROP_SIZE, scale_size: int = SCALE_SIZE
) -> tuple[tuple[int, int], list[View]]:
    """Size to scale the frame to, and the views to take of it, for --test_crops 1, 3 or 10."""
    scaled = short_side_size(height, width, short_side=scale_size)
    if test_crops == 1:
        return scaled, [View(center_box(*scaled, size=crop_size))]
    if test_crops == 3:
        return scaled, [View(box) for box in three_crop_boxes(*scaled, size=scale_size)]
    if test_crops == 10:
        return scaled, ten_crop_views(*scaled, size=crop_size)
    raise ValueError(f"test_crops ({test_crops}) must be one of 1, 3, 10")


# ---------------------------------------------------------------- whole-clip ops (torch)


def _writable(array: np.ndarray) -> np.ndarray:
    """A writable view of `array` when its memory allows, else a writable copy."""
    view = array.view()
    try:
        view.flags.writeable = True
    except ValueError:  # backed by immutable memory
        return array.copy()
    return view


def to_clip(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Decoded frames [T, H, W, 3] uint8 -> clip [3, T, H, W] uint8 (a view, no copy).

    A read-only array (torch warns on those) whose memory is writable underneath becomes
    a writable view; only really immutable memory (e.g. a view of `bytes`) is copied.
    """
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        frames = _writable(frames)
    tensor = torch.as_tensor(frames)
    if tensor.ndim != 4 or tensor.shape[-1] != 3 or tensor.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {tuple(tensor.shape)} {tensor.dtype}")
    return tensor.permute(3, 0, 1, 2)


def crop(clip: torch.Tensor, box: CropBox) -> torch.Tensor:
    """The box of every frame of a [..., H, W] clip."""
    h, w = clip.shape[-2:]
    if box.top < 0 or box.left < 0 or box.top + box.height > h or box.left + box.width > w:
        raise ValueError(f"crop {box} does not fit a {h}x{w} frame")
    return clip[..., box.top : box.top + box.height, box.left : box.left + box.width]


def hflip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror every frame left-right."""
    return clip.flip(-1)


def resize(clip: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
    """PIL-style bilinear resize of a uint8 [C, T, H, W] clip (filters when shrinking), kept uint8."""
    if tuple(clip.shape[-2:]) == (height, width):
        return clip
    # torch's uint8 antialiased bilinear kernel (fixed-point): PIL's filter, as the official
    # transforms used, ~12x faster than a float round trip and the same whatever the thread
    # count or batch layout, which float32/float64 are not (an ulp moves a rounding tie).
    frames = clip.permute(1, 0, 2, 3)  # frames as the batch: [T, C, H, W]
    if frames.is_cuda:
        # The uint8 antialiased kernel is CPU-only: clips decoded on the GPU (DALI NVDEC, torchcodec cuda)
        # resize in float there and round back (within a grey level of the uint8 kernel).
        out = F.interpolate(frames.float(), size=(height, width), mode="bilinear", align_corners=False,
                            antialias=True).round_().clamp_(0, 255).to(torch.uint8)
        return out.permute(1, 0, 2, 3)
    out = F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return out.permute(1, 0, 2, 3)


def apply_view(clip: torch.Tensor, view: View) -> torch.Tensor:
    """Crop, then flip if the view says so (contiguous result)."""
    out = crop(clip, view.box)
    return (hflip(out) if view.flip else out).contiguous()


def train_transform(clip: torch.Tensor, params: TrainCrop) -> torch.Tensor:
    """Official train augmentation: crop on the native frame, resize to out_size^2, maybe flip."""
    out = resize(crop(clip, params.box), height=params.out_size, width=params.out_size)
    return (hflip(out) if params.flip else out).contiguous()


def val_transform(clip: torch.Tensor, *, scale_size: int = SCALE_SIZE, crop_size: int = CROP_SIZE) -> torch.Tensor:
    """Official validation: short side to scale_size (bilinear), centre crop_size^2."""
    h, w = clip.shape[-2:]
    nh, nw = short_side_size(h, w, short_side=scale_size)
    scaled = resize(clip, height=nh, width=nw)
    return crop(scaled, center_box(nh, nw, size=crop_size)).contiguous()


def test_transform(
    clip: torch.Tensor, *, test_crops: int, crop_size: int = CROP_SIZE, scale_size: int = SCALE_SIZE
) -> torch.Tensor:
    """Every official test crop of one clip, stacked: [crops, C, T, S, S] (S 224, or 256 for 3 crops)."""
    h, w = clip.shape[-2:]
    (nh, nw), views = test_views_for(h, w, test_crops=test_crops, crop_size=crop_size, scale_size=scale_size)
    scaled = resize(clip, height=nh, width=nw)
    return torch.stack([apply_view(scaled, v) for v in views])


# ---------------------------------------------------------------- normalisation (training process)


def normalize(clips: torch.Tensor, *, norm: Norm = "official", bgr: bool = False) -> torch.Tensor:
    """uint8 [..., C, T, H, W] -> float32 normalised, as the released models expect.

    "official": values 0..255 minus (103.939, 116.779, 123.68) on channels 0, 1, 2 and std 1.
    With RGB frames (the official video mode, how the released models were trained) these BGR
    means land on R, G, B; `bgr=True` flips the channels to BGR first, reproducing the
    official img (JPEG frames) mode. "imagenet": 0..1, RGB mean/std.
    """
    if norm not in NORMS:
        raise ValueError(f"norm ({norm!r}) must be one of {', '.join(NORMS)}")
    if clips.ndim < 4 or clips.shape[-4] != 3:
        raise ValueError(f"clips must be [..., 3, T, H, W], got {tuple(clips.shape)}")
    x = clips.to(dtype=torch.float32, copy=True)  # never modify the caller's tensor
    if bgr:
        x = x.flip(-4)
    shape = (3, 1, 1, 1)
    if norm == "official":
        return x.sub_(torch.tensor(OFFICIAL_MEAN, device=x.device).view(shape))
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(shape)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(shape)
    return x.div_(255.0).sub_(mean).div_(std)
