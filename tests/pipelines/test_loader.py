"""VideoClipDataset and build_loader: shapes, exact content, seeding, bad videos in real workers, bad lists."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import transforms as T
from pipelines.backends.frames import frame_path
from pipelines.backends.pyav import PyAVReader
from pipelines.dataset import BadSampleError, VideoClipDataset
from pipelines.loader import build_loader
from pipelines.sampling import clip_indices
from pipelines.spec import ClipSpec, LoaderConfig
from videoprep.decode import decoder_threads
from videoprep.errors import ListFormatError
from videoprep.synth import decode_all, write_video

NUM_VIDEOS = 5
NUM_FRAMES = 48
CLIP = {"seq_length": 4, "sample_rate": 3}  # span 10 frames: room for several segments


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Videos v0..v4 (H.264, 96x72, 48 frames, label = index) and a few broken files."""
    root = tmp_path_factory.mktemp("loader")
    for i in range(NUM_VIDEOS):
        write_video(root / f"v{i}.mp4", num_frames=NUM_FRAMES, width=96, height=72, codec="h264",
                    gop=8, bframes=2, seed=i)
    (root / "garbage.mp4").write_bytes(b"\x00no video here" * 64)
    (root / "truncated.mp4").write_bytes((root / "v0.mp4").read_bytes()[:1500])
    return root


def split(options: dict) -> tuple[ClipSpec, LoaderConfig]:
    """ClipSpec and LoaderConfig from one flat set of options (as a CLI would build them)."""
    names = {f.name for f in dataclasses.fields(ClipSpec)}
    clip = ClipSpec(**{k: v for k, v in options.items() if k in names})
    return clip, LoaderConfig(**{k: v for k, v in options.items() if k not in names})


def make_loader(lst, *, subset=None, **options):
    return build_loader(lst, *split(options), subset=subset)


def make_dataset(lst, **options) -> VideoClipDataset:
    return VideoClipDataset(lst, *split(options))


def write_list(root: Path, name: str, lines: list[str]) -> Path:
    path = root / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def good_lines() -> list[str]:
    return [f"v{i}.mp4 {NUM_FRAMES} {i}" for i in range(NUM_VIDEOS)]


def batches(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return list(loader)


def test_val_items_are_the_official_pipeline_on_a_full_decode(data):
    lst = write_list(data, "val.txt", good_lines())
    ds = make_dataset(lst, root_path=data, mode="val", num_segments=2, num_classes=NUM_VIDEOS, **CLIP)
    item = ds[3]
    assert item.label == 3 and item.bad == ()
    assert item.clips.shape == (1, 2, 3, 4, 224, 224) and item.clips.dtype == torch.uint8
    frames = np.stack(decode_all(data / "v3.mp4"))
    for s, idx in enumerate(clip_indices(NUM_FRAMES, num_segments=2, mode="val", **CLIP)):
        expected = T.val_transform(T.to_clip(frames[idx]))
        assert torch.equal(item.clips[0, s], expected), f"segment {s}"


def test_test_views_are_segment_major(data):
    lst = write_list(data, "test.txt", good_lines())
    ds = make_dataset(lst, root_path=data, mode="test", test_segments=2, test_crops=3,
                          num_classes=NUM_VIDEOS, **CLIP)
    (clips,) = ds[1].clips
    assert clips.shape == (6, 3, 4, 256, 256) and ds.views_per_video == 6
    frames = np.stack(decode_all(data / "v1.mp4"))
    idx = clip_indices(NUM_FRAMES, num_segments=2, mode="test", **CLIP)
    seg1 = T.test_transform(T.to_clip(frames[idx[1]]), test_crops=3)
    assert torch.equal(clips[3:6], seg1)  # segment 1, crops 0..2


def test_loader_shapes_len_and_drop_last(data):
    lst = write_list(data, "list.txt", good_lines())
    train = make_loader(lst, root_path=data, mode="train", batch_size=2, workers=0, num_classes=NUM_VIDEOS,
                         num_segments=2, **CLIP)
    got = batches(train, 0)
    assert len(train) == len(got) == 2  # 5 videos, last partial batch dropped
    clips, labels = got[0]
    assert clips.shape == (2, 2, 3, 4, 224, 224) and clips.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.shape == (2,)
    test = make_loader(lst, root_path=data, mode="test", batch_size=2, workers=0, num_classes=NUM_VIDEOS,
                        test_segments=1, test_crops=10, **CLIP)
    got = batches(test, 0)
    assert len(test) == 3 and [len(b[1]) for b in got] == [2, 2, 1]
    assert got[0][0].shape == (2, 10, 3, 4, 224, 224)
    assert torch.cat([b[1] for b in got]).tolist() == list(range(NUM_VIDEOS))  # list order kept


def test_same_seed_and_epoch_give_the_same_clips_whatever_the_workers(data):
    lst = write_list(data, "train.txt", good_lines())
    kwargs = dict(root_path=data, mode="train", batch_size=2, num_classes=NUM_VIDEOS, drop_last=False, **CLIP)
    serial = make_loader(lst, workers=0, seed=3, **kwargs)
    parallel = make_loader(lst, workers=2, seed=3, persistent_workers=True, **kwargs)
    for epoch in (0, 1):  # persistent workers: the epoch must travel with the indices
        a, b = batches(serial, epoch), batches(parallel, epoch)
        assert len(a) == len(b) == 3
        for (ca, la), (cb, lb) in zip(a, b, strict=True):
            assert torch.equal(la, lb) and torch.equal(ca, cb)
    e0, e1 = batches(serial, 0), batches(serial, 1)
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(e0, e1, strict=True))
    other = batches(make_loader(lst, workers=0, seed=4, **kwargs), 0)
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(e0, other, strict=True))


