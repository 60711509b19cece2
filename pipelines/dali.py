"""The DALI loader: NVIDIA DALI decodes the frames our sampling chose; our transforms make the views.

One DALI pipeline per loader: an `external_source` feeds each video's encoded bytes and
the frame indices `pipelines.sampling.clip_indices` picked for it (one random clip per
video per training epoch, the deterministic views in val/test), and `fn.decoders.video`
decodes exactly those frames, with NVDEC (`device="mixed"`) on a GPU or libavcodec on CPU.
The decoded uint8 frames then go through the same `pipelines.transforms` ops as every
other backend (on the GPU when decoding ran there), so a clip differs from the PyAV one
only by the decoder's colour conversion. Frame sizes vary between videos, so batches
are assembled here rather than by DALI's PyTorch iterator (which needs one shape per batch).

DALI 2.4 on CPU decodes VP8, VP9 and MJPEG only; H.264/HEVC/AV1/MPEG-4 need the GPU.
Batches come out as `(clips uint8 [B, V, C, T, H, W], labels int64 [B])`, like
`pipelines.loader.build_loader`; on a GPU the clips are already CUDA tensors.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from pipelines import transforms
from pipelines.dataset import (
    MAX_REPLACEMENTS,
    BadSampleError,
    bad_sample_limit,
    check_view_options,
    replacement_index,
    too_many_bad_samples,
)
from pipelines.lintel import DecodeError, FrameIndexError, past_end_error, stream_summary
from pipelines.loader import MIN_BAD_SAMPLES, _world
from pipelines.sampling import Mode, clip_indices
from videoprep.errors import VideoprepError
from videoprep.records import ListRecord, read_list

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "gpu"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "gpu")

# What fn.decoders.video decodes in DALI 2.4, by FFmpeg codec name.
DALI_CPU_CODECS: frozenset[str] = frozenset({"vp8", "vp9", "mjpeg"})
DALI_GPU_CODECS: frozenset[str] = DALI_CPU_CODECS | {"h264", "hevc", "av1", "mpeg4"}


class DaliCodecError(DecodeError):
    """A video whose codec DALI cannot decode on the chosen device (a setup problem, not a bad sample)."""


def dali_available() -> bool:
    """True when the `nvidia.dali` package is importable."""
    return importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None


def resolve_device(device: Device) -> Literal["cpu", "gpu"]:
    """"auto" -> "gpu" when CUDA is available, else "cpu"."""
    if device not in DEVICES:
        raise ValueError(f"device ({device!r}) must be one of {', '.join(DEVICES)}")
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if device == "gpu" and not torch.cuda.is_available():
        raise ValueError("device 'gpu' asked for but torch sees no CUDA GPU; use device 'cpu' (VP8/VP9/MJPEG only)")
    return device


def check_codec(path: str, codec: str, *, device: Literal["cpu", "gpu"]) -> None:
    """Refuse codecs DALI cannot decode on `device`, naming the fix."""
    allowed = DALI_CPU_CODECS if device == "cpu" else DALI_GPU_CODECS
    if codec in allowed:
        return
    if device == "cpu" and codec in DALI_GPU_CODECS:
        raise DaliCodecError(
            path,
            f"codec {codec} needs DALI's GPU decoder (NVDEC); on CPU DALI decodes only "
            f"{', '.join(sorted(DALI_CPU_CODECS))}. Fix: `videoprep transcode --codec vp9` (or mjpeg), "
            f"or run on a GPU, or use another backend (--backend pyav)",
        )
    raise DaliCodecError(
        path, f"codec {codec} is not decoded by DALI (supported here: {', '.join(sorted(allowed))})"
    )


def shard_sampler(
    num_items: int, *, shard_id: int = 0, num_shards: int = 1, shuffle: bool, seed: int = 0
) -> DistributedSampler:
    """The same sampler `build_loader` uses: torch's DistributedSampler over positions.

    Shuffling is torch.randperm seeded with seed + epoch, so a DALI run visits videos in
    the order a PyAV run does. With several shards the tail that does not divide evenly
    is dropped (every shard takes the same number of steps) and shards are disjoint;
    `remainder_positions` lists what they leave out, for an exact evaluation.
    """
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id ({shard_id}) must be in 0..num_shards-1 (num_shards {num_shards})")
    return DistributedSampler(
        range(num_items), num_replicas=num_shards, rank=shard_id, shuffle=shuffle, seed=seed,
        drop_last=num_shards > 1,
    )


def remainder_positions(num_items: int, *, num_shards: int) -> list[int]:
    """Positions no shard visits when the list does not divide evenly (unshuffled order)."""
    return list(range((num_items // num_shards) * num_shards, num_items)) if num_shards > 1 else []


def sample_rng(*, seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one video's random clip and crop in one epoch (reproducible, worker-free)."""
    return np.random.default_rng([seed, epoch, index])  # as pipelines.dataset seeds it


