"""Loader throughput benchmark: clips/s of every backend, side by side, against the decode limit.

For each file set (one encoding of the same videos) and each view (train: random
starts; val: centred clip; test: `test_segments` clips per video) it measures, on
the same clips and interleaved round-robin per repetition (the machine is noisy):

- `reader`: our per-sample readers (`pipelines.backends`), single process;
- `loader`: the real DataLoader path (`pipelines.loader.build_loader`), per worker count;
- `dali`: the DALI loader (`pipelines.dali`) where DALI decodes the codec on this machine;
- `peer`: decord / torchcodec as reference points only (skipped with a note when absent);
- `reference`: the official BAT usage of Lintel (decode from frame 0, no seek);
- `limit`: the decode limit, see `DecodeLimit`.

A clip is `seq_length` frames; a test sample holds `test_segments` clips, so
clips/s counts clips in every view and frames/s = clips/s * seq_length.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from pipelines.lintel import h264_nonref_packets
from pipelines.sampling import clip_indices
from pipelines.spec import ClipSpec, LoaderConfig
from videoprep.atomic import atomic_path, atomic_write_json, atomic_write_text
from videoprep.benchsample import DEFAULT_ENCODINGS, EncodedSet, SampleConfig, describe_list, make_sample
from videoprep.errors import VideoprepError
from videoprep.progress import ProgressFn, no_progress
from videoprep.records import ListRecord, read_list, write_list

log = logging.getLogger(__name__)

View = Literal["train", "val", "test"]
VIEWS: tuple[str, ...] = ("train", "val", "test")
BACKENDS: tuple[str, ...] = ("pyav", "lintel", "frames", "dali")
PEERS: tuple[str, ...] = ("decord", "torchcodec")
Kind = Literal["reader", "loader", "dali", "peer", "reference", "limit"]

# Load average (1 min) per core above which the machine counts as busy with other work.
_NOISY_LOAD_PER_CPU = 0.25


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how long; `list_file` measures a list as is, `generate` builds a sample first."""

    out_dir: Path
    list_file: Path | None = None
    root_path: str = ""
    generate: bool = False
    sample_source: str | None = None  # --generate from these videos (a BAT list or a folder); None: synthetic
    sample_videos: int = 4
    sample_seconds: float = 10.0
    sample_size: tuple[int, int] = (340, 256)  # generated footage, width x height
    encodings: tuple[str, ...] = DEFAULT_ENCODINGS
    backends: tuple[str, ...] = BACKENDS
    peers: bool = True
    workers: tuple[int, ...] = (0, 1, 2)
    clips: int = 32  # clips per measurement (per view, file set and backend)
    repeats: int = 3
    warmup_clips: int = 2
    views: tuple[str, ...] = VIEWS
    loader_views: tuple[str, ...] | None = None  # views measured through the DataLoader (None: all views)
    loader_encodings: tuple[str, ...] | None = None  # file sets with a DataLoader sweep (None: all)
    reference_views: tuple[str, ...] | None = None  # views with peers and official Lintel usage (None: all)
    seq_length: int = 8
    sample_rate: int = 8
    test_segments: int = 10
    batch_size: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("clips", "repeats", "seq_length", "sample_rate", "test_segments", "batch_size"):
            if getattr(self, name) < 1:
                raise VideoprepError(f"{name} ({getattr(self, name)}) must be >= 1")
        bad = [v for v in (*self.views, *(self.loader_views or ()), *(self.reference_views or ())) if v not in VIEWS]
        if bad:
            raise VideoprepError(f"view(s) {', '.join(bad)} unknown: valid are {', '.join(VIEWS)}")
        bad = [b for b in self.backends if b not in BACKENDS]
        if bad:
            raise VideoprepError(f"backend(s) {', '.join(bad)} unknown: valid are {', '.join(BACKENDS)}")
        if any(w < 0 for w in self.workers) or not self.workers:
            raise VideoprepError(f"workers ({self.workers}) must be one or more counts >= 0")
        if self.list_file is None and not self.generate:
            raise VideoprepError("nothing to measure: give a list file or ask to generate a sample")


@dataclass(frozen=True)
class Sample:
    """One dataset item: a video (file or frame folder) and every frame index its views need."""

    path: str
    indices: tuple[int, ...]
    clips: int


@dataclass
class Measure:
    """One measured thing: run(samples) -> (clips delivered, seconds timed), repeated and interleaved."""

    encoding: str
    view: str
    kind: Kind
    backend: str
    run: Callable[[Sequence[Sample]], tuple[int, float]]
    workers: int | None = None
    note: str = ""
    runs: list[float] = field(default_factory=list)  # clips/s per repetition
    status: str = "ok"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Short name used in the table and the plot."""
        w = "" if self.workers is None else f" w{self.workers}"
        return f"{self.kind}:{self.backend}{w}"


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median with min/max and quartiles of repeated measurements (all rounded for the report)."""
    if not values:
        return {"median": None, "min": None, "max": None, "q1": None, "q3": None, "runs": []}
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
    return {
        "median": round(statistics.median(ordered), 3), "min": round(ordered[0], 3), "max": round(ordered[-1], 3),
        "q1": round(q[0], 3), "q3": round(q[2], 3), "runs": [round(v, 3) for v in values],
    }


# --------------------------------------------------------------------------------------
# Which clips: the same samples for every backend of a view (and every encoding of the sample).
# --------------------------------------------------------------------------------------


def view_segments(view: str, *, test_segments: int) -> int:
    """Clips per sample in a view: 1 in train/val (BAT default num_segments), test_segments in test."""
    return test_segments if view == "test" else 1


