"""The report of a run: machine, figures per measure, decode limits and goals, as JSON and Markdown."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import platform
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from pipelines.bench.goals import evaluate
from pipelines.bench.limits import DecodeLimit
from pipelines.bench.measures import Measure, spread

# Load average (1 min) per core above which the machine counts as busy with other work.
NOISY_LOAD_PER_CPU = 0.25


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
        "noisy": load[0] > NOISY_LOAD_PER_CPU * cpus,
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
                "ratio_to_torchcodec": self.peer_ratio(m),
                "bytes_per_s": self.encodings.get(m.encoding, {}).get("bytes_per_s"), **m.extra,
            })
        return rows

    def goals(self, view: str = "train") -> list[dict[str, Any]]:
        """The performance goals, judged on one view's figures (None when not measured)."""

        def runs(encoding: str, kind: str, backend: str, workers: int | None) -> list[float]:
            m = self.find(encoding, view, kind, backend, workers)
            return list(m.runs) if m is not None else []

        return evaluate(runs, lambda encoding: self.encodings.get(encoding, {}).get("bytes_per_s"))

    def peer_ratio(self, m: Measure) -> float | None:
        """Median clips/s over the faster torchcodec mode's median (same file set and view)."""
        peers = [p.median() for b in ("torchcodec", "torchcodec_approx")
                 if (p := self.find(m.encoding, m.view, "peer", b)) is not None]
        mine = m.median()
        return None if mine is None or not peers else round(mine / max(peers), 3)

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
    sources = sorted({info.get("source", "") for info in data["encodings"].values()} - {""})
    lines = [
        *(f"sample: {text}" for text in sources),
        f"clips/s, median of {data['config']['repeats']} (x decode limit); view {view}; "
        f"{data['machine']['cpu_count']} cores {data['machine']['cpu_model']}, noisy={data['machine']['noisy']}",
        "",
        "| file set | KB/s of video | decode limit | pyav | pyav 1 thread | lintel | frames | torchcodec exact "
        "| torchcodec approx | official Lintel | DALI | "
        f"DataLoader workers {'/'.join(map(str, workers))} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for enc, info in data["encodings"].items():
        loaders = []
        for backend in ("pyav", "lintel", "frames"):
            cells = [cell(enc, "loader", backend, w) for w in workers]
            if any(c != "-" for c in cells):
                loaders.append(f"{backend} {' / '.join(cells)}")
        lines.append(
            f"| {enc} | {info['bytes_per_s'] / 1000:.0f} | {limit_cell(enc)} | "
            f"{cell(enc, 'reader', 'pyav', ratio=True)} | {cell(enc, 'reader', 'pyav_1t', ratio=True)} | "
            f"{cell(enc, 'reader', 'lintel', ratio=True)} | "
            f"{cell(enc, 'reader', 'frames', ratio=True)} | {cell(enc, 'peer', 'torchcodec')} | "
            f"{cell(enc, 'peer', 'torchcodec_approx')} | "
            f"{cell(enc, 'reference', 'lintel_official')} | {cell(enc, 'dali', 'dali')} | "
            f"{'; '.join(loaders) or '-'} |"
        )
    lines.append("")
    for g in data["goals"]:
        mark = {True: "met", False: "missed", None: "not measured"}[g["met"]]
        value = "-" if g["value"] is None else f"{g['value']:.2f}"
        lines.append(f"- {g['goal']}: {value} (target {g['target']}): {mark}")
    return "\n".join(lines) + "\n"