@dataclass(frozen=True)
class SamplePlan:
    """One video of a batch: where it is, its label, the frames to decode (segment-major)."""

    index: int
    path: str
    label: int
    segments: tuple[tuple[int, ...], ...]
    encoded: bytes
    rng: np.random.Generator | None = None  # train: drew the segments, draws the crop next

    @property
    def flat_indices(self) -> list[int]:
        """Every segment's indices, concatenated (duplicates kept: DALI decodes them in this order)."""
        return [i for seg in self.segments for i in seg]


def make_views(
    frames: torch.Tensor,
    *,
    mode: Mode,
    num_segments: int,
    seq_length: int,
    test_crops: int = 1,
    rng: np.random.Generator | None = None,
    crop_size: int = transforms.CROP_SIZE,
    scale_size: int = transforms.SCALE_SIZE,
) -> torch.Tensor:
    """Decoded frames [S*T, H, W, 3] uint8 -> views [V, C, T, h, w] uint8 by the official transforms.

    Train: one multi-scale crop and flip drawn for the whole video (all segments);
    val: short side 256, centre 224; test: every crop of every segment, segment-major.
    """
    clip = transforms.to_clip(frames)  # [C, S*T, H, W]
    segments = [clip[:, s * seq_length : (s + 1) * seq_length] for s in range(num_segments)]
    if mode == "train":
        if rng is None:
            raise ValueError("mode 'train' draws a random crop: pass rng")
        params = transforms.sample_train_crop(clip.shape[-2], clip.shape[-1], rng=rng, out_size=crop_size)
        return torch.stack([transforms.train_transform(seg, params) for seg in segments])
    if mode == "val":
        return torch.stack(
            [transforms.val_transform(seg, scale_size=scale_size, crop_size=crop_size) for seg in segments]
        )
    return torch.cat([
        transforms.test_transform(seg, test_crops=test_crops, crop_size=crop_size, scale_size=scale_size)
        for seg in segments
    ])