def plan_samples(
    records: Sequence[ListRecord], *, root_path: str, view: str, clips: int, seq_length: int,
    sample_rate: int, test_segments: int, seed: int,
) -> list[Sample]:
    """Enough samples for `clips` clips, cycling over the videos, indices by the official rules."""
    rng = np.random.default_rng(seed)
    segments = view_segments(view, test_segments=test_segments)
    out = []
    for i in range(math.ceil(clips / segments)):
        rec = records[i % len(records)]
        per_clip = clip_indices(
            rec.frame_num, num_segments=segments, seq_length=seq_length, sample_rate=sample_rate,
            mode=view, rng=rng,  # type: ignore[arg-type]
        )
        flat = tuple(i for clip in per_clip for i in clip)
        out.append(Sample(path=os.path.join(root_path, rec.path), indices=flat, clips=segments))
    return out


def _timed(fn: Callable[[Sample], object]) -> Callable[[Sequence[Sample]], tuple[int, float]]:
    """Time fn over every sample, one after another in this process."""

    def run(samples: Sequence[Sample]) -> tuple[int, float]:
        start = time.perf_counter()
        for s in samples:
            fn(s)
        return sum(s.clips for s in samples), time.perf_counter() - start

    return run


# --------------------------------------------------------------------------------------
# Single-process measures: readers, peers, the official Lintel usage.
# --------------------------------------------------------------------------------------


def _reader_run(backend: str) -> Callable[[Sequence[Sample]], tuple[int, float]]:
    from pipelines.backends import get_reader

    reader = get_reader(backend)
    return _timed(lambda s: reader.read(s.path, s.indices))


def _lintel_official_run() -> Callable[[Sequence[Sample]], tuple[int, float]]:
    """BAT's video mode: read the whole file, then Lintel decodes from frame 0 without seeking."""
    from pipelines.lintel import loadvid_frame_nums

    def one(s: Sample) -> None:
        with open(s.path, "rb") as f:
            encoded = f.read()
        loadvid_frame_nums(encoded, frame_nums=sorted(set(s.indices)), should_seek=False)

    return _timed(one)


def peer_status(name: str) -> tuple[bool, str]:
    """(usable, note) for a peer decoder: installed and importable, or why not."""
    if importlib.util.find_spec(name) is None:
        return False, f"{name} is not installed (reference point skipped)"
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # torchcodec raises RuntimeError/OSError when FFmpeg libraries are missing
        return False, f"{name} is installed but does not load: {type(exc).__name__}: {exc}"
    return True, f"{name} {getattr(module, '__version__', '?')}"


def _peer_run(name: str, *, approximate: bool = False) -> Callable[[Sequence[Sample]], tuple[int, float]]:
    """A peer decoder as its users call it: open the file per sample, fetch the indices in one call."""
    if name == "decord":
        import decord

        def one(s: Sample) -> None:
            decord.VideoReader(s.path, ctx=decord.cpu(0)).get_batch(list(s.indices)).asnumpy()

        return _timed(one)
    if name == "torchcodec":
        from torchcodec.decoders import VideoDecoder

        mode = "approximate" if approximate else "exact"

        def one_tc(s: Sample) -> None:
            VideoDecoder(s.path, seek_mode=mode).get_frames_at(indices=list(s.indices))

        return _timed(one_tc)
    raise ValueError(f"peer ({name!r}) must be one of: {', '.join(PEERS)}")


# --------------------------------------------------------------------------------------
# The decode limit.
# --------------------------------------------------------------------------------------