def test_bad_videos_are_replaced_logged_once_and_counted_in_workers(data, caplog):
    lines = good_lines() + [
        "garbage.mp4 40 0",
        "truncated.mp4 40 1",
        f"v2.mp4 {NUM_FRAMES * 3} 2",  # frame_num larger than the real count
        "missing.mp4 40 3",
    ]
    lst = write_list(data, "bad.txt", lines)
    loader = make_loader(lst, root_path=data, mode="val", batch_size=3, workers=2, num_classes=NUM_VIDEOS,
                          max_bad_fraction=0.5, check_files=False, **CLIP)
    caplog.set_level(logging.WARNING, logger="pipelines.loader")
    for epoch in (0, 1):
        got = batches(loader, epoch)
        assert [len(labels) for _, labels in got] == [3, 3, 3]  # every slot filled by a replacement
        assert all(c.shape[1:] == (1, 3, 4, 224, 224) for c, _ in got)
    bad = loader.bad_samples
    assert sorted(bad) == [5, 6, 7, 8]
    assert bad[5].kind == "decode" and "garbage.mp4" in bad[5].path
    assert bad[6].kind == "decode"
    assert bad[7].kind == "frame_num" and f"frame_num {NUM_FRAMES * 3}" in bad[7].reason
    assert f"only {NUM_FRAMES} frames" in bad[7].reason
    assert bad[8].kind == "decode" and "missing.mp4" in bad[8].path
    assert loader.bad_events >= 8  # 4 bad entries x 2 epochs, plus bad entries drawn as replacements
    warnings = [r.getMessage() for r in caplog.records if "bad video replaced" in r.getMessage()]
    assert len(warnings) == 4, "each bad entry is logged once, not once per epoch"


@pytest.mark.parametrize("backend", ["pyav", "lintel"])
def test_an_overstated_frame_num_inside_the_video_is_reported_by_default(data, backend):
    # frame_num 60 for a 48-frame video: the centred val clip (frames 25..34) lies inside it.
    lst = write_list(data, "over.txt", [f"v0.mp4 {NUM_FRAMES + 12} 0", *good_lines()[1:]])
    options = dict(root_path=data, mode="val", backend=backend, batch_size=5, num_classes=NUM_VIDEOS,
                   max_bad_fraction=1.0, **CLIP)
    checked = make_loader(lst, workers=1, **options)
    for epoch in (0, 1):  # counted once per worker, still replaced every epoch
        (_, labels), = batches(checked, epoch)
        assert 0 not in labels.tolist()
    assert list(checked.bad_samples) == [0] and checked.bad_events == 2
    bad = checked.bad_samples[0]
    assert bad.kind == "frame_num" and bad.reason == (
        f"frame_num {NUM_FRAMES + 12} in the list is wrong: the video has only {NUM_FRAMES} frames"
    )
    unchecked = make_loader(lst, workers=0, verify_frame_num=False, **options)
    batches(unchecked, 0)
    assert unchecked.bad_samples == {}  # without the check only an index past the end gives it away


