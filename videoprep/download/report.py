"""The end-of-download report: expected vs on disk per split, missing with reasons, a fingerprint."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from videoprep.formats import video_files

REPORT_NAME = "download_report.json"


@dataclass(frozen=True)
class Failure:
    """One item that did not finish: a part URL or a clip id, the kind of failure and why."""

    item: str
    kind: str
    reason: str
    split: str | None = None


@dataclass(frozen=True)
class PlannedFile:
    """One file a download would fetch (dry run): URL, size when the server says, destination."""

    url: str
    size_bytes: int | None
    destination: str
    split: str | None = None


@dataclass
class SplitReport:
    """One split: annotated rows wanted vs clip files on disk, and why the rest are missing."""

    split: str
    expected: int
    on_disk: int
    bytes_on_disk: int
    missing: dict[str, str] = field(default_factory=dict)
    extra: int = 0

    @property
    def missing_by_reason(self) -> dict[str, int]:
        """How many clips are missing for each reason."""
        return dict(Counter(self.missing.values()).most_common())


@dataclass
class DownloadReport:
    """What a download did and what is on disk now; written as JSON next to the data."""

    dataset: str
    source: str
    out_dir: str
    dry_run: bool
    splits: dict[str, SplitReport] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    plan: list[PlannedFile] = field(default_factory=list)
    bytes_downloaded: int = 0
    elapsed_s: float = 0.0
    # Clip ids: count, sha256, per split; plus content_sha256 (what `videoprep fingerprint` prints) when
    # every clip on disk was hashed as it was extracted.
    fingerprint: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    report_path: str | None = None
    # Mirror route: every clip on disk as {"id", "split", "size", "sha256"}, hashed while it was extracted.
    # YouTube route: every clip fetched as {"id", "split", "fetch": "range" | "whole", "file_bytes"}.
    clips: list[dict[str, Any]] = field(default_factory=list)
    # YouTube route: the ffmpeg that cut the clips, {"path", "version"} (the mirror route runs none).
    ffmpeg: dict[str, str] = field(default_factory=dict)
    # Set when the completion record answered: the recorded summary (on_disk, expected, fingerprint, report,
    # record); nothing was fetched or scanned.
    unchanged: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        """True when every expected clip is on disk and nothing failed."""
        return not self.failures and all(not s.missing for s in self.splits.values())

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (missing clips listed with reasons, plus counts by reason)."""
        out = asdict(self)
        for name, split in self.splits.items():
            out["splits"][name]["missing_by_reason"] = split.missing_by_reason
        out["complete"] = self.complete
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DownloadReport:
        """The report as_dict wrote (derived keys dropped); KeyError/TypeError when it is not one."""
        fields = {k: v for k, v in data.items() if k not in ("complete",)}
        fields["splits"] = {name: SplitReport(**{k: v for k, v in split.items() if k != "missing_by_reason"})
                            for name, split in data["splits"].items()}
        fields["failures"] = [Failure(**f) for f in data["failures"]]
        fields["plan"] = [PlannedFile(**p) for p in data["plan"]]
        return cls(**fields)


def scan_clips(split_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """clip id (file stem) -> path of every video under a split folder, flat or in class folders.

    Hidden names (temporary `.x.part` files, `._` resource forks) are not clips.
    """
    root = Path(split_dir)
    found: dict[str, Path] = {}
    if root.is_dir():
        for path in video_files(root):
            found.setdefault(path.stem, path)
    return found


def dataset_fingerprint(clip_ids: Mapping[str, Iterable[str]]) -> dict[str, Any]:
    """Counts plus sha256 of the sorted clip ids, per split and overall: equal copies hash equal."""
    per_split: dict[str, dict[str, Any]] = {}
    overall = hashlib.sha256()
    total = 0
    for split in sorted(clip_ids):
        ids = sorted(set(clip_ids[split]))
        text = "".join(f"{i}\n" for i in ids).encode()
        per_split[split] = {"count": len(ids), "sha256": hashlib.sha256(text).hexdigest()}
        overall.update("".join(f"{split}/{i}\n" for i in ids).encode())
        total += len(ids)
    return {"count": total, "sha256": overall.hexdigest(), "splits": per_split}


def split_report(
    split: str,
    *,
    expected_ids: Iterable[str],
    on_disk: Mapping[str, Path],
    reasons: Mapping[str, str],
    default_reason: str,
) -> SplitReport:
    """Compare the clips wanted with the non-empty clip files present; name a reason for each gap."""
    expected = list(dict.fromkeys(expected_ids))
    sizes = {cid: path.stat().st_size for cid, path in on_disk.items()}
    present = {cid for cid, size in sizes.items() if size > 0}
    missing: dict[str, str] = {}
    for cid in expected:
        if cid in present:
            continue
        if cid in sizes:
            missing[cid] = "empty file (0 bytes)"
        else:
            missing[cid] = reasons.get(cid, default_reason)
    expected_set = set(expected)
    return SplitReport(
        split=split,
        expected=len(expected),
        on_disk=len(present & expected_set),
        bytes_on_disk=sum(sizes[c] for c in present),
        missing=missing,
        extra=len(present - expected_set),
    )


def format_bytes(size: int) -> str:
    """Bytes for people: 1.5 MB, 436.2 GB."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def summary_table(report: DownloadReport) -> Table:
    """A rich table of the report for the terminal (the JSON file holds every detail)."""
    table = Table(title=f"{report.dataset} from {report.source}: {report.out_dir}")
    for col in ("split", "expected", "on disk", "missing", "top reasons", "size on disk"):
        table.add_column(col, justify="left" if col in ("split", "top reasons") else "right")
    for split in report.splits.values():
        reasons = "; ".join(f"{n} {r}" for r, n in list(split.missing_by_reason.items())[:3])
        table.add_row(split.split, str(split.expected), str(split.on_disk), str(len(split.missing)),
                      reasons or "-", format_bytes(split.bytes_on_disk))
    fp = report.fingerprint
    if fp:
        content = f", content {fp['content_sha256'][:16]}" if "content_sha256" in fp else ""
        table.caption = (f"fingerprint {fp['sha256'][:16]}{content} ({fp['count']} clips); "
                         f"{format_bytes(report.bytes_downloaded)} downloaded in {report.elapsed_s:.1f} s; "
                         f"{len(report.failures)} failure(s)")
    return table