class DecodeLimit:
    """How fast PyAV's decoder alone delivers the frames a clip needs (the ceiling for any loader).

    Packets are demuxed (and JPEG files read) before timing; timed is only the
    decoder: for inter codecs from the keyframe at or before the first needed frame
    up to the last needed one, for intra-only codecs (MJPEG, JPEG folders) the
    needed frames alone. With `rgb` (the limit we compare against) the needed
    frames are also converted to RGB once each (one reused swscale context),
    since every loader must return RGB; without it the figure is the bare
    decoder (`decode_only`).
    """

    def __init__(self, *, frames_folder: bool, rgb: bool, skip_nonref: bool = False, collect: bool = False) -> None:
        self.frames_folder = frames_folder
        self.rgb = rgb
        self.skip_nonref = skip_nonref  # the stretch experiment: see h264_nonref_packets
        self.collect = collect  # keep the RGB frames (tests compare them with a full decode)
        self.collected: list[np.ndarray] = []
        self._files: dict[str, Any] = {}
        self._jpeg_ctx: Any = None
        # One reformatter for every frame: frame.to_ndarray(format=...) builds a new swscale
        # context per frame, which costs more than decoding it (1-2.5 ms vs 0.3 ms at 340x256).
        self._reformatter = VideoReformatter()
        self.decoded = 0
        self.delivered = 0

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """RGB24 array of a frame (the same pixels as frame.to_ndarray(format="rgb24"))."""
        # threads=1: an automatic swscale pool inherited across fork() hangs DataLoader workers.
        return self._reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()

    def _open(self, path: str) -> Any:
        """Per file, once: its decoder context and packets (decode order) with presentation order."""
        if path in self._files:
            return self._files[path]
        container = av.open(path)
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size and not p.is_discard]
        pts = [p.pts for p in packets]
        if any(t is None for t in pts) or len(set(pts)) != len(pts):
            raise VideoprepError(f"{path}: packets lack unique timestamps; the decode limit cannot be measured")
        order = sorted(pts)
        intra = bool(stream.codec_context.codec.intra_only)
        if intra:
            stream.thread_type = "NONE"
        ctx = stream.codec_context
        nonref = h264_nonref_packets(packets, ctx.extradata) if self.skip_nonref and ctx.name == "h264" else set()
        entry = {"container": container, "ctx": ctx, "packets": packets, "order": order, "intra": intra,
                 "nonref": nonref}
        self._files[path] = entry
        return entry

    def close(self) -> None:
        """Close every container opened for the measurement."""
        for entry in self._files.values():
            entry["container"].close()
        self._files.clear()

    def prepare(self, samples: Sequence[Sample]) -> None:
        """Demux (or read) everything the samples need, outside the timed part."""
        if self.frames_folder:
            return
        for s in samples:
            self._open(s.path)

    def _one_video(self, s: Sample) -> None:
        entry = self._open(s.path)
        ctx, packets, order = entry["ctx"], entry["packets"], entry["order"]
        nums = sorted(set(s.indices))
        needed = {order[i] for i in nums}
        ctx.flush_buffers()
        if entry["intra"]:
            by_pts = {p.pts: p for p in packets}
            for t in sorted(needed):
                for frame in ctx.decode(by_pts[t]):
                    self.decoded += 1
                    if self.rgb:
                        self._to_rgb(frame)
            self.delivered += len(needed)
            return
        first = order[nums[0]]
        start = max(i for i, p in enumerate(packets) if p.is_keyframe and p.pts <= first)
        remaining = set(needed)
        nonref = entry["nonref"]
        got: dict[int, np.ndarray] = {}
        for p in [*packets[start:], None]:
            if p is not None and p.pts in nonref and p.pts not in needed:
                continue  # no other frame refers to it and nobody asked for it
            for frame in ctx.decode(p):
                self.decoded += 1
                if frame.pts in remaining:
                    remaining.discard(frame.pts)
                    if self.rgb:
                        got[frame.pts] = self._to_rgb(frame)
            if not remaining:
                break
        if self.collect:
            self.collected.extend(got[order[i]] for i in nums)
        self.delivered += len(needed)

    def _one_folder(self, s: Sample, payloads: dict[str, list[bytes]]) -> None:
        if self._jpeg_ctx is None:  # one decoder for every file, as for a video's stream (opening one costs ms)
            self._jpeg_ctx = av.CodecContext.create("mjpeg", "r")
        ctx = self._jpeg_ctx
        for data in payloads[s.path + repr(s.indices)]:
            for frame in ctx.decode(av.Packet(data)):
                self.decoded += 1
                if self.rgb:
                    self._to_rgb(frame)
        self.delivered += len(set(s.indices))

    def run(self, samples: Sequence[Sample]) -> tuple[int, float]:
        """Time the decoder over the samples (demuxing and file reading happen before the clock starts)."""
        if self.frames_folder:
            payloads = {
                s.path + repr(s.indices): [
                    Path(s.path, f"img_{i:05d}.jpg").read_bytes() for i in sorted(set(s.indices))
                ]
                for s in samples
            }
            start = time.perf_counter()
            for s in samples:
                self._one_folder(s, payloads)
        else:
            self.prepare(samples)
            start = time.perf_counter()
            for s in samples:
                self._one_video(s)
        return sum(s.clips for s in samples), time.perf_counter() - start


class JpegLimit:
    """The decode limit of JPEG-coded frames (MJPEG packets, JPEG files) through libjpeg-turbo (PIL).

    PIL decodes straight to RGB (colour conversion fused in the decoder), which
    can beat libavcodec plus a separate RGB conversion; the decode limit of a
    JPEG-coded file set is the faster of the two. Payloads are read before timing.
    """

    def __init__(self, *, frames_folder: bool) -> None:
        self.frames_folder = frames_folder
        self._packets: dict[str, tuple[list[int], dict[int, bytes]]] = {}
        self.decoded = 0
        self.delivered = 0

    def _payloads(self, s: Sample) -> list[bytes]:
        nums = sorted(set(s.indices))
        if self.frames_folder:
            return [Path(s.path, f"img_{i:05d}.jpg").read_bytes() for i in nums]
        if s.path not in self._packets:
            with av.open(s.path) as container:
                stream = container.streams.video[0]
                data = {p.pts: bytes(p) for p in container.demux(stream) if p.size and not p.is_discard}
            self._packets[s.path] = (sorted(data), data)
        order, data = self._packets[s.path]
        return [data[order[i]] for i in nums]

    def close(self) -> None:
        """Drop the cached packets."""
        self._packets.clear()

    def run(self, samples: Sequence[Sample]) -> tuple[int, float]:
        """Time PIL decoding the needed frames to RGB arrays."""
        from PIL import Image

        payloads = [self._payloads(s) for s in samples]
        start = time.perf_counter()
        for frames in payloads:
            for data in frames:
                with Image.open(io.BytesIO(data)) as img:
                    np.asarray(img.convert("RGB"))
                self.decoded += 1
            self.delivered += len(frames)
        return sum(s.clips for s in samples), time.perf_counter() - start


# --------------------------------------------------------------------------------------
# The DataLoader path.
# --------------------------------------------------------------------------------------


def _repeat_list(records: Sequence[ListRecord], count: int, path: Path) -> Path:
    """A BAT list of `count` entries cycling over `records` (the loader then yields `count` samples)."""
    write_list(path, [records[i % len(records)] for i in range(count)])
    return path


