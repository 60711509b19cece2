"""Every backend gives the same clips, multi-clip sampling, and the backend registry.

Agreement, through `build_loader` (sampling, decoding, views) on the same lists:
- pyav, lintel, torchcodec (exact) and frames are bit-identical. The frame folders hold the
  video's full decode stored losslessly (PNG data; PIL reads by content), so any difference
  would be an indexing or ordering error, not JPEG loss (lossy JPEG folders are compared in
  test_loader.py within 12 grey levels).
- torchcodec approximate: within TORCHCODEC_APPROX_TOL (0 measured on these constant-rate files;
  it trusts the header's rate, so irregular timestamps can move a frame).
- DALI (CPU: VP9/MJPEG): within CLIP_MEAN_TOL of pyav (its chroma conversion differs; see test_dali.py).
"""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cli import cli
from pipelines.backends import BACKENDS, Backend, BackendStatus, backend_status
from pipelines.backends.frames import frame_path
from pipelines.backends.pyav import PyAVReader
from pipelines.loader import ClipSpec, LoaderConfig, build_loader
from pipelines.planning import ClipPlanner, make_views
from videoprep.errors import BackendError, VideoprepError
from videoprep.records import ListRecord, read_list, write_list
from videoprep.synth import decode_all, write_video

TORCHCODEC_APPROX_TOL = 0.5  # mean |diff| per clip, grey levels
CLIP_MEAN_TOL = 8.0  # DALI vs pyav, as in test_dali.py
FRAMES = 40
VIDEOS = [("a.mp4", "h264"), ("b.webm", "vp9"), ("c.avi", "mjpeg"), ("d.mkv", "mjpeg")]
DALI_VIDEOS = {"b.webm", "c.avi", "d.mkv"}  # DALI decodes VP9/MJPEG on CPU
HAS_TORCHCODEC = backend_status("torchcodec")[0].available
HAS_DALI = backend_status("dali")[0].available


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Four videos (H.264 with B-frames, VP9, MJPEG in AVI and MKV), their lossless frame folders, and lists."""
    root = tmp_path_factory.mktemp("backends")
    records, folders = [], []
    for label, (name, codec) in enumerate(VIDEOS):
        extra = {"bframes": 2} if codec == "h264" else {}
        write_video(root / name, codec=codec, num_frames=FRAMES, width=80, height=60, gop=8, seed=label, **extra)
        folder = root / f"frames_{label}"
        folder.mkdir()
        for n, frame in enumerate(decode_all(root / name)):
            Image.fromarray(frame).save(frame_path(folder, n), format="PNG")
        records.append(ListRecord(name, FRAMES, label))
        folders.append(ListRecord(folder.name, FRAMES, label))
    write_list(root / "videos.txt", records)
    write_list(root / "frames.txt", folders)
    write_list(root / "dali.txt", [r for r in records if r.path in DALI_VIDEOS])
    return root


def load(data: Path, list_name: str, clip: ClipSpec, **config) -> tuple[torch.Tensor, torch.Tensor]:
    """Every batch of one pass (epoch 1), concatenated."""
    options = {"workers": 0, "batch_size": 2, "seed": 3, "drop_last": False, "num_classes": len(VIDEOS), **config}
    with_dali = options.get("backend") == "dali"
    loader = build_loader(data / list_name, clip, LoaderConfig(root_path=str(data), **options))
    loader.set_epoch(1)
    batches = list(loader)
    if with_dali:
        loader.close()
    return torch.cat([c for c, _ in batches]), torch.cat([lab for _, lab in batches])


CLIPS = {
    "train": ClipSpec(mode="train", seq_length=4, sample_rate=3, num_segments=2, crop_size=48, scale_size=56),
    "val": ClipSpec(mode="val", seq_length=4, sample_rate=3, crop_size=48, scale_size=56),
    "test": ClipSpec(mode="test", seq_length=4, sample_rate=3, test_segments=2, test_crops=3, crop_size=48,
                     scale_size=56),
    "repeat": ClipSpec(mode="train", seq_length=4, sample_rate=3, num_clips=3, crop_size=48, scale_size=56),
}


@pytest.mark.parametrize("view", sorted(CLIPS))
def test_frame_exact_backends_are_bit_identical(data: Path, view: str) -> None:
    clip = CLIPS[view]
    ref, labels = load(data, "videos.txt", clip, backend="pyav")
    assert ref.shape[0] == len(VIDEOS) * clip.num_clips and ref.shape[1] == clip.views
    others = {"lintel": load(data, "videos.txt", clip, backend="lintel"),
              "frames": load(data, "frames.txt", clip, backend="frames")}
    if HAS_TORCHCODEC:
        others["torchcodec"] = load(data, "videos.txt", clip, backend="torchcodec")
    for name, (clips, got_labels) in others.items():
        assert torch.equal(got_labels, labels), name
        assert torch.equal(clips, ref), f"{name} differs from pyav ({view})"


@pytest.mark.skipif(not HAS_TORCHCODEC, reason="torchcodec not installed (make setup installs it with FFmpeg libs)")
def test_torchcodec_approximate_is_within_tolerance(data: Path) -> None:
    for clip in (CLIPS["train"], CLIPS["test"]):
        ref, labels = load(data, "videos.txt", clip, backend="pyav")
        got, got_labels = load(data, "videos.txt", clip, backend="torchcodec",
                               backend_options={"seek_mode": "approximate"})
        assert torch.equal(got_labels, labels)
        assert (got.int() - ref.int()).abs().float().mean().item() <= TORCHCODEC_APPROX_TOL


@pytest.mark.skipif(not HAS_DALI, reason="NVIDIA DALI not installed")
@pytest.mark.parametrize("view", ["train", "test", "repeat"])
def test_dali_is_within_tolerance(data: Path, view: str) -> None:
    clip = CLIPS[view]
    ref, labels = load(data, "dali.txt", clip, backend="pyav")
    got, got_labels = load(data, "dali.txt", clip, backend="dali", device="cpu")
    assert got.shape == ref.shape and torch.equal(got_labels, labels)
    assert (got.int() - ref.int()).abs().float().mean().item() <= CLIP_MEAN_TOL


class CountingReader(PyAVReader):
    """The real PyAV reader, counting how many times each video is opened."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []

    def read(self, path, indices):
        self.calls.append((str(path), len(indices)))
        return super().read(path, indices)


