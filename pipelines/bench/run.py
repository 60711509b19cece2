"""A run: every applicable measure of every file set and view, timed interleaved, then reported."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipelines.bench.checks import check_bench_list
from pipelines.bench.limits import DecodeLimit, JpegLimit
from pipelines.bench.measures import (
    Kind,
    Measure,
    dali_run,
    dali_status,
    lintel_official_run,
    loader_run,
    peer_run,
    peer_status,
    reader_run,
)
from pipelines.bench.plan import PEERS, BenchConfig, Sample, plan_samples
from pipelines.bench.render import write_plot
from pipelines.bench.report import NOISY_LOAD_PER_CPU, BenchReport, machine_description, summary_markdown
from videoprep.atomic import atomic_write_json, atomic_write_text
from videoprep.benchsample import EncodedSet, SampleConfig, describe_list, make_sample
from videoprep.locations import check_output_dir
from videoprep.progress import ProgressFn, no_progress
from videoprep.records import read_list

log = logging.getLogger(__name__)


def _peer_statuses(config: BenchConfig, skipped: list[dict[str, str]]) -> dict[str, tuple[bool, str]]:
    """(usable, note) per peer when peers are asked for; the unusable ones are recorded as skipped."""
    peers_ok: dict[str, tuple[bool, str]] = {}
    if config.peers:
        for peer in PEERS:
            peers_ok[peer] = peer_status(peer)
            if not peers_ok[peer][0]:
                skipped.append({"backend": peer, "encoding": "*", "reason": peers_ok[peer][1]})
    return peers_ok


def _backend_statuses(config: BenchConfig, skipped: list[dict[str, str]]) -> set[str]:
    """The asked-for readers usable here (the registry's `backend_status`); the others are recorded as skipped."""
    from pipelines.backends import backend_status

    usable = set()
    for status in backend_status():
        if status.name in config.backends and status.name != "dali":
            if status.available:
                usable.add(status.name)
            else:
                skipped.append({"backend": status.name, "encoding": "*", "reason": status.note})
    return usable


class _Planner:
    """Collects every applicable measure of one run, file set by file set and view by view."""

    def __init__(self, config: BenchConfig, work_dir: Path, skipped: list[dict[str, str]]) -> None:
        self.config = config
        self.work_dir = work_dir
        self.skipped = skipped
        self.measures: list[Measure] = []
        self.limits: list[DecodeLimit | JpegLimit] = []
        self.peers_ok = _peer_statuses(config, skipped)
        self.usable = _backend_statuses(config, skipped)
        self.loader_views = config.loader_views if config.loader_views is not None else config.views
        self.reference_views = config.reference_views if config.reference_views is not None else config.views

    def add(self, fileset: EncodedSet, view: str, kind: Kind, backend: str, run: Callable,
            workers: int | None = None, note: str = "") -> Measure:
        """Register one measure."""
        m = Measure(encoding=fileset.name, view=view, kind=kind, backend=backend, run=run, workers=workers,
                    note=note)
        self.measures.append(m)
        return m

    def add_limits(self, fileset: EncodedSet, view: str) -> None:
        """The decode limit variants that apply to the file set (PIL for JPEG, skip-nonref for H.264)."""
        video = fileset.kind == "video"
        if fileset.intra_only and fileset.codec == "mjpeg":
            jpeg = JpegLimit(frames_folder=not video)
            self.limits.append(jpeg)
            self.add(fileset, view, "limit", "decode_pil", jpeg.run,
                     note="libjpeg-turbo through PIL, straight to RGB").extra["_limit"] = jpeg
        variants = [(True, False, "decode"), (False, False, "decode_only")]
        if fileset.codec == "h264":
            variants.append((True, True, "decode_skip_nonref"))
        for rgb, skip, label in variants:
            limit = DecodeLimit(frames_folder=not video, rgb=rgb, skip_nonref=skip)
            self.limits.append(limit)
            m = self.add(fileset, view, "limit", label, limit.run,
                         note="stretch: non-reference frames nobody needs are not decoded" if skip else "")
            m.extra["_limit"] = limit

    def add_backends(self, fileset: EncodedSet, records: list, view: str, dali_ok: tuple[bool, str]) -> None:
        """Our readers (pyav also with one decoder thread), the DataLoader sweep and DALI, where they apply."""
        config = self.config
        video = fileset.kind == "video"
        sweep = view in self.loader_views and (config.loader_encodings is None
                                               or fileset.name in config.loader_encodings)
        for backend in config.backends:
            if backend == "dali":
                if dali_ok[0] and sweep:
                    self.add(fileset, view, "dali", "dali",
                             dali_run(fileset, records, view=view, config=config, work_dir=self.work_dir))
                continue
            if (backend == "frames") == video or backend not in self.usable:
                continue  # frames reads folders; the others read files; an unusable one is skipped
            self.add(fileset, view, "reader", backend, reader_run(backend))
            if backend == "pyav":  # per core: one decoder thread, as in each DataLoader worker
                self.add(fileset, view, "reader", "pyav_1t", reader_run(backend, decoder_threads=1),
                         note="one decoder thread (set_decoder_threads(1))")
            if sweep:
                for w in config.workers:
                    self.add(fileset, view, "loader", backend,
                             loader_run(fileset, records, view=view, backend=backend, workers=w, config=config,
                                        work_dir=self.work_dir), workers=w)

    def add_references(self, fileset: EncodedSet, view: str) -> None:
        """The official Lintel usage and the peers (video files, reference views only)."""
        if fileset.kind != "video" or view not in self.reference_views:
            return
        self.add(fileset, view, "reference", "lintel_official", lintel_official_run(),
                 note="BAT video mode: whole file read, Lintel decodes from frame 0 (should_seek=False)")
        for peer, (ok, note) in self.peers_ok.items():
            if ok:
                self.add(fileset, view, "peer", peer, peer_run(peer), note=note)
                if peer == "torchcodec":
                    self.add(fileset, view, "peer", "torchcodec_approx", peer_run(peer, approximate=True), note=note)


def _build_measures(
    config: BenchConfig, sets: dict[str, EncodedSet], work_dir: Path, skipped: list[dict[str, str]],
) -> tuple[list[Measure], dict[tuple[str, str], list[Sample]], list[DecodeLimit | JpegLimit]]:
    """Every applicable measure of every file set and view, plus the samples each group shares."""
    planner = _Planner(config, work_dir, skipped)
    samples: dict[tuple[str, str], list[Sample]] = {}
    for name, fileset in sets.items():
        records = read_list(fileset.list_file)
        dali_ok = dali_status(fileset) if "dali" in config.backends else (False, "")
        if "dali" in config.backends and not dali_ok[0]:
            skipped.append({"backend": "dali", "encoding": name, "reason": dali_ok[1]})
        for view in config.views:
            samples[(name, view)] = plan_samples(
                records, root_path=fileset.root_path, view=view, clips=config.clips, clip=config.clip,
                seed=config.loader.seed,
            )
            planner.add_limits(fileset, view)
            planner.add_backends(fileset, records, view, dali_ok)
            planner.add_references(fileset, view)
    return planner.measures, samples, planner.limits


# Measures timed one sample at a time in this process; the others (loaders) are whole runs.
PER_SAMPLE_KINDS: tuple[str, ...] = ("reader", "peer", "reference", "limit")


def _rotate(items: list[Measure], k: int) -> list[Measure]:
    k = k % len(items) if items else 0
    return items[k:] + items[:k]


def _shuffled(items: list[Measure], seed: int) -> list[Measure]:
    """items in an order drawn from `seed`: no measure always runs right after the same one."""
    order = list(items)
    random.Random(seed).shuffle(order)
    return order


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
    video and frames in each encoding; the order is shuffled per sample and
    repetition, from a fixed seed), so a burst of load from elsewhere hits backends
    and encodings alike, and no measure always runs right after the one that just
    read the same sample (a rotation kept that neighbour, and with it warm caches:
    identical code measured 10% apart); loader runs follow, in an order rotated per repetition. rep < 0 is the
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
        for m in _shuffled(per_sample, (max(rep, 0) << 16) + i):
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
    fileset = describe_list(config.list_file, root_path=config.loader.root_path)
    return {fileset.name: fileset}