def time_batches(batches: Iterator[Any], *, skip: int) -> tuple[int, float]:
    """(clips, seconds) over a loader's batches after the first `skip` (start-up and pipeline fill).

    With W workers the first W batches arrive together after start-up; timing from
    the W-th one to the last counts only steady-state production.
    """
    clips = 0
    start = None
    for n, (batch, _labels) in enumerate(batches, start=1):
        if n == skip:
            start = time.perf_counter()
        elif n > skip:
            clips += int(batch.shape[0]) * int(batch.shape[1])
    if start is None or clips == 0:
        raise VideoprepError(f"the loader yielded too few batches to time (need more than {skip})")
    return clips, time.perf_counter() - start


def _loader_run(
    fileset: EncodedSet, records: Sequence[ListRecord], *, view: str, backend: str, workers: int,
    config: BenchConfig, work_dir: Path,
) -> Callable[[Sequence[Sample]], tuple[int, float]]:
    """Clips/s through build_loader: a list of enough entries, batches timed after the pipeline fills."""
    from pipelines.loader import build_loader

    segments = view_segments(view, test_segments=config.test_segments)
    skip = max(1, workers)

    def run(samples: Sequence[Sample]) -> tuple[int, float]:
        wanted = sum(s.clips for s in samples)
        count = (skip + math.ceil(wanted / segments / config.batch_size)) * config.batch_size
        list_file = _repeat_list(records, count, work_dir / f"{fileset.name}-{view}-{count}.txt")
        loader = build_loader(str(list_file), _bench_clip(view, config), _bench_loader_config(
            fileset, records, config, backend=backend, workers=workers,
            persistent_workers=False,  # a fresh loader per measurement; no workers left behind
        ))
        return time_batches(iter(loader), skip=skip)

    return run


def _bench_clip(view: str, config: BenchConfig) -> ClipSpec:
    """The clip every loader measurement takes: one segment, one crop, the bench's length and rate."""
    return ClipSpec(mode=view, seq_length=config.seq_length, sample_rate=config.sample_rate,
                    test_segments=config.test_segments)


def _bench_loader_config(fileset: EncodedSet, records: Sequence[ListRecord], config: BenchConfig,
                         **changes: Any) -> LoaderConfig:
    """How loader measurements load: the file set's root, the bench's batch and seed, every batch kept."""
    return LoaderConfig(root_path=fileset.root_path, batch_size=config.batch_size, seed=config.seed,
                        num_classes=max(r.label for r in records) + 1, drop_last=False, **changes)


def dali_status(fileset: EncodedSet) -> tuple[bool, str]:
    """(usable, note): whether pipelines.dali can decode this file set on this machine."""
    if fileset.kind != "video":
        return False, "DALI reads video files, not frame folders"
    from pipelines.backends import backend_status

    (status,) = backend_status("dali")
    if not status.available:
        return False, status.note
    dali = importlib.import_module("pipelines.dali")
    device = "gpu" if "cuda" in status.devices else "cpu"
    try:
        for codec in fileset.codec.split("/"):
            dali.check_codec(fileset.list_file, codec, device=device)
    except VideoprepError as exc:
        return False, f"{device}: {exc.reason if hasattr(exc, 'reason') else exc}"
    return True, f"DALI on {device}"


def _dali_run(
    fileset: EncodedSet, records: Sequence[ListRecord], *, view: str, config: BenchConfig, work_dir: Path,
) -> Callable[[Sequence[Sample]], tuple[int, float]]:
    """Clips/s through the DALI loader (a whole pipeline, so one figure per view, no worker sweep)."""
    from pipelines.loader import build_loader

    segments = view_segments(view, test_segments=config.test_segments)

    def run(samples: Sequence[Sample]) -> tuple[int, float]:
        wanted = sum(s.clips for s in samples)
        count = (1 + math.ceil(wanted / segments / config.batch_size)) * config.batch_size
        list_file = _repeat_list(records, count, work_dir / f"{fileset.name}-{view}-{count}-dali.txt")
        with build_loader(str(list_file), _bench_clip(view, config),
                          _bench_loader_config(fileset, records, config, backend="dali")) as loader:
            return time_batches(iter(loader), skip=1)

    return run


# --------------------------------------------------------------------------------------
# The run.
# --------------------------------------------------------------------------------------


def machine_description() -> dict[str, Any]:
    """What the figures were measured on (cores, CPU model, versions) and whether others were busy."""
    cpu_model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str | None] = {"python": sys.version.split()[0], "av": av.__version__,
                                       "numpy": np.__version__}
    for name in ("torch", "decord", "torchcodec", "nvidia.dali"):
        try:
            versions[name] = importlib.import_module(name).__version__ if importlib.util.find_spec(name) else None
        except Exception as exc:  # an installed package that does not load is a fact worth recording
            versions[name] = f"unloadable: {type(exc).__name__}"
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    load = os.getloadavg()
    return {
        "cpu_count": cpus, "cpu_model": cpu_model, "platform": platform.platform(),
        "ffmpeg_libavcodec": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
        "versions": versions, "loadavg_start": [round(x, 2) for x in load],
        "noisy": load[0] > _NOISY_LOAD_PER_CPU * cpus,
    }


