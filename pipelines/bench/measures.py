"""What is timed: our readers, the DataLoader, DALI, peers and the official Lintel usage, one closure each.

Readers and loaders are built in one helper each (`make_reader`, `make_loader`,
`make_dali_loader`), so a change of their construction API lands in one place.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipelines.bench.plan import PEERS, BenchConfig, Sample, view_segments
from pipelines.spec import ClipSpec, LoaderConfig
from videoprep.benchsample import EncodedSet
from videoprep.errors import VideoprepError
from videoprep.records import ListRecord, write_list

Kind = Literal["reader", "loader", "dali", "peer", "reference", "limit"]
Run = Callable[[Sequence[Sample]], tuple[int, float]]

# Short names for the table and the plot: "kind backend [wN]" must fit 18 characters.
KIND_LABELS = {"reader": "read", "loader": "load", "dali": "dali", "peer": "peer", "reference": "ref",
               "limit": "limit"}
BACKEND_LABELS = {
    "torchcodec": "tc exact", "torchcodec_approx": "tc approx", "pyav_1t": "pyav 1thr",
    "lintel_official": "lintel BAT", "decode": "rgb", "decode_only": "no rgb", "decode_pil": "PIL",
    "decode_skip_nonref": "skip nonref",
}


@dataclass
class Measure:
    """One measured thing: run(samples) -> (clips delivered, seconds timed), repeated and interleaved."""

    encoding: str
    view: str
    kind: Kind
    backend: str
    run: Run
    workers: int | None = None
    note: str = ""
    runs: list[float] = field(default_factory=list)  # clips/s per repetition
    status: str = "ok"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Short name used in the table and the plot (distinct for every measure of a file set and view)."""
        w = "" if self.workers is None else f" w{self.workers}"
        return f"{KIND_LABELS[self.kind]} {BACKEND_LABELS.get(self.backend, self.backend)}{w}"

    def median(self) -> float | None:
        """Median clips/s, None when it did not run."""
        return statistics.median(self.runs) if self.runs else None


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


def timed(fn: Callable[[Sample], object]) -> Run:
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


def make_reader(backend: str) -> Any:
    """Our reader of that backend, as the loaders build it."""
    from pipelines.backends import get_reader

    return get_reader(backend)


def reader_run(backend: str, *, decoder_threads: int | None = None) -> Run:
    """Our reader, one sample at a time; `decoder_threads` pins each decoder's threads (1: per core)."""
    from videoprep.decode import decoder_threads as current_threads
    from videoprep.decode import set_decoder_threads

    reader = make_reader(backend)
    if decoder_threads is None:
        return timed(lambda s: reader.read(s.path, s.indices))

    def one(s: Sample) -> None:
        before = current_threads()
        set_decoder_threads(decoder_threads)
        try:
            reader.read(s.path, s.indices)
        finally:
            set_decoder_threads(before)

    return timed(one)


def lintel_official_run() -> Run:
    """BAT's video mode: read the whole file, then Lintel decodes from frame 0 without seeking."""
    from pipelines.lintel import loadvid_frame_nums

    def one(s: Sample) -> None:
        with open(s.path, "rb") as f:
            encoded = f.read()
        loadvid_frame_nums(encoded, frame_nums=sorted(set(s.indices)), should_seek=False)

    return timed(one)


def peer_status(name: str) -> tuple[bool, str]:
    """(usable, note) for a peer decoder: installed and importable, or why not."""
    if importlib.util.find_spec(name) is None:
        return False, f"{name} is not installed (reference point skipped)"
    try:
        module = importlib.import_module(name)
        if name == "torchcodec":  # the package imports without FFmpeg; its decoders load the libraries
            importlib.import_module("torchcodec.decoders")
    except Exception as exc:  # torchcodec raises RuntimeError/OSError when FFmpeg libraries are missing
        return False, f"{name} is installed but does not load: {type(exc).__name__}: {exc}"
    return True, f"{name} {getattr(module, '__version__', '?')}"