def test_num_clips_are_independent_draws_decoded_in_one_pass(data: Path) -> None:
    clip = CLIPS["repeat"]
    reader = CountingReader()
    config = LoaderConfig(root_path=str(data), backend=reader, workers=0, batch_size=4, seed=3,
                          num_classes=len(VIDEOS), verify_frame_num=False)
    loader = build_loader(data / "videos.txt", clip, config)
    loader.set_epoch(1)
    ((clips, labels),) = list(loader)
    assert clips.shape == (4 * 3, 1, 3, 4, 48, 48)
    assert len(reader.calls) == 4 and all(n == 3 * 4 for _, n in reader.calls)  # one read per video, 3 clips
    # K consecutive samples per video, its label each time; the K clips differ.
    order = [int(x) for x in labels[::3]]
    assert labels.tolist() == [x for x in order for _ in range(3)]
    for v in range(4):
        k_clips = clips[3 * v : 3 * v + 3]
        assert not torch.equal(k_clips[0], k_clips[1]) and not torch.equal(k_clips[1], k_clips[2])
    # Each clip is the full decode at the planned indices, cropped by the planned draws.
    planner = ClipPlanner(read_list(data / "videos.txt"), clip=clip, config=config)
    for v, index in enumerate(order):
        plan = planner.plan(index, epoch=1)
        full = np.stack(decode_all(data / VIDEOS[index][0]))
        assert torch.equal(make_views(full[plan.flat_indices], clip, plan.rng), clips[3 * v : 3 * v + 3])
    # Same seed and epoch: same clips; another epoch: others.
    again, _ = next(iter(loader))
    assert torch.equal(again, clips)
    loader.set_epoch(2)
    assert not torch.equal(next(iter(loader))[0], clips)


def test_num_clips_is_for_training_only() -> None:
    with pytest.raises(ValueError, match=r"num_clips \(2\) > 1 repeats random train clips; val views are fixed"):
        ClipSpec(mode="val", num_clips=2)
    assert CLIPS["repeat"].for_mode("val").num_clips == 1


# ---------------------------------------------------------------- the registry