def test_replacement_is_deterministic(data):
    lst = write_list(data, "repl.txt", ["garbage.mp4 40 0", *good_lines()])
    ds = make_dataset(lst, root_path=data, mode="train", num_classes=NUM_VIDEOS, seed=1, **CLIP)
    a, b = ds[(0, 2)], ds[(0, 2)]
    assert torch.equal(a.clips, b.clips) and a.label == b.label
    assert [x.path for x in a.bad] == [str(data / "garbage.mp4")]


def test_too_many_bad_videos_stop_the_run(data):
    lst = write_list(data, "worse.txt", ["garbage.mp4 40 0", "truncated.mp4 40 1", *good_lines()])
    loader = make_loader(lst, root_path=data, mode="val", batch_size=7, workers=0, num_classes=NUM_VIDEOS,
                          max_bad_fraction=0.1, min_bad_samples=1, **CLIP)
    with pytest.raises(BadSampleError, match=r"2 bad videos of 7 exceed the limit of 1 \(max_bad_fraction=0.1\)"):
        batches(loader, 0)


def test_a_sample_gives_up_when_every_replacement_fails(data):
    lst = write_list(data, "allbad.txt", ["garbage.mp4 40 0", "truncated.mp4 40 1"])
    ds = make_dataset(lst, root_path=data, mode="val", num_classes=2, max_replacements=3, **CLIP)
    with pytest.raises(BadSampleError, match="garbage.mp4: this video and 3 replacements all failed"):
        ds[0]
    # Raised in a worker process, it reaches the training loop with its type.
    loader = make_loader(lst, root_path=data, mode="val", batch_size=1, workers=1, num_classes=2,
                          max_bad_fraction=1.0, **CLIP)
    with pytest.raises(BadSampleError, match="10 replacements all failed"):
        batches(loader, 0)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["v0.mp4 48 0", "v1.mp4 48"], r"bad\.txt:2: expected 'path frame_num label'"),
        (["v0.mp4 48 0", "v1.mp4 48 1", "v2.mp4 x 1"], r"bad\.txt:3: frame_num 'x' is not an integer"),
        (["v0.mp4 48 0", "v1.mp4 48 1", "v2.mp4 48 7"], r"bad\.txt:3: label \(7\) must be in 0..4"),
        (["my video.mp4 48 0"], r"bad\.txt:1: .*does the path contain a space"),
        (["v0.mp4 48 0", "gone.mp4 48 1"], r"bad\.txt:2: video .*gone\.mp4' does not exist"),
    ],
)
def test_bad_list_files_fail_fast_with_the_line(tmp_path, data, lines, message):
    lst = write_list(tmp_path, "bad.txt", lines)
    with pytest.raises(ListFormatError, match=message):
        make_loader(lst, root_path=data, mode="val", batch_size=1, workers=0, num_classes=NUM_VIDEOS)


def test_distributed_shards_drop_the_tail_and_report_it(data):
    lst = write_list(data, "dist.txt", good_lines())
    seen = []
    for rank in (0, 1):
        loader = make_loader(lst, root_path=data, mode="val", batch_size=1, workers=0, num_classes=NUM_VIDEOS,
                              distributed=True, num_replicas=2, rank=rank, **CLIP)
        assert len(loader) == 2
        assert loader.remainder_indices == [4]
        seen.append([int(labels[0]) for _, labels in batches(loader, 0)])
    assert sorted(seen[0] + seen[1]) == [0, 1, 2, 3]
    rest = make_loader(lst, root_path=data, mode="val", batch_size=4, workers=0, num_classes=NUM_VIDEOS,
                        subset=[4], **CLIP)
    assert [labels.tolist() for _, labels in batches(rest, 0)] == [[4]]
    train = [
        make_loader(lst, root_path=data, mode="train", batch_size=1, workers=0, num_classes=NUM_VIDEOS,
                     distributed=True, num_replicas=2, rank=r, seed=5, **CLIP)
        for r in (0, 1)
    ]
    labels = [[int(lab[0]) for _, lab in batches(loader, 1)] for loader in train]
    assert len(labels[0]) == len(labels[1]) == 2 and not set(labels[0]) & set(labels[1])