@dataclass
class BenchReport:
    """Every figure of a run; `as_dict()` is the JSON written to `bench.json`."""

    config: dict[str, Any]
    machine: dict[str, Any]
    encodings: dict[str, dict[str, Any]]
    measures: list[Measure]
    skipped: list[dict[str, str]]
    seconds: float = 0.0
    json_path: Path | None = None
    png_path: Path | None = None

    def limit_of(self, encoding: str, view: str, *, rgb: bool = True) -> Measure | None:
        """The decode-limit measure of a file set and view: the fastest RGB decoder (PyAV or, for JPEG, PIL)."""
        names = ("decode", "decode_pil") if rgb else ("decode_only",)
        found = [m for m in self.measures if m.kind == "limit" and m.encoding == encoding and m.view == view
                 and m.backend in names]
        with_runs = [m for m in found if m.runs]
        if with_runs:
            return max(with_runs, key=lambda m: statistics.median(m.runs))
        return found[0] if found else None

    def ratio(self, m: Measure) -> float | None:
        """Median clips/s over the decode limit's median (same file set and view)."""
        limit = self.limit_of(m.encoding, m.view)
        if limit is None or not limit.runs or not m.runs:
            return None
        return round(statistics.median(m.runs) / statistics.median(limit.runs), 3)

    def find(self, encoding: str, view: str, kind: str, backend: str, workers: int | None = None) -> Measure | None:
        """The measure with these coordinates, if it ran."""
        for m in self.measures:
            if (m.encoding, m.view, m.kind, m.backend, m.workers) == (encoding, view, kind, backend, workers):
                return m if m.runs else None
        return None

    def result_rows(self, seq_length: int) -> list[dict[str, Any]]:
        """One JSON row per measure."""
        rows = []
        for m in self.measures:
            clips = spread(m.runs)
            frames = {k: (None if v is None else round(v * seq_length, 1)) for k, v in clips.items() if k != "runs"}
            rows.append({
                "encoding": m.encoding, "view": m.view, "kind": m.kind, "backend": m.backend,
                "workers": m.workers, "status": m.status, "note": m.note, "clips_per_s": clips,
                "frames_per_s": frames, "ratio_to_decode_limit": self.ratio(m),
                "bytes_per_s": self.encodings.get(m.encoding, {}).get("bytes_per_s"), **m.extra,
            })
        return rows

    def goals(self) -> list[dict[str, Any]]:
        """The issue's performance goals, each with the figures that decide it (None when not measured)."""
        return evaluate_goals(self)

    def as_dict(self) -> dict[str, Any]:
        """The whole report as plain data."""
        seq = int(self.config["seq_length"])
        decode_limit: dict[str, dict[str, Any]] = {}
        for m in self.measures:
            if m.kind == "limit" and m.backend == "decode":
                m = self.limit_of(m.encoding, m.view) or m
                bare = self.limit_of(m.encoding, m.view, rgb=False)
                skip = self.find(m.encoding, m.view, "limit", "decode_skip_nonref")
                decode_limit.setdefault(m.encoding, {})[m.view] = {
                    "clips_per_s": spread(m.runs), "frames_per_s": spread([r * seq for r in m.runs]),
                    "decode_only_clips_per_s": spread(bare.runs) if bare else None,
                    "skip_nonref_clips_per_s": spread(skip.runs) if skip else None,
                    "skip_nonref_decoded_frames_per_clip": skip.extra.get("decoded_frames_per_clip") if skip else None,
                    "decoder": "pil" if m.backend == "decode_pil" else "pyav",
                    "decoded_frames_per_clip": m.extra.get("decoded_frames_per_clip"),
                    "definition": DecodeLimit.__doc__.split("\n\n")[1].replace("\n    ", " ").strip(),
                }
        return {
            "schema": 1,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "config": self.config,
            "machine": self.machine,
            "backends": sorted({m.backend for m in self.measures if m.kind in ("reader", "loader", "dali")}),
            "peers": sorted({m.backend for m in self.measures if m.kind == "peer"}),
            "encodings": self.encodings,
            "views": list(self.config["views"]),
            "workers": list(self.config["workers"]),
            "results": self.result_rows(seq),
            "decode_limit": decode_limit,
            "goals": self.goals(),
            "skipped": self.skipped,
            "seconds": round(self.seconds, 1),
        }


def _goal(name: str, value: float | None, target: float, detail: str) -> dict[str, Any]:
    """A goal row: value is the ratio of medians; met when it reaches the target."""
    return {"goal": name, "value": None if value is None else round(value, 3), "target": target,
            "met": None if value is None else value >= target, "detail": detail}


def _median(m: Measure | None) -> float | None:
    return statistics.median(m.runs) if m is not None and m.runs else None


def _over(a: Measure | None, b: Measure | None) -> float | None:
    x, y = _median(a), _median(b)
    return None if x is None or not y else x / y


