"""The DALI loader on CPU: same frames as PyAV within decoder tolerance, same batches as build_loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali")

from pipelines.backends import get_reader  # noqa: E402
from pipelines.dali import (  # noqa: E402
    DaliCodecError,
    SamplePlan,
    build_decode_pipeline,
    make_views,
    remainder_positions,
    run_decode,
    shard_sampler,
)
from pipelines.dataset import BadSampleError, VideoClipDataset  # noqa: E402
from pipelines.loader import build_loader  # noqa: E402
from pipelines.sampling import clip_indices  # noqa: E402
from videoprep.records import ListRecord, write_list  # noqa: E402
from videoprep.synth import write_video  # noqa: E402

# Decoder tolerance, measured on these sharp-edged synthetic frames: DALI interpolates chroma
# when converting to RGB, FFmpeg's default conversion (what PyAV gives) takes the nearest
# chroma sample. Luma agrees to ~1.3 grey levels on average, RGB to ~7-8 (up to ~2 on smooth
# content); the next frame is ~20 away, so "the closest PyAV frame is the requested one" is a
# strict identity check.
LUMA_MEAN_TOL = 2.0
RGB_MEAN_TOL = 10.0
# After crops and bilinear resizes (which average neighbouring pixels) the clips agree closer.
CLIP_MEAN_TOL = 8.0

# (name, codec, frames) of the list's videos: DALI's CPU codecs, different lengths.
VIDEOS = [("a.webm", "vp9", 40), ("b.avi", "mjpeg", 33), ("c.webm", "vp9", 27), ("d.mkv", "mjpeg", 45), ("e.webm", "vp9", 36)]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    """Five VP9/MJPEG videos (80x60) and a BAT list `train.txt` over them, labels 0..4."""
    root = tmp_path_factory.mktemp("dali")
    records = []
    for label, (name, codec, frames) in enumerate(VIDEOS):
        write_video(root / name, codec=codec, num_frames=frames, width=80, height=60, gop=10, seed=label)
        records.append(ListRecord(name, frames, label))
    write_list(root / "train.txt", records)
    return root


def _luma(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_decoded_frames_match_pyav(dataset_dir: Path) -> None:
    """Any order, duplicates: each DALI frame is the requested frame, within the stated tolerance."""
    pipe = build_decode_pipeline(batch_size=2, device="cpu", device_id=None, num_threads=1)
    wanted = [31, 0, 7, 7, 39, 12]
    plans = [
        SamplePlan(i, str(dataset_dir / name), i, (tuple(wanted),), (dataset_dir / name).read_bytes())
        for i, name in enumerate(["a.webm", "d.mkv"])
    ]
    reader = get_reader("pyav")
    for plan, frames in zip(plans, run_decode(pipe, plans, device="cpu"), strict=True):
        got = frames.numpy()
        every = reader.read(plan.path, list(range(max(wanted) + 1))).astype(np.int32)
        assert got.shape == (len(wanted), 60, 80, 3) and got.dtype == np.uint8
        for k, index in enumerate(wanted):
            distances = np.abs(every - got[k].astype(np.int32)).mean(axis=(1, 2, 3))
            assert int(distances.argmin()) == index, f"{plan.path} slot {k}: closest frame {distances.argmin()}"
            assert distances[index] <= RGB_MEAN_TOL
            luma = np.abs(_luma(got[k]) - _luma(every[index])).mean()
            assert luma <= LUMA_MEAN_TOL, f"{plan.path} frame {index}: luma differs by {luma:.2f}"


def test_views_are_the_datasets_views(dataset_dir: Path) -> None:
    """Given the same frames, make_views gives bit-identical clips to VideoClipDataset (train/val/test)."""
    reader = get_reader("pyav")
    for mode, extra in [("train", {}), ("val", {}), ("test", {"test_segments": 2, "test_crops": 3})]:
        ds = VideoClipDataset(
            dataset_dir / "train.txt", mode=mode, root_path=dataset_dir, num_segments=2, seq_length=4,
            sample_rate=2, seed=5, **extra,
        )
        rng = np.random.default_rng([5, 3, 1]) if mode == "train" else None
        segments = clip_indices(33, num_segments=ds.num_segments, seq_length=4, sample_rate=2, mode=mode, rng=rng)
        frames = torch.from_numpy(reader.read(ds.video_path(1), [i for s in segments for i in s]))
        views = make_views(frames, mode=mode, num_segments=ds.num_segments, seq_length=4,
                           test_crops=ds.test_crops, rng=rng)
        assert torch.equal(views, ds.load(1, epoch=3)), mode


@pytest.mark.parametrize(
    ("mode", "extra", "views", "size"),
    [
        ("train", {"num_segments": 2}, 2, 224),
        ("val", {"num_segments": 1}, 1, 224),
        ("test", {"test_segments": 1, "test_crops": 3}, 3, 256),
    ],
)
def test_batches_match_the_pyav_loader(dataset_dir: Path, mode: str, extra: dict, views: int, size: int) -> None:
    """Same videos in the same order with the same labels and clips (within tolerance) as backend pyav."""
    common = dict(root_path=dataset_dir, mode=mode, batch_size=2, seq_length=4, sample_rate=2, seed=7, **extra)
    dali = build_loader(dataset_dir / "train.txt", backend="dali", backend_options={"device": "cpu"}, **common)
    pyav = build_loader(dataset_dir / "train.txt", backend="pyav", workers=0, **common)
    assert len(dali) == len(pyav) == (2 if mode == "train" else 3)
    for epoch in (0, 1) if mode == "train" else (0,):
        dali.set_epoch(epoch)
        pyav.set_epoch(epoch)
        batches = list(zip(dali, pyav, strict=True))
        for (clips, labels), (ref_clips, ref_labels) in batches:
            assert clips.dtype == torch.uint8 and labels.dtype == torch.int64
            assert clips.shape == ref_clips.shape == (len(labels), views, 3, 4, size, size)
            assert torch.equal(labels, ref_labels)
            diff = (clips.int() - ref_clips.int()).abs().float().mean().item()
            assert diff <= CLIP_MEAN_TOL, f"{mode} epoch {epoch}: clips differ by {diff:.2f} on average"


def test_crop_and_scale_sizes_follow_build_loader(dataset_dir: Path) -> None:
    common = dict(root_path=dataset_dir, mode="test", batch_size=2, seq_length=2, sample_rate=4, test_segments=1,
                  test_crops=10, crop_size=112, scale_size=128, subset=[1, 2])
    dali = build_loader(dataset_dir / "train.txt", backend="dali", backend_options={"device": "cpu"}, **common)
    pyav = build_loader(dataset_dir / "train.txt", backend="pyav", workers=0, **common)
    (clips, labels), (ref, ref_labels) = next(iter(dali)), next(iter(pyav))
    assert clips.shape == ref.shape == (2, 10, 3, 2, 112, 112)
    assert labels.tolist() == ref_labels.tolist() == [1, 2]
    assert (clips.int() - ref.int()).abs().float().mean().item() <= CLIP_MEAN_TOL


def test_verify_frame_num_reports_an_overstated_count(dataset_dir: Path, tmp_path: Path) -> None:
    """Clips that fall inside the video would hide a wrong frame_num; the default check catches it."""
    (tmp_path / "a.webm").symlink_to(dataset_dir / "a.webm")
    write_list(tmp_path / "list.txt", [ListRecord("a.webm", 44, 0)] + [ListRecord("a.webm", 40, 1)] * 3)
    options = dict(root_path=tmp_path, backend="dali", mode="val", batch_size=1, seq_length=2, sample_rate=1,
                   backend_options={"device": "cpu"}, subset=[0])
    loader = build_loader(tmp_path / "list.txt", **options)
    assert next(iter(loader))[1].tolist() == [1]  # replaced by a correct entry
    assert loader.bad_samples == {0: "frame_num 44 in the list is wrong: the video has only 40 frames"}
    unchecked = build_loader(tmp_path / "list.txt", verify_frame_num=False, **options)
    assert next(iter(unchecked))[1].tolist() == [0]  # the sampled frames exist: only the check sees it


def test_training_clips_change_with_the_epoch_and_repeat_with_the_seed(dataset_dir: Path) -> None:
    def first_batch(epoch: int) -> torch.Tensor:
        loader = build_loader(
            dataset_dir / "train.txt", root_path=dataset_dir, backend="dali", mode="train", batch_size=2,
            seq_length=4, sample_rate=2, seed=11, shuffle=False, backend_options={"device": "cpu"},
        )
        loader.set_epoch(epoch)
        return next(iter(loader))[0]

    assert torch.equal(first_batch(2), first_batch(2))
    assert not torch.equal(first_batch(2), first_batch(3))


def test_shards_are_disjoint_and_cover_the_list() -> None:
    for shuffle in (False, True):
        shards = [list(shard_sampler(11, shard_id=r, num_shards=3, shuffle=shuffle, seed=4)) for r in range(3)]
        assert {len(s) for s in shards} == {3}
        seen = [i for s in shards for i in s]
        assert len(seen) == len(set(seen)) == 9
        if not shuffle:
            assert sorted(seen + remainder_positions(11, num_shards=3)) == list(range(11))
    with pytest.raises(ValueError, match=r"shard_id \(3\) must be in 0..num_shards-1"):
        shard_sampler(11, shard_id=3, num_shards=3, shuffle=False)


def test_distributed_loaders_split_the_list(dataset_dir: Path) -> None:
    labels = []
    for rank in (0, 1):
        loader = build_loader(
            dataset_dir / "train.txt", root_path=dataset_dir, backend="dali", mode="val", batch_size=4,
            seq_length=2, sample_rate=1, distributed=True, num_replicas=2, rank=rank,
            backend_options={"device": "cpu"},
        )
        labels.append([int(x) for _, batch in loader for x in batch])
        assert loader.remainder_indices == [4]
    assert labels == [[0, 2], [1, 3]]


def test_h264_is_refused_on_cpu_with_the_fix(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.mp4", codec="h264", num_frames=20, width=64, height=48)
    write_list(tmp_path / "list.txt", [ListRecord("clip.mp4", 20, 0)])
    loader = build_loader(
        tmp_path / "list.txt", root_path=tmp_path, backend="dali", mode="val", batch_size=1, seq_length=2,
        sample_rate=1, backend_options={"device": "cpu"},
    )
    with pytest.raises(DaliCodecError, match=r"clip.mp4: codec h264 needs DALI's GPU decoder .*"
                       r"`videoprep transcode --codec vp9` \(or mjpeg\), or run on a GPU"):
        next(iter(loader))


def test_bad_videos_are_replaced_then_stop_the_run(dataset_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.webm").write_bytes(b"\x1a\x45\xdf\xa3 not really a webm" * 50)
    for name, *_ in VIDEOS:
        (tmp_path / name).symlink_to(dataset_dir / name)
    records = [ListRecord(name, frames, label) for label, (name, _, frames) in enumerate(VIDEOS)]
    records += [ListRecord("broken.webm", 30, 0), ListRecord("a.webm", 90, 0)]  # undecodable; frame_num too large
    write_list(tmp_path / "list.txt", records)
    options = dict(root_path=tmp_path, backend="dali", mode="val", batch_size=7, seq_length=2, sample_rate=40,
                   backend_options={"device": "cpu"})
    loader = build_loader(tmp_path / "list.txt", **options)
    clips, labels = next(iter(loader))
    assert clips.shape[0] == 7 and labels[:5].tolist() == [0, 1, 2, 3, 4]
    assert sorted(loader.bad_samples) == [5, 6]
    assert loader.bad_samples[6] == "frame_num 90 in the list is wrong: the video has only 40 frames"
    unchecked = build_loader(tmp_path / "list.txt", verify_frame_num=False, **options)
    next(iter(unchecked))  # the index past the real end still gives it away, never looped
    assert "frame 65 requested but the video has only 40 frames" in unchecked.bad_samples[6]
    strict = build_loader(tmp_path / "list.txt", min_bad_samples=1, max_bad_fraction=0.0, **options)
    with pytest.raises(BadSampleError, match=r"2 bad videos of 7 exceed the limit of 1"):
        next(iter(strict))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (NVDEC)")
def test_gpu_decodes_h264_onto_the_device(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.mp4", codec="h264", num_frames=40, width=64, height=48, gop=8)
    write_list(tmp_path / "list.txt", [ListRecord("clip.mp4", 40, 0)])
    common = dict(root_path=tmp_path, mode="val", batch_size=1, seq_length=4, sample_rate=2)
    dali = build_loader(tmp_path / "list.txt", backend="dali", backend_options={"device": "gpu"}, **common)
    clips, _ = next(iter(dali))
    ref, _ = next(iter(build_loader(tmp_path / "list.txt", backend="pyav", workers=0, **common)))
    assert clips.is_cuda and clips.shape == ref.shape
    assert (clips.cpu().int() - ref.int()).abs().float().mean().item() <= CLIP_MEAN_TOL