class DaliVideoLoader:
    """Batches of `(clips uint8 [B, V, C, T, H, W], labels int64 [B])` decoded by one DALI pipeline.

    Same sampler, index rule, per-video seeding (seed, epoch, index), crops and views as
    `build_loader`, so for the same arguments it yields the same videos in the same order
    with the same clips (pixels within decoder tolerance). A video that cannot be decoded
    is replaced by the same deterministic stand-in the dataset picks, logged once and
    counted; past the limit the run stops. On CPU, H.264/HEVC raise DaliCodecError at once.
    """

    def __init__(
        self,
        records: Sequence[ListRecord],
        *,
        list_file: str = "<list>",
        root_path: str = "",
        mode: Mode,
        batch_size: int,
        num_segments: int = 1,
        seq_length: int = 8,
        sample_rate: int = 8,
        test_segments: int = 10,
        test_crops: int = 1,
        crop_size: int = transforms.CROP_SIZE,
        scale_size: int = transforms.SCALE_SIZE,
        verify_frame_num: bool = True,
        shard_id: int = 0,
        num_shards: int = 1,
        shuffle: bool | None = None,
        seed: int = 0,
        drop_last: bool | None = None,
        subset: Sequence[int] | None = None,
        max_bad_fraction: float = 0.01,
        min_bad_samples: int = MIN_BAD_SAMPLES,
        max_replacements: int = MAX_REPLACEMENTS,
        device: Device = "auto",
        device_id: int | None = None,
        num_threads: int = 2,
    ) -> None:
        check_view_options(mode=mode, test_crops=test_crops, crop_size=crop_size, scale_size=scale_size)
        if batch_size < 1:
            raise ValueError(f"batch_size ({batch_size}) must be >= 1")
        if not records:
            raise ValueError("records is empty: the list has no videos")
        self.records = list(records)
        self.list_file = list_file
        self.root_path = root_path
        self.mode: Mode = mode
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.sample_rate = sample_rate
        self.num_segments = test_segments if mode == "test" else num_segments
        self.test_crops = test_crops
        self.crop_size, self.scale_size = crop_size, scale_size
        self.verify_frame_num = verify_frame_num
        self.seed = seed
        self.drop_last = (mode == "train") if drop_last is None else drop_last
        self.subset = list(subset) if subset is not None else None
        size = len(self.subset) if self.subset is not None else len(self.records)
        self.sampler = shard_sampler(
            size, shard_id=shard_id, num_shards=num_shards,
            shuffle=(mode == "train") if shuffle is None else shuffle, seed=seed,
        )
        self.shard_id, self.num_shards = shard_id, num_shards
        self.remainder_indices = [
            (self.subset[i] if self.subset is not None else i)
            for i in remainder_positions(size, num_shards=num_shards)
        ] if not self.sampler.shuffle else []
        self.max_bad_fraction = max_bad_fraction
        self.bad_limit = bad_sample_limit(
            len(self.records), max_bad_fraction=max_bad_fraction, min_bad_samples=min_bad_samples
        )
        self.max_replacements = max_replacements
        self.bad_samples: dict[int, str] = {}  # list entry -> first reason
        self.device = resolve_device(device)
        self.device_id = device_id
        self.num_threads = num_threads
        self.epoch = 0
        self._pipe = None

    # ------------------------------------------------------------------ epoch and size

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: the shuffle and every video's random clip depend on it."""
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def order(self) -> list[int]:
        """List entries this shard visits this epoch, in order."""
        positions = list(self.sampler)
        return [self.subset[i] for i in positions] if self.subset is not None else positions

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def views_per_video(self) -> int:
        """V: segments in train/val, test_segments x crops per segment in test."""
        return self.num_segments * (self.test_crops if self.mode == "test" else 1)

    def __repr__(self) -> str:
        return (
            f"DaliVideoLoader({self.list_file!r}, mode={self.mode!r}, device={self.device!r}, "
            f"batches={len(self)}, shard={self.shard_id}/{self.num_shards}, views={self.views_per_video})"
        )

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order()
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, len(order)), self.batch_size):
            plans = [self._plan(i) for i in order[start : start + self.batch_size]]
            plans, frames = self._decode_batch(plans)
            views = [self._views(plan, f) for plan, f in zip(plans, frames, strict=True)]
            labels = torch.tensor([p.label for p in plans], dtype=torch.int64)
            yield torch.stack(views), labels

    def _views(self, plan: SamplePlan, frames: torch.Tensor) -> torch.Tensor:
        return make_views(
            frames, mode=self.mode, num_segments=self.num_segments, seq_length=self.seq_length,
            test_crops=self.test_crops, rng=plan.rng, crop_size=self.crop_size, scale_size=self.scale_size,
        )

    # ------------------------------------------------------------------ bad samples

    def _plan(self, index: int, *, first_attempt: int = 0) -> SamplePlan:
        """The plan of entry `index`, or of its deterministic stand-in when it is bad."""
        current = index
        for attempt in range(first_attempt, self.max_replacements + 1):
            try:
                return self._plan_one(current)
            except DaliCodecError:
                raise  # a setup problem: every video of this codec would fail
            except DecodeError as exc:
                self._record_bad(current, exc)
                current = self._replacement(index, attempt=attempt)
        raise BadSampleError(
            os.path.join(self.root_path, self.records[index].path),
            f"this video and {self.max_replacements} replacements all failed",
        )

    def _replacement(self, index: int, *, attempt: int) -> int:
        """The stand-in `pipelines.dataset.VideoClipDataset` picks: same seed, epoch, index, attempt."""
        return replacement_index(index, size=len(self.records), seed=self.seed, epoch=self.epoch, attempt=attempt)

    def _plan_one(self, index: int) -> SamplePlan:
        record = self.records[index]
        path = os.path.join(self.root_path, record.path)
        try:
            with open(path, "rb") as handle:
                encoded = handle.read()
        except OSError as exc:
            raise DecodeError(path, f"cannot read: {exc.strerror}") from None
        summary = stream_summary(encoded, name=path)
        check_codec(path, summary.codec, device=self.device)
        if self.verify_frame_num and summary.frames < record.frame_num:
            raise FrameIndexError(
                path, f"frame_num {record.frame_num} in the list is wrong: the video has only {summary.frames} frames"
            )
        rng = sample_rng(seed=self.seed, epoch=self.epoch, index=index) if self.mode == "train" else None
        segments = clip_indices(
            record.frame_num, num_segments=self.num_segments, seq_length=self.seq_length,
            sample_rate=self.sample_rate, mode=self.mode, rng=rng,
        )
        last = max(max(seg) for seg in segments)
        if last >= summary.frames:
            raise past_end_error(path, last, summary.frames)
        return SamplePlan(index, path, record.label, tuple(tuple(s) for s in segments), encoded, rng)

    def _record_bad(self, index: int, exc: DecodeError) -> None:
        if index not in self.bad_samples:
            self.bad_samples[index] = exc.reason
            log.warning("bad video replaced by another: %s", exc)
        if len(self.bad_samples) > self.bad_limit:
            raise too_many_bad_samples(
                self.list_file, bad=len(self.bad_samples), num_videos=len(self.records),
                limit=self.bad_limit, max_bad_fraction=self.max_bad_fraction,
                examples=[f"{self.records[i].path}: {reason}" for i, reason in self.bad_samples.items()],
            )

    # ------------------------------------------------------------------ DALI

    def _pipeline(self):
        if self._pipe is None:
            self._pipe = build_decode_pipeline(
                batch_size=self.batch_size, device=self.device, device_id=self.device_id,
                num_threads=self.num_threads,
            )
        return self._pipe

    def _decode_batch(self, plans: list[SamplePlan]) -> tuple[list[SamplePlan], list[torch.Tensor]]:
        """Decode every plan's frames; a batch DALI fails on is retried video by video.

        Returns the plans actually decoded (a video DALI fails on is replaced) and their frames.
        """
        try:
            return plans, run_decode(self._pipeline(), plans, device=self.device)
        except RuntimeError as exc:  # DALI invalidates the pipeline after an operator error
            log.warning("DALI failed on a batch (%s); retrying its videos one by one", str(exc).splitlines()[0])
            self._pipe = None
        done, out = [], []
        for plan in plans:
            attempt = 0
            while True:
                try:
                    out.append(run_decode(self._pipeline(), [plan], device=self.device)[0])
                    done.append(plan)
                    break
                except RuntimeError as exc:
                    self._pipe = None
                    reason = next((ln for ln in str(exc).splitlines() if "Assert" in ln or "rror" in ln), "error")
                    self._record_bad(plan.index, DecodeError(plan.path, f"DALI cannot decode it: {reason.strip()}"))
                    attempt += 1
                    if attempt > self.max_replacements:
                        raise BadSampleError(plan.path, "this video and its replacements all failed in DALI") from None
                    plan = self._plan(self._replacement(plan.index, attempt=attempt - 1))
        return done, out


