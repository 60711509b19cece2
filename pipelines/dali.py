"""The DALI loader: NVIDIA DALI decodes the frames our planning layer chose; our transforms make the views.

The loader shares everything but decoding with the torch loader (`pipelines.planning`): the
sampler, the per-entry clip plans (seed, epoch, index), the stand-in for a bad video and the
bad-sample accounting, and `make_views`. A pipelined external source feeds each batch's
encoded bytes and frame indices to `fn.decoders.video` (NVDEC with `device="mixed"` on a GPU,
libavcodec on CPU); with DALI's prefetch queue, batch k+1 decodes while batch k is consumed.
Frame sizes vary between videos, so batches are assembled here rather than by DALI's PyTorch
iterator (which needs one shape per batch). `close()` (or leaving a `with` block) releases
the pipeline; each pass over the loader opens one and releases it when done.

DALI 2.4 on CPU decodes VP8, VP9 and MJPEG only; H.264/HEVC/AV1/MPEG-4 need the GPU.
Batches come out as `(clips uint8 [B*K, V, C, T, H, W], labels int64 [B*K])`, like
`pipelines.loader.build_loader`; on a GPU the clips are already CUDA tensors.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from pipelines.backends import DecodeError, FrameIndexError
from pipelines.decode import stream_summary
from pipelines.planning import BadSampleLog, ClipPlan, ClipPlanner, build_sampler, make_views
from pipelines.spec import ClipSpec, LoaderConfig
from videoprep.decode import past_end_error
from videoprep.errors import VideoprepError
from videoprep.records import ListRecord, read_list

log = logging.getLogger(__name__)

DaliDevice = Literal["cpu", "gpu"]
# What fn.decoders.video decodes in DALI 2.4, by FFmpeg codec name.
DALI_CPU_CODECS: frozenset[str] = frozenset({"vp8", "vp9", "mjpeg"})
DALI_GPU_CODECS: frozenset[str] = DALI_CPU_CODECS | {"h264", "hevc", "av1", "mpeg4"}
# Batches DALI decodes ahead of the one being consumed.
PREFETCH_DEPTH = 2


class DaliCodecError(DecodeError):
    """A video whose codec DALI cannot decode on the chosen device (a setup problem, not a bad sample)."""

    replaceable = False  # every video of this codec would fail: stop at once


def check_codec(path: str, codec: str, *, device: DaliDevice) -> None:
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
    raise DaliCodecError(path, f"codec {codec} is not decoded by DALI (supported here: {', '.join(sorted(allowed))})")


@dataclass(frozen=True)
class DaliSample:
    """One entry of a batch, planned and read: its clip plan and its encoded bytes."""

    plan: ClipPlan
    encoded: bytes


class DaliVideoLoader:
    """Batches of `(clips uint8 [B*K, V, C, T, H, W], labels int64 [B*K])` decoded by a prefetching DALI pipeline.

    Same sampler, clip plans, crops, views and stand-ins as `build_loader`'s torch loader, so
    for the same ClipSpec and LoaderConfig it yields the same videos in the same order with the
    same clips (pixels within decoder tolerance). On CPU, H.264/HEVC raise DaliCodecError at once.
    """

    def __init__(self, list_file: str, records: Sequence[ListRecord], clip: ClipSpec, config: LoaderConfig, *,
                 subset: Sequence[int] | None = None, device: DaliDevice = "cpu", device_id: int | None = None,
                 num_threads: int = 2) -> None:
        if not records:
            raise ValueError("records is empty: the list has no videos")
        self.list_file = list_file
        self.clip, self.config = clip, config
        self.planner = ClipPlanner(records, clip=clip, config=config)
        self.sampler, self.remainder_indices = build_sampler(len(records), clip, config, subset=subset)
        self.bad_log = BadSampleLog(list_file, num_videos=len(records), config=config)
        self.device, self.device_id, self.num_threads = device, device_id, num_threads
        self._pipe: Any = None
        self._fed: deque[list[DaliSample]] = deque()

    # ------------------------------------------------------------------ epoch, size, accounting

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: the shuffle and every video's random clips depend on it."""
        self.sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def order(self) -> list[int]:
        """List entries this shard visits this epoch, in order."""
        return [index for index, _ in self.sampler]

    def __len__(self) -> int:
        n, size = len(self.sampler), self.config.batch_size
        return n // size if self.config.drops_last(self.clip.mode) else math.ceil(n / size)

    @property
    def views_per_video(self) -> int:
        return self.clip.views

    @property
    def bad_samples(self) -> dict:
        """Bad list entries met so far (first failure of each), by entry."""
        return self.bad_log.samples

    @property
    def bad_events(self) -> int:
        return self.bad_log.events

    def __repr__(self) -> str:
        return (f"DaliVideoLoader({self.list_file!r}, mode={self.clip.mode!r}, device={self.device!r}, "
                f"batches={len(self)}, shard={self.sampler.base.rank}/{self.sampler.base.num_replicas}, "
                f"views={self.clip.views})")

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Release the DALI pipeline (its threads and buffers); the next pass opens a new one."""
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe._shutdown()  # what DALI's own __del__ runs; DALI 2.4 has no public close

    @property
    def is_open(self) -> bool:
        """Whether a DALI pipeline is held (during a pass; released at its end and by close())."""
        return self._pipe is not None

    @property
    def in_flight(self) -> int:
        """Batches handed to DALI and not yet yielded: with prefetch, the next batch decodes while one is consumed."""
        return len(self._fed)

    def __enter__(self) -> DaliVideoLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ iteration

    def _entry_batches(self) -> Iterator[list[int]]:
        order, size = self.order(), self.config.batch_size
        stop = len(self) * size
        for start in range(0, min(stop, len(order)), size):
            yield order[start : start + size]

    def _read(self, index: int, *, epoch: int) -> DaliSample:
        """Plan entry `index` and read its bytes; raises DecodeError for a video DALI must not be fed."""
        plan = self.planner.plan(index, epoch=epoch)
        try:
            with open(plan.path, "rb") as handle:
                encoded = handle.read()
        except OSError as exc:
            raise DecodeError(plan.path, f"cannot read: {exc.strerror}") from None
        summary = stream_summary(encoded, name=plan.path)
        check_codec(plan.path, summary.codec, device=self.device)
        if self.config.verify_frame_num and summary.frames < self.planner.records[index].frame_num:
            raise FrameIndexError(plan.path, f"the video has only {summary.frames} frames")
        last = max(plan.flat_indices)
        if last >= summary.frames:
            raise past_end_error(plan.path, last, summary.frames)
        return DaliSample(plan, encoded)

    def _read_batch(self, entries: Sequence[int], *, epoch: int) -> list[DaliSample]:
        """Each entry read, or its deterministic stand-in; bad entries go to the accounting."""
        out = []
        for index in entries:
            sample, bad = self.planner.first_good(index, epoch=epoch, attempt=lambda i: self._read(i, epoch=epoch))
            self.bad_log.record(bad)
            out.append(sample)
        return out

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        pending = (self._read_batch(entries, epoch=epoch) for entries in self._entry_batches())
        try:
            while True:
                fed = self._fed = deque()
                self.close()
                self._pipe = build_decode_pipeline(
                    _Feeder(pending, fed), batch_size=self.config.batch_size, device=self.device,
                    device_id=self.device_id, num_threads=self.num_threads, prefetch=PREFETCH_DEPTH,
                )
                failed = yield from self._drain(fed)
                if failed is None:
                    return
                # DALI stops a pipeline at an operator error, losing what it prefetched: decode the
                # failed batch video by video (replacing what DALI cannot decode), then go on.
                yield self._assemble(*self._decode_singly(failed, epoch=epoch))
                pending = itertools.chain(list(fed), pending)
        finally:
            self.close()

    def _drain(self, fed: deque[list[DaliSample]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield every batch the pipeline decodes; return the batch it failed on, or None at the end."""
        while True:
            if self._pipe is None:
                raise VideoprepError(f"{self.list_file}: the DALI loader was closed during a pass; start a new one")
            try:
                (decoded,) = self._pipe.run()
            except StopIteration:
                return None
            except RuntimeError as exc:
                log.warning("DALI failed on a batch (%s); retrying its videos one by one", _first_line(exc))
                return fed.popleft()
            samples = fed.popleft()
            yield self._assemble(samples, to_torch(decoded, samples, device=self.device))

    def _assemble(self, samples: Sequence[DaliSample], frames: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        views = torch.cat([make_views(f, self.clip, s.plan.rng) for s, f in zip(samples, frames, strict=True)])
        labels = torch.tensor([s.plan.label for s in samples for _ in range(self.clip.num_clips)], dtype=torch.int64)
        return views, labels

    def _decode_singly(self, samples: Sequence[DaliSample], *, epoch: int) -> tuple[list[DaliSample], list[torch.Tensor]]:
        """Decode each sample alone with a synchronous pipeline; a video DALI fails on is replaced."""
        done, frames = [], []
        single = _SingleDecoder(device=self.device, device_id=self.device_id, num_threads=self.num_threads)
        try:
            for sample in samples:
                def attempt(i: int, first: DaliSample = sample) -> tuple[DaliSample, torch.Tensor]:
                    current = first if i == first.plan.index else self._read(i, epoch=epoch)
                    return current, single.decode(current)

                (good, out), bad = self.planner.first_good(sample.plan.index, epoch=epoch, attempt=attempt)
                self.bad_log.record(bad)
                done.append(good)
                frames.append(out)
        finally:
            single.close()
        return done, frames


class _SingleDecoder:
    """A synchronous one-video DALI pipeline, rebuilt after DALI fails on a video (which invalidates it)."""

    def __init__(self, *, device: DaliDevice, device_id: int | None, num_threads: int) -> None:
        self.device, self.device_id, self.num_threads = device, device_id, num_threads
        self.pipe: Any = None

    def decode(self, sample: DaliSample) -> torch.Tensor:
        """The sample's frames; DecodeError (a bad sample) when DALI cannot decode it."""
        if self.pipe is None:
            self.pipe = build_decode_pipeline(None, batch_size=1, device=self.device, device_id=self.device_id,
                                              num_threads=self.num_threads, prefetch=1)
        try:
            return run_decode(self.pipe, [sample], device=self.device)[0]
        except RuntimeError as exc:
            self.close()
            raise DecodeError(sample.plan.path, f"DALI cannot decode it: {_first_line(exc)}") from None

    def close(self) -> None:
        """Release the pipeline."""
        pipe, self.pipe = self.pipe, None
        if pipe is not None:
            pipe._shutdown()


class _Feeder:
    """DALI's external source for one pipeline: the next planned batch, remembered in `fed` until decoded."""

    def __init__(self, pending: Iterator[list[DaliSample]], fed: deque[list[DaliSample]]) -> None:
        self.pending, self.fed = pending, fed

    def __call__(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        samples = next(self.pending)  # StopIteration ends the pass
        self.fed.append(samples)
        return _inputs(samples)


def _inputs(samples: Iterable[DaliSample]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    samples = list(samples)
    return ([np.frombuffer(s.encoded, dtype=np.uint8) for s in samples],
            [np.asarray(s.plan.flat_indices, dtype=np.int32) for s in samples])


def _first_line(exc: BaseException) -> str:
    """The telling line of a DALI error (its failed assertion, else the operator error)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for key in ("Assert", "Error in", "rror"):
        hit = next((ln for ln in lines if key in ln), None)
        if hit is not None:
            return hit
    return lines[0] if lines else type(exc).__name__


def build_decode_pipeline(source: Any, *, batch_size: int, device: DaliDevice, device_id: int | None,
                          num_threads: int, prefetch: int):
    """A DALI pipeline decoding (encoded bytes, int32 frame indices) -> frames [F, H, W, 3].

    With a `source` (a callable returning one batch of both inputs; StopIteration at the end) the
    pipeline runs asynchronously, `prefetch` batches ahead; without one, inputs are fed with
    `run_decode` and each run decodes exactly the batch fed just before it.
    """
    from nvidia.dali import fn, pipeline_def, types

    ahead = source is not None

    @pipeline_def(exec_pipelined=ahead, exec_async=ahead, prefetch_queue_depth=prefetch if ahead else 1)
    def decode():
        if ahead:
            encoded, frames = fn.external_source(source=source, num_outputs=2, dtype=[types.UINT8, types.INT32],
                                                 ndim=[1, 1], batch=True)
        else:
            encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
            frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1)
        return fn.decoders.video(encoded, frames=frames, device="mixed" if device == "gpu" else "cpu")

    if device == "gpu" and device_id is None:
        device_id = torch.cuda.current_device()
    pipe = decode(batch_size=batch_size, num_threads=num_threads, device_id=device_id if device == "gpu" else None)
    pipe.build()
    return pipe


def run_decode(pipe, samples: Sequence[DaliSample], *, device: DaliDevice) -> list[torch.Tensor]:
    """Feed the samples to a synchronous pipeline, run once, and return each one's frames (torch uint8)."""
    encoded, frames = _inputs(samples)
    pipe.feed_input("encoded", encoded)
    pipe.feed_input("frames", frames)
    (decoded,) = pipe.run()
    return to_torch(decoded, samples, device=device)


def to_torch(decoded, samples: Sequence[DaliSample], *, device: DaliDevice) -> list[torch.Tensor]:
    """Copy each sample's decoded frames out of DALI's buffers into torch uint8 [F, H, W, 3] tensors."""
    from nvidia.dali.plugin.pytorch import feed_ndarray

    torch_device = torch.device("cuda", torch.cuda.current_device()) if device == "gpu" else torch.device("cpu")
    stream = torch.cuda.current_stream() if device == "gpu" else None
    out = []
    for i, sample in enumerate(samples):
        tensor = decoded[i]
        shape = tuple(tensor.shape())
        wanted = len(sample.plan.flat_indices)
        if shape[0] != wanted:
            raise FrameIndexError(sample.plan.path, f"DALI returned {shape[0]} frames, expected {wanted}")
        out.append(feed_ndarray(tensor, torch.empty(shape, dtype=torch.uint8, device=torch_device), cuda_stream=stream))
    return out


def dali_device(config: LoaderConfig) -> tuple[DaliDevice, int | None]:
    """DALI's device and GPU id for the config's decode device (auto: the GPU when there is one)."""
    from pipelines.backends import decode_device

    device = decode_device("dali", config.device)
    if device == "cpu":
        return "cpu", None
    _, _, index = device.partition(":")
    return "gpu", int(index) if index else None


def build_dali_loader(list_file: str | os.PathLike[str], clip: ClipSpec, config: LoaderConfig, *,
                      subset: Sequence[int] | None = None) -> DaliVideoLoader:
    """`build_loader` with backend "dali": the same ClipSpec and LoaderConfig, batches decoded by DALI.

    DALI's own threads (backend option `num_threads`, default 2) replace DataLoader workers.
    """
    device, device_id = dali_device(config)
    records = read_list(list_file, num_classes=config.num_classes, root=config.root_path,
                        check_files=config.check_files)
    return DaliVideoLoader(os.fspath(list_file), records, clip, config, subset=subset, device=device,
                           device_id=device_id, **config.backend_options)