def evaluate_goals(report: BenchReport) -> list[dict[str, Any]]:
    """Check the issue's goals on the train view (single process unless said otherwise)."""
    goals = []
    view = "train"
    gop16, mjpeg, jpeg = "h264_gop16", "mjpeg", "jpeg"
    peer = report.find(gop16, view, "peer", "torchcodec") or report.find(gop16, view, "peer", "decord")
    peer_name = peer.backend if peer else "torchcodec/decord"
    for backend in ("pyav", "lintel"):
        r = report.find(gop16, view, "reader", backend)
        goals.append(_goal(f"{backend} >= {peer_name} on H.264 GOP 16", _over(r, peer), 1.0,
                           "torchcodec exact is the issue's yardstick; decord stands in when it is absent"))
        goals.append(_goal(f"{backend} >= 2x official Lintel usage on H.264 GOP 16",
                           _over(r, report.find(gop16, view, "reference", "lintel_official")), 2.0,
                           "official usage = decode from frame 0 without seeking"))
        goals.append(_goal(f"{backend} >= 0.9 decode limit on H.264 GOP 16", _over(r, report.limit_of(gop16, view)),
                           0.9, "decode limit includes the RGB conversion of the needed frames"))
    goals.append(_goal("pyav >= 0.9 decode limit on MJPEG",
                       _over(report.find(mjpeg, view, "reader", "pyav"), report.limit_of(mjpeg, view)), 0.9,
                       "intra-only: only the needed packets are decoded"))
    mjpeg_peer = report.find(mjpeg, view, "peer", "torchcodec") or report.find(mjpeg, view, "peer", "decord")
    goals.append(_goal(f"pyav >= {mjpeg_peer.backend if mjpeg_peer else 'peer'} on MJPEG",
                       _over(report.find(mjpeg, view, "reader", "pyav"), mjpeg_peer), 1.0,
                       "the issue names torchcodec approximate mode"))
    goals.append(_goal("frames >= 0.9 JPEG decode limit",
                       _over(report.find(jpeg, view, "reader", "frames"), report.limit_of(jpeg, view)), 0.9,
                       "JPEG folder read by the frames backend"))
    workers = sorted(w for w in report.config["workers"] if w >= 2)
    if workers:
        w = workers[0]
        for backend in ("pyav", "lintel"):
            goals.append(_goal(
                f"DataLoader {backend} {w} workers >= 1.8x single process (H.264 GOP 16)",
                _over(report.find(gop16, view, "loader", backend, w), report.find(gop16, view, "loader", backend, 0)),
                1.8, "single process = the same loader with workers=0"))
            goals.append(_goal(
                f"DataLoader {backend} {w} workers >= 1.8x the single-process reader (H.264 GOP 16)",
                _over(report.find(gop16, view, "loader", backend, w), report.find(gop16, view, "reader", backend)),
                1.8, "stricter: the reader alone does no crops, the loader does"))
    goals.append(_goal("stretch: skipping unneeded non-reference frames >= 1.3x decode limit (H.264 GOP 16)",
                       _over(report.find(gop16, view, "limit", "decode_skip_nonref"), report.limit_of(gop16, view)),
                       1.3, "exact: the skipped frames are referenced by no other frame; same bytes"))
    base = report.find(gop16, view, "reader", "pyav")
    base_bytes = report.encodings.get(gop16, {}).get("bytes_per_s")
    for name, enc in report.encodings.items():
        if not name.startswith("h264_") or name == gop16 or not base_bytes:
            continue
        speed = _over(report.find(name, view, "reader", "pyav"), base)
        size = enc["bytes_per_s"] / base_bytes
        goals.append({**_goal(f"stretch: {name} >= 1.3x clips/s of h264_gop16 (pyav) at <= 1.3x bytes", speed, 1.3,
                              f"bytes {size:.2f}x of h264_gop16"),
                      "bytes_ratio": round(size, 3),
                      "met": None if speed is None else speed >= 1.3 and size <= 1.3})
    return goals


def _build_measures(
    config: BenchConfig, sets: dict[str, EncodedSet], work_dir: Path, skipped: list[dict[str, str]],
) -> tuple[list[Measure], dict[tuple[str, str], list[Sample]], list[DecodeLimit | JpegLimit]]:
    """Every applicable measure of every file set and view, plus the samples each group shares."""
    measures: list[Measure] = []
    samples: dict[tuple[str, str], list[Sample]] = {}
    limits: list[DecodeLimit | JpegLimit] = []
    peers_ok: dict[str, tuple[bool, str]] = {}
    if config.peers:
        for peer in PEERS:
            peers_ok[peer] = peer_status(peer)
            if not peers_ok[peer][0]:
                skipped.append({"backend": peer, "encoding": "*", "reason": peers_ok[peer][1]})
    loader_views = config.loader_views if config.loader_views is not None else config.views
    reference_views = config.reference_views if config.reference_views is not None else config.views
    for name, fileset in sets.items():
        records = read_list(fileset.list_file)
        video = fileset.kind == "video"
        sweep = config.loader_encodings is None or name in config.loader_encodings
        dali_ok = dali_status(fileset) if "dali" in config.backends else (False, "")
        if "dali" in config.backends and not dali_ok[0]:
            skipped.append({"backend": "dali", "encoding": name, "reason": dali_ok[1]})
        for view in config.views:
            samples[(name, view)] = plan_samples(
                records, root_path=fileset.root_path, view=view, clips=config.clips, seq_length=config.seq_length,
                sample_rate=config.sample_rate, test_segments=config.test_segments, seed=config.seed,
            )

            def add(kind: Kind, backend: str, run: Callable, workers: int | None = None, note: str = "",
                    view: str = view, name: str = name) -> Measure:
                m = Measure(encoding=name, view=view, kind=kind, backend=backend, run=run, workers=workers, note=note)
                measures.append(m)
                return m

            if fileset.intra_only and fileset.codec == "mjpeg":
                jpeg = JpegLimit(frames_folder=not video)
                limits.append(jpeg)
                add("limit", "decode_pil", jpeg.run, note="libjpeg-turbo through PIL, straight to RGB").extra[
                    "_limit"] = jpeg
            variants = [(True, False, "decode"), (False, False, "decode_only")]
            if fileset.codec == "h264":
                variants.append((True, True, "decode_skip_nonref"))
            for rgb, skip, label in variants:
                limit = DecodeLimit(frames_folder=not video, rgb=rgb, skip_nonref=skip)
                limits.append(limit)
                m = add("limit", label, limit.run,
                        note="stretch: non-reference frames nobody needs are not decoded" if skip else "")
                m.extra["_limit"] = limit
            for backend in config.backends:
                if backend == "dali":
                    ok, why = dali_ok
                    if not ok:
                        continue
                    if view in loader_views and sweep:
                        add("dali", "dali", _dali_run(fileset, records, view=view, config=config, work_dir=work_dir))
                    continue
                if (backend == "frames") == video:
                    continue  # frames reads folders; pyav/lintel read files
                add("reader", backend, _reader_run(backend))
                if view in loader_views and sweep:
                    for w in config.workers:
                        add("loader", backend, _loader_run(fileset, records, view=view, backend=backend,
                                                           workers=w, config=config, work_dir=work_dir), workers=w)
            if not video or view not in reference_views:
                continue
            add("reference", "lintel_official", _lintel_official_run(),
                note="BAT video mode: whole file read, Lintel decodes from frame 0 (should_seek=False)")
            for peer, (ok, note) in peers_ok.items():
                if ok:
                    add("peer", peer, _peer_run(peer), note=note)
                    if peer == "torchcodec":
                        add("peer", "torchcodec_approx", _peer_run(peer, approximate=True), note=note)
    return measures, samples, limits


