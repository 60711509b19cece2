"""The DALI loader on CPU: same frames as PyAV within decoder tolerance, same batches as build_loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali")

from pipelines.backends import get_reader  # noqa: E402
from pipelines.dali import DaliCodecError, DaliSample, build_decode_pipeline, run_decode  # noqa: E402
from pipelines.dataset import BadSampleError  # noqa: E402
from pipelines.decode import count_frames  # noqa: E402
from pipelines.loader import build_loader  # noqa: E402
from pipelines.planning import ClipPlan  # noqa: E402
from pipelines.spec import ClipSpec, LoaderConfig  # noqa: E402
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


def dali(lst: Path, clip: ClipSpec, **config) -> object:
    """The DALI loader on CPU for `lst` (root: the list's folder)."""
    return build_loader(lst, clip, LoaderConfig(backend="dali", device="cpu", root_path=str(lst.parent), **config))


def pyav(lst: Path, clip: ClipSpec, **config) -> object:
    """The torch loader with the pyav backend, in this process."""
    return build_loader(lst, clip, LoaderConfig(backend="pyav", workers=0, root_path=str(lst.parent), **config))


def _luma(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_decoded_frames_match_pyav(dataset_dir: Path) -> None:
    """Any order, duplicates: each DALI frame is the requested frame, within the stated tolerance."""
    pipe = build_decode_pipeline(None, batch_size=2, device="cpu", device_id=None, num_threads=1, prefetch=1)
    wanted = [31, 0, 7, 7, 39, 12]
    samples = [
        DaliSample(ClipPlan(i, str(dataset_dir / name), i, ((tuple(wanted),),)), (dataset_dir / name).read_bytes())
        for i, name in enumerate(["a.webm", "d.mkv"])
    ]
    reader = get_reader("pyav")
    for sample, frames in zip(samples, run_decode(pipe, samples, device="cpu"), strict=True):
        plan = sample.plan
        got = frames.numpy()
        every = reader.read(plan.path, list(range(max(wanted) + 1))).astype(np.int32)
        assert got.shape == (len(wanted), 60, 80, 3) and got.dtype == np.uint8
        for k, index in enumerate(wanted):
            distances = np.abs(every - got[k].astype(np.int32)).mean(axis=(1, 2, 3))
            assert int(distances.argmin()) == index, f"{plan.path} slot {k}: closest frame {distances.argmin()}"
            assert distances[index] <= RGB_MEAN_TOL
            luma = np.abs(_luma(got[k]) - _luma(every[index])).mean()
            assert luma <= LUMA_MEAN_TOL, f"{plan.path} frame {index}: luma differs by {luma:.2f}"


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
    clip = ClipSpec(mode=mode, seq_length=4, sample_rate=2, **extra)
    loader, ref = dali(dataset_dir / "train.txt", clip, batch_size=2, seed=7), pyav(
        dataset_dir / "train.txt", clip, batch_size=2, seed=7)
    assert len(loader) == len(ref) == (2 if mode == "train" else 3)
    for epoch in (0, 1) if mode == "train" else (0,):
        loader.set_epoch(epoch)
        ref.set_epoch(epoch)
        batches = list(zip(loader, ref, strict=True))
        for (clips, labels), (ref_clips, ref_labels) in batches:
            assert clips.dtype == torch.uint8 and labels.dtype == torch.int64
            assert clips.shape == ref_clips.shape == (len(labels), views, 3, 4, size, size)
            assert torch.equal(labels, ref_labels)
            diff = (clips.int() - ref_clips.int()).abs().float().mean().item()
            assert diff <= CLIP_MEAN_TOL, f"{mode} epoch {epoch}: clips differ by {diff:.2f} on average"


def test_crop_and_scale_sizes_follow_build_loader(dataset_dir: Path) -> None:
    clip = ClipSpec(mode="test", seq_length=2, sample_rate=4, test_segments=1, test_crops=10, crop_size=112,
                    scale_size=128)
    lst = dataset_dir / "train.txt"
    loader = build_loader(lst, clip, LoaderConfig(backend="dali", device="cpu", root_path=str(dataset_dir),
                                                  batch_size=2), subset=[1, 2])
    ref_loader = build_loader(lst, clip, LoaderConfig(root_path=str(dataset_dir), workers=0, batch_size=2),
                              subset=[1, 2])
    (clips, labels), (ref, ref_labels) = next(iter(loader)), next(iter(ref_loader))
    assert clips.shape == ref.shape == (2, 10, 3, 2, 112, 112)
    assert labels.tolist() == ref_labels.tolist() == [1, 2]
    assert (clips.int() - ref.int()).abs().float().mean().item() <= CLIP_MEAN_TOL


def test_verify_frame_num_reports_an_overstated_count(dataset_dir: Path, tmp_path: Path) -> None:
    """Clips that fall inside the video would hide a wrong frame_num; the default check catches it."""
    (tmp_path / "a.webm").symlink_to(dataset_dir / "a.webm")
    write_list(tmp_path / "list.txt", [ListRecord("a.webm", 44, 0)] + [ListRecord("a.webm", 40, 1)] * 3)
    clip = ClipSpec(mode="val", seq_length=2, sample_rate=1)
    config = LoaderConfig(root_path=str(tmp_path), backend="dali", batch_size=1, device="cpu")
    loader = build_loader(tmp_path / "list.txt", clip, config, subset=[0])
    assert next(iter(loader))[1].tolist() == [1]  # replaced by a correct entry
    assert loader.bad_samples[0].reason == "frame_num 44 in the list is wrong: the video has only 40 frames"
    unchecked = build_loader(tmp_path / "list.txt", clip, config.with_options(verify_frame_num=False), subset=[0])
    assert next(iter(unchecked))[1].tolist() == [0]  # the sampled frames exist: only the check sees it


def test_training_clips_change_with_the_epoch_and_repeat_with_the_seed(dataset_dir: Path) -> None:
    def first_batch(epoch: int) -> torch.Tensor:
        loader = dali(dataset_dir / "train.txt", ClipSpec(mode="train", seq_length=4, sample_rate=2), batch_size=2,
                      seed=11, shuffle=False)
        loader.set_epoch(epoch)
        return next(iter(loader))[0]

    assert torch.equal(first_batch(2), first_batch(2))
    assert not torch.equal(first_batch(2), first_batch(3))


def test_distributed_loaders_split_the_list(dataset_dir: Path) -> None:
    labels = []
    for rank in (0, 1):
        loader = dali(dataset_dir / "train.txt", ClipSpec(mode="val", seq_length=2, sample_rate=1), batch_size=4,
                      distributed=True, num_replicas=2, rank=rank)
        labels.append([int(x) for _, batch in loader for x in batch])
        assert loader.remainder_indices == [4]
    assert labels == [[0, 2], [1, 3]]


def test_h264_is_refused_on_cpu_with_the_fix(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.mp4", codec="h264", num_frames=20, width=64, height=48)
    write_list(tmp_path / "list.txt", [ListRecord("clip.mp4", 20, 0)])
    loader = dali(tmp_path / "list.txt", ClipSpec(mode="val", seq_length=2, sample_rate=1))
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
    clip = ClipSpec(mode="val", seq_length=2, sample_rate=40)
    loader = dali(tmp_path / "list.txt", clip, batch_size=7)
    clips, labels = next(iter(loader))
    assert clips.shape[0] == 7 and labels[:5].tolist() == [0, 1, 2, 3, 4]
    assert sorted(loader.bad_samples) == [5, 6]
    assert loader.bad_samples[6].reason == "frame_num 90 in the list is wrong: the video has only 40 frames"
    unchecked = dali(tmp_path / "list.txt", clip, batch_size=7, verify_frame_num=False)
    next(iter(unchecked))  # the index past the real end still gives it away, never looped
    assert "frame 65 requested but the video has only 40 frames" in unchecked.bad_samples[6].reason
    strict = dali(tmp_path / "list.txt", clip, batch_size=7, min_bad_samples=1, max_bad_fraction=0.0)
    with pytest.raises(BadSampleError, match=r"2 bad videos of 7 exceed the limit of 1"):
        next(iter(strict))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (NVDEC)")
def test_gpu_decodes_h264_onto_the_device(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.mp4", codec="h264", num_frames=40, width=64, height=48, gop=8)
    write_list(tmp_path / "list.txt", [ListRecord("clip.mp4", 40, 0)])
    clip = ClipSpec(mode="val", seq_length=4, sample_rate=2)
    loader = build_loader(tmp_path / "list.txt", clip, LoaderConfig(backend="dali", device="cuda",
                                                                     root_path=str(tmp_path)))
    clips, _ = next(iter(loader))
    ref, _ = next(iter(pyav(tmp_path / "list.txt", clip)))
    assert clips.is_cuda and clips.shape == ref.shape
    assert (clips.cpu().int() - ref.int()).abs().float().mean().item() <= CLIP_MEAN_TOL


def test_a_video_dali_fails_on_is_retried_alone_and_replaced(dataset_dir: Path, tmp_path: Path) -> None:
    """Packets that demux but do not decode: DALI fails the batch; the loader re-decodes it video by video."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(dataset_dir / "a.webm")) as src, av.open(str(tmp_path / "noise.webm"), "w") as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.size == 0:
                continue
            noise = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
            noise.pts, noise.dts, noise.time_base = packet.pts, packet.dts, packet.time_base
            noise.is_keyframe, noise.stream = packet.is_keyframe, out
            dst.mux(noise)
    frames = count_frames(str(tmp_path / "noise.webm"))
    for name, *_ in VIDEOS:
        (tmp_path / name).symlink_to(dataset_dir / name)
    records = [ListRecord(name, n, label) for label, (name, _, n) in enumerate(VIDEOS)]
    write_list(tmp_path / "list.txt", records[:2] + [ListRecord("noise.webm", frames, 4)] + records[2:])
    loader = dali(tmp_path / "list.txt", ClipSpec(mode="val", seq_length=2, sample_rate=2), batch_size=2,
                  max_bad_fraction=1.0)
    labels = [int(x) for _, batch in loader for x in batch]
    assert len(labels) == 6 and labels[:2] + labels[3:] == [0, 1, 2, 3, 4]  # every slot filled
    bad = loader.bad_samples[2]
    assert bad.kind == "decode" and bad.reason.startswith("DALI cannot decode it: Assert on")