def test_backends_command_prints_every_backend_with_devices_and_versions() -> None:
    result = CliRunner().invoke(cli, ["backends"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:5] == ["backend", "kind", "usable", "devices", "version"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(BACKENDS)
    assert rows["pyav"].split()[1:4] == ["reader", "yes", "cpu"] and "av " in rows["pyav"]
    assert rows["dali"].split()[1] == "loader"
    if HAS_TORCHCODEC:
        assert "torchcodec 0.13.0" in rows["torchcodec"]


def test_torchcodec_is_usable_wherever_ffmpeg_libraries_are() -> None:
    """`make setup` installs the torchcodec extra where FFmpeg's shared libraries are (CI apt-installs them),
    so its tests above must run there rather than skip."""
    if not ctypes.util.find_library("avcodec"):
        pytest.skip("no FFmpeg shared libraries on this machine (apt-get install ffmpeg)")
    assert HAS_TORCHCODEC, f"torchcodec: {backend_status('torchcodec')[0].note}; run `make setup`"


def test_unknown_backend_lists_what_is_available(data: Path) -> None:
    with pytest.raises(BackendError, match=r"backend \('nope'\) must be one of: dali, frames, lintel, pyav, "
                       r"torchcodec; available here: .*pyav.*videoprep backends"):
        build_loader(data / "videos.txt", CLIPS["val"], LoaderConfig(backend="nope", root_path=str(data)))


def test_unusable_backend_says_why(data: Path, monkeypatch) -> None:
    missing = BackendStatus("ghost", "reader", False, note="package missing: pip install ghost")
    monkeypatch.setitem(BACKENDS, "ghost", Backend("ghost", "ghost:Reader", probe=lambda name, kind: missing))
    with pytest.raises(BackendError, match=r"backend 'ghost' is not usable here: package missing: pip install "
                       r"ghost; available here: .*not: ghost \(package missing"):
        build_loader(data / "videos.txt", CLIPS["val"], LoaderConfig(backend="ghost", root_path=str(data)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_decoding_is_refused_where_it_cannot_run(data: Path) -> None:
    for backend in ("pyav", "torchcodec") if HAS_TORCHCODEC else ("pyav",):
        with pytest.raises(BackendError, match=rf"backend '{backend}' cannot decode on cuda here"):
            build_loader(data / "videos.txt", CLIPS["val"],
                         LoaderConfig(backend=backend, device="cuda", root_path=str(data)))


def test_loader_imports_no_backend_and_dali_no_loader() -> None:
    code = (
        "import sys, pipelines.loader; "
        "print(sorted(m for m in sys.modules if m.startswith(('pipelines.backends.', 'pipelines.dali', "
        "'torchcodec', 'nvidia.dali'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = "import sys, pipelines.dali; print('pipelines.loader' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.skipif(not HAS_DALI, reason="NVIDIA DALI not installed")
def test_dali_prefetches_and_releases_its_pipeline(data: Path) -> None:
    config = LoaderConfig(root_path=str(data), backend="dali", device="cpu", batch_size=1, num_classes=len(VIDEOS))
    with build_loader(data / "dali.txt", CLIPS["val"], config) as loader:
        batches = iter(loader)
        next(batches)
        assert loader.is_open
        assert loader.in_flight >= 1  # batch 2 was handed to DALI before batch 1 was consumed
        assert len(list(batches)) == 2
        assert not loader.is_open  # a finished pass releases it
        abandoned = iter(loader)
        next(abandoned)
        assert loader.is_open
        del abandoned  # a pass given up early releases it too
        assert not loader.is_open
        again = iter(loader)
        next(again)
        assert loader.is_open
    assert not loader.is_open  # leaving the block releases it
    with pytest.raises(VideoprepError, match="the DALI loader was closed during a pass"):
        next(again)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torchcodec_decodes_on_cuda(data: Path) -> None:
    if "cuda" not in backend_status("torchcodec")[0].devices:
        pytest.skip("this torchcodec build has no CUDA decoder")
    clip = CLIPS["train"]
    ref, labels = load(data, "videos.txt", clip, backend="pyav")
    got, got_labels = load(data, "videos.txt", clip, backend="torchcodec", device="cuda", pin_memory=False)
    assert got.is_cuda and torch.equal(got_labels, labels) and got.shape == ref.shape
    # NVDEC converts colour with its own kernels: same frames, RGB within the DALI tolerance.
    assert (got.cpu().int() - ref.int()).abs().float().mean().item() <= CLIP_MEAN_TOL