def test_frames_backend_through_the_loader(data, tmp_path):
    for i in range(2):
        directory = tmp_path / f"v{i}"
        directory.mkdir()
        for n, frame in enumerate(decode_all(data / f"v{i}.mp4")):
            Image.fromarray(frame).save(frame_path(directory, n), quality=95)
    lst = write_list(tmp_path, "frames.txt", [f"v0 {NUM_FRAMES} 0", f"v1 {NUM_FRAMES} 1"])
    frames_loader = make_loader(lst, root_path=tmp_path, mode="val", backend="frames", batch_size=2,
                                 workers=0, num_classes=2, **CLIP)
    video_lst = write_list(data, "two.txt", good_lines()[:2])
    video_loader = make_loader(video_lst, root_path=data, mode="val", batch_size=2, workers=0, num_classes=2,
                                **CLIP)
    (fc, fl), = batches(frames_loader, 0)
    (vc, vl), = batches(video_loader, 0)
    assert torch.equal(fl, vl) and fc.shape == vc.shape
    assert (fc.float() - vc.float()).abs().mean() < 12  # the same frames, through lossy JPEG


class ThreadRecordingReader(PyAVReader):
    """The real PyAV reader that also notes, in the worker, the torch and decoder thread settings."""

    def __init__(self, log_file: str) -> None:
        super().__init__()
        self.log_file = log_file

    def read(self, path, indices):
        with open(self.log_file, "a") as f:
            f.write(f"{os.getpid()} {torch.get_num_threads()} {decoder_threads()}\n")
        return super().read(path, indices)


def test_workers_run_one_torch_thread_and_single_threaded_decoders(data, tmp_path):
    log_file = tmp_path / "threads.txt"
    lst = write_list(data, "threads.txt", good_lines())
    loader = make_loader(lst, root_path=data, mode="val", backend=ThreadRecordingReader(str(log_file)),
                          batch_size=5, workers=2, num_classes=NUM_VIDEOS, **CLIP)
    assert loader._loader.persistent_workers and loader._loader.pin_memory == torch.cuda.is_available()
    batches(loader, 0)
    rows = [line.split() for line in log_file.read_text().splitlines()]
    assert len(rows) == NUM_VIDEOS and all(pid != str(os.getpid()) for pid, _, _ in rows)
    assert {(torch_threads, decoders) for _, torch_threads, decoders in rows} == {("1", "1")}


def test_argument_errors(data):
    lst = write_list(data, "args.txt", good_lines())
    with pytest.raises(ValueError, match="backend"):
        make_loader(lst, root_path=data, mode="val", backend="nope", batch_size=1, num_classes=NUM_VIDEOS)
    with pytest.raises(ValueError, match="mode"):
        make_loader(lst, root_path=data, mode="eval", batch_size=1, num_classes=NUM_VIDEOS)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(lst, root_path=data, mode="val", batch_size=0, num_classes=NUM_VIDEOS)
    with pytest.raises(ValueError, match="distributed=True needs"):
        make_loader(lst, root_path=data, mode="val", batch_size=1, num_classes=NUM_VIDEOS, distributed=True)


def test_closing_the_loader_stops_its_persistent_workers(data):
    import multiprocessing

    lst = write_list(data, "close.txt", good_lines())
    with make_loader(lst, root_path=data, mode="val", batch_size=5, workers=2, num_classes=NUM_VIDEOS,
                     **CLIP) as loader:
        batches(loader, 0)
        workers = multiprocessing.active_children()
        assert len(workers) == 2  # persistent between epochs
    for worker in workers:
        worker.join(timeout=30)
    assert not any(w.is_alive() for w in workers)
    assert len(batches(loader, 1)) == 1  # still usable: workers start again
