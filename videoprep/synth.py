"""Write small real videos with PyAV: test fixtures, the demo dataset and benchmark samples."""

from __future__ import annotations

import os
import shutil
import tarfile
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from videoprep.atomic import atomic_path, atomic_write_text
from videoprep.errors import LayoutError
from videoprep.formats import VIDEO_EXTENSIONS
from videoprep.kinetics import find_annotation_files

Codec = Literal["h264", "mpeg4", "mjpeg", "vp9", "vp8", "mpeg1video", "mpeg2video", "hevc"]

# Encoder name and pixel format for each codec we write.
ENCODERS: dict[str, tuple[str, str]] = {
    "h264": ("libx264", "yuv420p"),
    "hevc": ("libx265", "yuv420p"),
    "mpeg4": ("mpeg4", "yuv420p"),
    "mjpeg": ("mjpeg", "yuvj420p"),
    "vp9": ("libvpx-vp9", "yuv420p"),
    "vp8": ("libvpx", "yuv420p"),
    "mpeg1video": ("mpeg1video", "yuv420p"),
    "mpeg2video": ("mpeg2video", "yuv420p"),
}


def pattern_frames(num_frames: int, *, width: int, height: int, seed: int = 0) -> Iterable[np.ndarray]:
    """RGB frames whose content changes every frame (moving gradient plus a bright bar)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    tile = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(num_frames):
        frame = tile.copy()
        frame[..., 0] = ((xx + 3 * i) * 255 // max(width, 1)).astype(np.uint8)
        bar = (i * 4) % max(width - 4, 1)
        frame[:, bar : bar + 4] = 255
        frame[..., 2] = (frame[..., 2].astype(np.int32) + i * 7).astype(np.uint8) & 0xFF
        yield frame


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray] | None = None,
    *,
    num_frames: int = 60,
    width: int = 64,
    height: int = 48,
    fps: float = 25,
    codec: Codec = "h264",
    gop: int | None = None,
    bframes: int | None = None,
    pix_fmt: str | None = None,
    crf: int | None = None,
    options: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """Encode RGB uint8 frames (HxWx3) to `path`; the container follows the suffix."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    encoder, default_fmt = ENCODERS[codec]
    if frames is None:
        frames = pattern_frames(num_frames, width=width, height=height, seed=seed)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream(encoder, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt or default_fmt
        opts = dict(options or {})
        if encoder == "libx264":
            opts.setdefault("preset", "ultrafast")
            if gop is not None:
                opts.setdefault("x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0")
            if crf is not None:
                opts.setdefault("crf", str(crf))
        elif encoder in ("libvpx-vp9", "libvpx"):
            opts.setdefault("deadline", "realtime")
            opts.setdefault("cpu-used", "8")
            opts.setdefault("b", "400k")
        elif encoder == "libx265":
            opts.setdefault("preset", "ultrafast")
            opts.setdefault("x265-params", "log-level=error")
        if gop is not None:
            stream.codec_context.gop_size = gop
        if bframes is not None:
            stream.codec_context.max_b_frames = bframes
        stream.options = opts
        for array in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out


def decode_all(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """Every frame a full decode yields, as RGB arrays: the ground truth for frame counts."""
    with av.open(os.fspath(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


# Demo actions: the class can only be told from motion over time (every single frame of
# one class could belong to another), and each is unchanged by a horizontal flip, which
# the official train transform applies.
ACTIONS = ("moving up", "moving down", "growing (zoom in)", "shrinking (zoom out)")


def action_frames(
    action: str, *, num_frames: int, width: int, height: int, rng: np.random.Generator
) -> Iterable[np.ndarray]:
    """RGB frames of one textured object doing `action` over a static textured background."""
    if action not in ACTIONS:
        raise ValueError(f"action {action!r} must be one of {', '.join(ACTIONS)}")
    cell = 8
    bg_small = rng.integers(20, 110, size=(height // cell + 1, width // cell + 1, 3), dtype=np.uint8)
    background = np.kron(bg_small, np.ones((cell, cell, 1), dtype=np.uint8))[:height, :width]
    color = rng.integers(150, 256, size=3)
    short = min(width, height)
    yy, xx = np.mgrid[0:height, 0:width]
    cx = rng.uniform(0.3, 0.7) * width
    travel = rng.uniform(0.35, 0.55) * height
    for i in range(num_frames):
        t = i / max(num_frames - 1, 1)
        if action in ("moving up", "moving down"):
            radius = 0.12 * short
            y0 = 0.5 * height + (0.5 - t) * travel * (1 if action == "moving up" else -1)
        else:
            grow = t if action == "growing (zoom in)" else 1 - t
            radius = (0.05 + 0.22 * grow) * short
            y0 = 0.5 * height
        mask = (np.abs(xx - cx) <= radius) & (np.abs(yy - y0) <= radius)
        frame = background.copy()
        stripes = ((xx + yy) // 4 % 2).astype(np.int32) * 40
        obj = np.clip(color[None, None, :] - stripes[..., None], 0, 255).astype(np.uint8)
        frame[mask] = obj[mask]
        yield frame


def write_action_video(
    path: str | os.PathLike[str],
    action: str,
    *,
    num_frames: int,
    width: int,
    height: int,
    fps: float,
    seed: int,
    codec: Codec = "h264",
    gop: int | None = None,
) -> Path:
    """One demo clip of `action`, encoded like a typical download (H.264, long GOP)."""
    rng = np.random.default_rng(seed)
    frames = action_frames(action, num_frames=num_frames, width=width, height=height, rng=rng)
    return write_video(path, frames, width=width, height=height, fps=fps, codec=codec, gop=gop)


# --- packing a local dataset into a mirror layout (tests, demo, private mirrors) ---


@dataclass
class PackedMirror:
    """A folder laid out like the CVDF mirror, and what went into each part."""

    root: Path
    base_url: str
    parts: dict[str, list[Path]]
    clips: dict[str, list[str]]
    part_clips: dict[str, list[list[str]]]
    replacement: Path | None  # None: the release has no replacement archive


def pack_mirror(
    *,
    videos_dir: str | os.PathLike[str],
    annotations_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    base_url: str,
    splits: Sequence[str] | None = None,
    clips_per_part: int = 4,
    plain_tar_parts: Collection[int] = (),
    member_prefixes: Sequence[str] = ("{split}/",),
    replacements_dir: str | os.PathLike[str] | None = None,
    release: str = "kinetics400",
) -> PackedMirror:
    """Pack `{videos}/{split}/**/{clip}.mp4` and annotation CSVs into a release's mirror layout.

    Writes `{out}/{split}/part_N.tar.gz`, `{out}/{split}/{tag}_{split}_path.txt`
    (URLs under `base_url`; tag `k400`, `k600`, `k700_2020`), `{out}/annotations/{split}.csv`
    and, for Kinetics-400, `{out}/replacement_for_corrupted_k400.tgz` (from
    `replacements_dir`, else empty). Part N is a plain tar if N is in `plain_tar_parts`; member names
    use `member_prefixes[N % len]` (e.g. "{split}/", "", "k400/{split}/").
    """
    from videoprep.download.releases import release as find_release

    kind = find_release(release)
    videos = Path(videos_dir)
    root = Path(out_dir)
    base = base_url.rstrip("/")
    csvs = find_annotation_files(annotations_dir)
    chosen = list(splits) if splits is not None else [s for s in ("train", "val", "test") if s in csvs]
    packed = PackedMirror(root, base, {}, {}, {}, root / kind.replacement if kind.replacement else None)
    for split in chosen:
        if split not in csvs:
            raise LayoutError(annotations_dir, f"no annotation CSV for split {split!r}")
        with atomic_path(root / "annotations" / f"{split}.csv") as tmp:
            shutil.copyfile(csvs[split], tmp)
        files = sorted((p for p in (videos / split).rglob("*")
                        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")),
                       key=lambda p: p.name)
        groups = [files[i:i + clips_per_part] for i in range(0, len(files), max(1, clips_per_part))] or [[]]
        urls, paths, part_clips = [], [], []
        for index, group in enumerate(groups):
            name = f"part_{index}.tar.gz"
            prefix = member_prefixes[index % len(member_prefixes)].format(split=split)
            target = root / split / name
            with atomic_path(target) as tmp, tarfile.open(tmp, "w" if index in plain_tar_parts else "w:gz") as tar:
                for video in group:
                    tar.add(video, arcname=prefix + video.name, recursive=False)
            urls.append(f"{base}/{split}/{name}")
            paths.append(target)
            part_clips.append([v.stem for v in group])
        atomic_write_text(root / split / kind.list_name(split), "".join(u + "\n" for u in urls))
        packed.parts[split] = paths
        packed.part_clips[split] = part_clips
        packed.clips[split] = [c for group in part_clips for c in group]
    if packed.replacement is None:
        return packed
    with atomic_path(packed.replacement) as tmp, tarfile.open(tmp, "w:gz") as tar:
        if replacements_dir is not None:
            for video in sorted(Path(replacements_dir).iterdir()):
                if video.is_file() and video.suffix.lower() in VIDEO_EXTENSIONS:
                    tar.add(video, arcname=f"replacement/replacement_for_corrupted_k400/{video.name}",
                            recursive=False)
    return packed