# Measures timed one sample at a time in this process; the others (loaders) are whole runs.
PER_SAMPLE_KINDS: tuple[str, ...] = ("reader", "peer", "reference", "limit")


def _rotate(items: list[Measure], k: int) -> list[Measure]:
    k = k % len(items) if items else 0
    return items[k:] + items[:k]


def _attempt(m: Measure, samples: Sequence[Sample]) -> tuple[int, float] | None:
    """Run one measure; a failure is recorded on it (and it is dropped from later rounds), never raised."""
    try:
        return m.run(samples)
    except Exception as exc:  # one backend failing on one file set is a recorded result, not a crash
        log.warning("%s on %s/%s failed: %s: %s", m.label, m.encoding, m.view, type(exc).__name__, exc)
        m.status, m.note = "failed", f"{type(exc).__name__}: {exc}"
        m.runs.clear()
        return None


def _run_group(
    group: list[Measure], samples: dict[str, list[Sample]], *, rep: int, warmup_clips: int,
) -> None:
    """One repetition of one view over every file set, interleaved as finely as each measure allows.

    Per-sample measures of every file set take turns on the i-th sample (the same
    video and frames in each encoding; the order rotates with the sample and the
    repetition), so a burst of load from elsewhere hits backends and encodings
    alike; loader runs follow, in an order rotated per repetition. rep < 0 is the
    warm-up: a few samples per measure, nothing recorded, loaders skipped (their
    timing already starts after the pipeline has filled).
    """
    per_sample = [m for m in group if m.kind in PER_SAMPLE_KINDS and m.status == "ok"]
    whole = [m for m in group if m.kind not in PER_SAMPLE_KINDS and m.status == "ok"]
    count = max(len(v) for v in samples.values())
    count = min(count, max(1, warmup_clips)) if rep < 0 else count
    totals = {id(m): [0, 0.0] for m in per_sample}
    for m in per_sample:
        limit: DecodeLimit | JpegLimit | None = m.extra.get("_limit")
        if limit is not None:
            limit.decoded = limit.delivered = 0
    for i in range(count):
        for m in _rotate(per_sample, i + max(rep, 0)):
            own = samples[m.encoding]
            if m.status != "ok" or i >= len(own):
                continue
            result = _attempt(m, [own[i]])
            if result is not None:
                totals[id(m)][0] += result[0]
                totals[id(m)][1] += result[1]
    if rep < 0:
        return
    for m in per_sample:
        clips, seconds = totals[id(m)]
        if m.status == "ok" and seconds > 0:
            m.runs.append(clips / seconds)
            limit = m.extra.get("_limit")
            if limit is not None and clips:
                m.extra["decoded_frames_per_clip"] = round(limit.decoded / clips, 2)
    for m in _rotate(whole, rep):
        result = _attempt(m, samples[m.encoding])
        if result is not None and result[1] > 0:
            m.runs.append(result[0] / result[1])


def _fileset_from_list(config: BenchConfig) -> dict[str, EncodedSet]:
    """The user's list measured as is: one file set named after what probing finds."""
    fileset = describe_list(config.list_file, root_path=config.root_path)
    return {fileset.name: fileset}