def build_decode_pipeline(*, batch_size: int, device: Literal["cpu", "gpu"], device_id: int | None, num_threads: int):
    """A DALI pipeline: inputs "encoded" (uint8 bytes) and "frames" (int32 indices) -> frames [F, H, W, 3]."""
    from nvidia.dali import fn, pipeline_def, types

    # Synchronous (no prefetch): each run decodes exactly the batch fed just before it.
    @pipeline_def(exec_pipelined=False, exec_async=False, prefetch_queue_depth=1)
    def decode():
        encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1)
        return fn.decoders.video(encoded, frames=frames, device="mixed" if device == "gpu" else "cpu")

    if device == "gpu" and device_id is None:
        device_id = torch.cuda.current_device()
    pipe = decode(batch_size=batch_size, num_threads=num_threads, device_id=device_id if device == "gpu" else None)
    pipe.build()
    return pipe


def run_decode(pipe, plans: Sequence[SamplePlan], *, device: Literal["cpu", "gpu"]) -> list[torch.Tensor]:
    """Feed the plans, run once, and copy each video's frames into a torch uint8 [F, H, W, 3] tensor."""
    from nvidia.dali.plugin.pytorch import feed_ndarray

    pipe.feed_input("encoded", [np.frombuffer(p.encoded, dtype=np.uint8) for p in plans])
    pipe.feed_input("frames", [np.asarray(p.flat_indices, dtype=np.int32) for p in plans])
    (decoded,) = pipe.run()
    torch_device = torch.device("cuda", torch.cuda.current_device()) if device == "gpu" else torch.device("cpu")
    stream = torch.cuda.current_stream() if device == "gpu" else None
    out = []
    for i, plan in enumerate(plans):
        sample = decoded[i]
        shape = tuple(sample.shape())
        if shape[0] != len(plan.flat_indices):
            raise FrameIndexError(plan.path, f"DALI returned {shape[0]} frames, expected {len(plan.flat_indices)}")
        out.append(feed_ndarray(sample, torch.empty(shape, dtype=torch.uint8, device=torch_device), cuda_stream=stream))
    return out


