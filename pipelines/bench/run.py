"""A run: every applicable measure of every file set and view, timed interleaved, then reported."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

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
from videoprep.progress import ProgressFn, no_progress
from videoprep.records import read_list

log = logging.getLogger(__name__)


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
                        add("dali", "dali", dali_run(fileset, records, view=view, config=config, work_dir=work_dir))
                    continue
                if (backend == "frames") == video:
                    continue  # frames reads folders; pyav/lintel read files
                add("reader", backend, reader_run(backend))
                if backend == "pyav":  # per core: one decoder thread, as in each DataLoader worker
                    add("reader", "pyav_1t", reader_run(backend, decoder_threads=1),
                        note="one decoder thread (set_decoder_threads(1))")
                if view in loader_views and sweep:
                    for w in config.workers:
                        add("loader", backend, loader_run(fileset, records, view=view, backend=backend,
                                                           workers=w, config=config, work_dir=work_dir), workers=w)
            if not video or view not in reference_views:
                continue
            add("reference", "lintel_official", lintel_official_run(),
                note="BAT video mode: whole file read, Lintel decodes from frame 0 (should_seek=False)")
            for peer, (ok, note) in peers_ok.items():
                if ok:
                    add("peer", peer, peer_run(peer), note=note)
                    if peer == "torchcodec":
                        add("peer", "torchcodec_approx", peer_run(peer, approximate=True), note=note)
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
    machine["noisy"] = bool(machine["noisy"] or machine["loadavg_end"][0] > NOISY_LOAD_PER_CPU * machine["cpu_count"]
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