def run_bench(config: BenchConfig, *, on_progress: ProgressFn = no_progress) -> BenchReport:
    """Generate or read the file sets, measure everything interleaved, and write bench.json and bench.png."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if config.generate:
        sample = make_sample(SampleConfig(
            out_dir=out / "sample", sources=config.sample_source, root_path=config.root_path,
            num_videos=config.sample_videos, duration_s=config.sample_seconds, width=config.sample_size[0],
            height=config.sample_size[1], encodings=config.encodings,
        ))
        sets = sample.sets
    else:
        sets = _fileset_from_list(config)
    machine = machine_description()
    work_dir = out / "work"
    work_dir.mkdir(exist_ok=True)
    skipped: list[dict[str, str]] = []
    measures, samples, limits = _build_measures(config, sets, work_dir, skipped)
    groups: dict[str, list[Measure]] = {}
    for m in measures:
        groups.setdefault(m.view, []).append(m)
    total = len(groups) * (config.repeats + 1)
    done = 0
    try:
        for rep in range(-1, config.repeats):  # rep -1 is the warm-up: page cache, imports, first decoders
            for view, group in groups.items():
                _run_group(group, {name: samples[(name, view)] for name in sets}, rep=rep,
                           warmup_clips=config.warmup_clips)
                done += 1
                on_progress(done, total)
    finally:
        for limit in limits:
            limit.close()
    for m in measures:
        m.extra.pop("_limit", None)
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["noisy"] = bool(machine["noisy"] or machine["loadavg_end"][0] > _NOISY_LOAD_PER_CPU * machine["cpu_count"]
                            * 4)
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in config.__dict__.items()}
    report = BenchReport(
        config=cfg, machine=machine, encodings={n: s.as_dict() for n, s in sets.items()}, measures=measures,
        skipped=skipped, seconds=time.perf_counter() - started,
    )
    report.json_path = out / "bench.json"
    data = report.as_dict()
    atomic_write_json(report.json_path, data)
    atomic_write_text(out / "bench.md", summary_markdown(data))
    report.png_path = out / "bench.png"
    write_plot(report, report.png_path)
    return report


# --------------------------------------------------------------------------------------
# Presentation: the table (rich) and the plot (matplotlib, Agg).
# --------------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def render_table(report: BenchReport) -> Any:
    """A rich Table of every measure: clips/s median [min-max], frames/s, ratio to the decode limit."""
    from rich.table import Table

    seq = int(report.config["seq_length"])
    table = Table(title="videoprep bench: clips/s (median, min-max over repetitions)", show_lines=False)
    for col in ("encoding", "KB/s video", "view", "measure", "clips/s", "min-max", "frames/s", "x limit"):
        table.add_column(col, justify="left" if col in ("encoding", "view", "measure") else "right")
    for m in report.measures:
        s = spread(m.runs)
        bps = report.encodings.get(m.encoding, {}).get("bytes_per_s")
        table.add_row(
            m.encoding, _fmt(bps / 1000 if bps else None, 0), m.view, m.label,
            _fmt(s["median"]) if m.status == "ok" else m.status,
            f"{_fmt(s['min'])}-{_fmt(s['max'])}" if m.runs else "",
            _fmt(s["median"] * seq if s["median"] is not None else None, 0), _fmt(report.ratio(m), 2),
        )
    return table


def summary_markdown(data: dict[str, Any], *, view: str = "train") -> str:
    """A Markdown table of one view's medians (clips/s, x decode limit) per file set, plus the goals."""
    rows = [r for r in data["results"] if r["view"] == view and r["clips_per_s"]["median"] is not None]

    def cell(enc: str, kind: str, backend: str, workers: int | None = None, ratio: bool = False) -> str:
        for r in rows:
            if (r["encoding"], r["kind"], r["backend"], r["workers"]) == (enc, kind, backend, workers):
                text = f"{r['clips_per_s']['median']:.1f}"
                if ratio and r["ratio_to_decode_limit"] is not None:
                    text += f" ({r['ratio_to_decode_limit']:.2f})"
                return text
        return "-"

    def limit_cell(enc: str) -> str:
        best = data["decode_limit"].get(enc, {}).get(view)
        if not best or best["clips_per_s"]["median"] is None:
            return "-"
        return f"{best['clips_per_s']['median']:.1f}" + (" (PIL)" if best["decoder"] == "pil" else "")

    workers = data["workers"]
    lines = [
        f"clips/s, median of {data['config']['repeats']} (x decode limit); view {view}; "
        f"{data['machine']['cpu_count']} cores {data['machine']['cpu_model']}, noisy={data['machine']['noisy']}",
        "",
        "| file set | KB/s of video | decode limit | pyav | lintel | frames | decord | official Lintel | DALI | "
        f"DataLoader workers {'/'.join(map(str, workers))} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for enc, info in data["encodings"].items():
        loaders = []
        for backend in ("pyav", "lintel", "frames"):
            cells = [cell(enc, "loader", backend, w) for w in workers]
            if any(c != "-" for c in cells):
                loaders.append(f"{backend} {' / '.join(cells)}")
        lines.append(
            f"| {enc} | {info['bytes_per_s'] / 1000:.0f} | {limit_cell(enc)} | "
            f"{cell(enc, 'reader', 'pyav', ratio=True)} | {cell(enc, 'reader', 'lintel', ratio=True)} | "
            f"{cell(enc, 'reader', 'frames', ratio=True)} | {cell(enc, 'peer', 'decord')} | "
            f"{cell(enc, 'reference', 'lintel_official')} | {cell(enc, 'dali', 'dali')} | "
            f"{'; '.join(loaders) or '-'} |"
        )
    lines.append("")
    for g in data["goals"]:
        mark = {True: "met", False: "missed", None: "not measured"}[g["met"]]
        value = "-" if g["value"] is None else f"{g['value']:.2f}"
        lines.append(f"- {g['goal']}: {value} (target {g['target']}): {mark}")
    return "\n".join(lines) + "\n"


def write_plot(report: BenchReport, path: Path) -> None:
    """PNG of train-view clips/s by encoding (one panel each), backend and worker count, with min-max bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    view = "train" if "train" in report.config["views"] else report.config["views"][0]
    encodings = list(report.encodings)
    fig, axes = plt.subplots(len(encodings), 1, figsize=(9, 1.2 + 0.32 * 14 * len(encodings) / 2.2), squeeze=False)
    colours = {"reader": "tab:blue", "loader": "tab:green", "dali": "tab:olive", "peer": "tab:gray",
               "reference": "tab:red", "limit": "black"}
    for ax, enc in zip(axes[:, 0], encodings, strict=True):
        ms = [m for m in report.measures if m.encoding == enc and m.view == view and m.runs]
        labels = [m.label for m in ms]
        med = [statistics.median(m.runs) for m in ms]
        lo = [v - min(m.runs) for v, m in zip(med, ms, strict=True)]
        hi = [max(m.runs) - v for v, m in zip(med, ms, strict=True)]
        ax.barh(range(len(ms)), med, xerr=[lo, hi], color=[colours[m.kind] for m in ms], capsize=2)
        ax.set_yticks(range(len(ms)), labels, fontsize=7)
        ax.invert_yaxis()
        bps = report.encodings[enc].get("bytes_per_s") or 0
        ax.set_title(f"{enc} ({bps / 1000:.0f} KB per s of video), view {view}", fontsize=9)
        ax.set_xlabel("clips/s", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