def peer_run(name: str, *, approximate: bool = False) -> Run:
    """A peer decoder as its users call it: open the file per sample, fetch the indices in one call.

    torchcodec is called directly (not through a backend of ours) with its defaults, one
    FFmpeg thread per decoder (`num_ffmpeg_threads=1`), exact or approximate seeking, and
    one torch thread (what a DataLoader worker sets).
    """
    if name == "decord":
        import decord

        def one(s: Sample) -> None:
            decord.VideoReader(s.path, ctx=decord.cpu(0)).get_batch(list(s.indices)).asnumpy()

        return timed(one)
    if name == "torchcodec":
        import torch
        from torchcodec.decoders import VideoDecoder

        mode = "approximate" if approximate else "exact"

        def one_tc(s: Sample) -> None:
            # One torch thread, as in a DataLoader worker: with torch's default (one per core) its
            # tensor ops wait on OpenMP threads, and with other jobs on the cores that measured
            # 10x slower (16-35 vs 180-240 clips/s on MJPEG, 2 busy cores).
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                VideoDecoder(s.path, seek_mode=mode, num_ffmpeg_threads=1).get_frames_at(indices=list(s.indices))
            finally:
                torch.set_num_threads(before)

        return timed(one_tc)
    raise ValueError(f"peer ({name!r}) must be one of: {', '.join(PEERS)}")


# --------------------------------------------------------------------------------------
# The DataLoader path.
# --------------------------------------------------------------------------------------


def repeat_list(records: Sequence[ListRecord], count: int, path: Path) -> Path:
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


@dataclass(frozen=True)
class LoaderJob:
    """One loader measurement: a list of enough entries over a file set, in one view."""

    list_file: Path
    fileset: EncodedSet
    view: str
    num_classes: int


def _clip(job: LoaderJob, config: BenchConfig) -> ClipSpec:
    """The clip every loader measurement takes: one segment, one crop, the bench's length and rate."""
    return dataclasses.replace(config.clip, mode=job.view)


def _loader_config(job: LoaderJob, config: BenchConfig, **changes: Any) -> LoaderConfig:
    """How loader measurements load: the file set's root, the bench's batch and seed, every batch kept."""
    return dataclasses.replace(config.loader, root_path=job.fileset.root_path, num_classes=job.num_classes,
                               drop_last=False, **changes)


def make_loader(job: LoaderJob, *, backend: str, workers: int, config: BenchConfig) -> Any:
    """The real DataLoader (`pipelines.loader.build_loader`) for a job."""
    from pipelines.loader import build_loader

    return build_loader(str(job.list_file), _clip(job, config), _loader_config(
        job, config, backend=backend, workers=workers,
        persistent_workers=False,  # a fresh loader per measurement; no workers left behind
    ))


def make_dali_loader(job: LoaderJob, *, config: BenchConfig) -> Any:
    """The DALI loader, through the same `build_loader` and backend registry."""
    from pipelines.loader import build_loader

    return build_loader(str(job.list_file), _clip(job, config), _loader_config(job, config, backend="dali"))


def _job(fileset: EncodedSet, records: Sequence[ListRecord], samples: Sequence[Sample], *, view: str,
         config: BenchConfig, work_dir: Path, skip: int, tag: str) -> LoaderJob:
    """A list long enough for the samples' clips plus `skip` batches of pipeline fill."""
    wanted = sum(s.clips for s in samples)
    segments = view_segments(view, test_segments=config.clip.test_segments)
    batch = config.loader.batch_size
    count = (skip + math.ceil(wanted / segments / batch)) * batch
    path = repeat_list(records, count, work_dir / f"{fileset.name}-{view}-{count}{tag}.txt")
    return LoaderJob(path, fileset, view, max(r.label for r in records) + 1)


def loader_run(fileset: EncodedSet, records: Sequence[ListRecord], *, view: str, backend: str, workers: int,
               config: BenchConfig, work_dir: Path) -> Run:
    """Clips/s through build_loader: a list of enough entries, batches timed after the pipeline fills."""
    skip = max(1, workers)

    def run(samples: Sequence[Sample]) -> tuple[int, float]:
        job = _job(fileset, records, samples, view=view, config=config, work_dir=work_dir, skip=skip, tag="")
        return time_batches(iter(make_loader(job, backend=backend, workers=workers, config=config)), skip=skip)

    return run


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


def dali_run(fileset: EncodedSet, records: Sequence[ListRecord], *, view: str, config: BenchConfig,
             work_dir: Path) -> Run:
    """Clips/s through the DALI loader (a whole pipeline, so one figure per view, no worker sweep)."""

    def run(samples: Sequence[Sample]) -> tuple[int, float]:
        job = _job(fileset, records, samples, view=view, config=config, work_dir=work_dir, skip=1, tag="-dali")
        with make_dali_loader(job, config=config) as loader:  # releases the DALI pipeline
            return time_batches(iter(loader), skip=1)

    return run