def build_dali_loader(
    list_file: str | os.PathLike[str],
    *,
    root_path: str | os.PathLike[str] = "",
    mode: Mode,
    batch_size: int,
    num_segments: int = 1,
    seq_length: int = 8,
    sample_rate: int = 8,
    test_segments: int = 10,
    test_crops: int = 1,
    num_classes: int | None = 400,
    distributed: bool = False,
    num_replicas: int | None = None,
    rank: int | None = None,
    seed: int = 0,
    shuffle: bool | None = None,
    drop_last: bool | None = None,
    subset: Sequence[int] | None = None,
    max_bad_fraction: float = 0.01,
    min_bad_samples: int = MIN_BAD_SAMPLES,
    check_files: bool = True,
    crop_size: int = transforms.CROP_SIZE,
    scale_size: int = transforms.SCALE_SIZE,
    verify_frame_num: bool = True,
    device: Device = "auto",
    device_id: int | None = None,
    num_threads: int = 2,
) -> DaliVideoLoader:
    """`build_loader(backend="dali")`: the same arguments, batches decoded by DALI.

    With `distributed`, the shard is this process's rank of the world (arguments, else
    torch.distributed, else torchrun's environment), as for the other backends. DALI's
    own threads (`num_threads`) replace DataLoader workers.
    """
    if not dali_available():
        raise VideoprepError("backend 'dali' needs NVIDIA DALI: pip install 'videoprep[dali]' (nvidia-dali-cuda130)")
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ValueError(f"max_bad_fraction ({max_bad_fraction}) must be in 0..1")
    root = os.fspath(root_path)
    records = read_list(list_file, num_classes=num_classes, root=root, check_files=check_files)
    replicas, shard = _world(num_replicas, rank) if distributed else (1, 0)
    return DaliVideoLoader(
        records, list_file=os.fspath(list_file), root_path=root, mode=mode, batch_size=batch_size,
        num_segments=num_segments, seq_length=seq_length, sample_rate=sample_rate,
        test_segments=test_segments, test_crops=test_crops, crop_size=crop_size, scale_size=scale_size,
        verify_frame_num=verify_frame_num, shard_id=shard, num_shards=replicas,
        shuffle=shuffle, seed=seed, drop_last=drop_last, subset=subset,
        max_bad_fraction=max_bad_fraction, min_bad_samples=min_bad_samples, device=device,
        device_id=device_id, num_threads=num_threads,
    )