def report_config(config: BenchConfig) -> dict[str, Any]:
    """bench.json's `config`: the bench's own settings, and the clip and loader settings it measured with."""
    own = {k: (str(v) if isinstance(v, Path) else v) for k, v in config.__dict__.items() if k not in ("clip", "loader")}
    return {**own, "seq_length": config.clip.seq_length, "sample_rate": config.clip.sample_rate,
            "test_segments": config.clip.test_segments, "batch_size": config.loader.batch_size,
            "seed": config.loader.seed, "root_path": config.loader.root_path}


def run_bench(config: BenchConfig, *, on_progress: ProgressFn = no_progress) -> BenchReport:
    """Generate or read the file sets, measure everything interleaved, and write bench.json and bench.png."""
    out = check_output_dir(config.out_dir, what="--out")  # before any work, as every stage's
    if not config.generate:
        check_bench_list(config.list_file, root_path=config.loader.root_path)  # as the runners check theirs
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if config.generate:
        sample = make_sample(SampleConfig(
            out_dir=out / "sample", sources=config.sample_source, synthetic=config.sample_synthetic,
            root_path=config.loader.root_path,
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
    machine["noisy"] = bool(machine["noisy"] or machine["loadavg_end"][0] > NOISY_LOAD_PER_CPU * machine["cpu_count"]
                            * 4)
    cfg = report_config(config)
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
