"""What the mirror route fetches: part lists, part sizes, annotation CSVs and the replacement archive.

Mirror layout (ours or the CVDF S3 bucket), per release (videoprep.download.releases):
    {base}/{split}/{tag}_{split}_path.txt   one part URL per line (absolute or relative)
    {base}/annotations/{split}.csv          the annotation CSV of the split
    {base}/{replacement}                    Kinetics-400: re-encoded copies of corrupt clips
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin, urlsplit

from videoprep.atomic import atomic_write_text
from videoprep.download.http import DownloadFailed, RetryPolicy, fetch_bytes, head_size
from videoprep.download.releases import RELEASES, Release
from videoprep.download.report import PlannedFile
from videoprep.errors import LayoutError

log = logging.getLogger(__name__)

KINETICS400 = RELEASES["kinetics400"]
CVDF_BASE_URL = KINETICS400.base_url


def url_list_url(base_url: str, split: str, release: Release = KINETICS400) -> str:
    """URL of a split's list of part URLs."""
    return f"{base_url.rstrip('/')}/{split}/{release.list_name(split)}"


def annotations_url(base_url: str, split: str) -> str:
    """URL of a split's annotation CSV on the mirror."""
    return f"{base_url.rstrip('/')}/annotations/{split}.csv"


def replacement_url(base_url: str, release: Release = KINETICS400) -> str | None:
    """URL of the archive of re-encoded copies of corrupt clips (None: the release has none)."""
    return f"{base_url.rstrip('/')}/{release.replacement}" if release.replacement else None


@dataclass(frozen=True)
class PartPlan:
    """One tarball part of one split."""

    split: str
    url: str
    size_bytes: int | None = None

    @property
    def name(self) -> str:
        """File name of the part (last URL path component)."""
        return PurePosixPath(urlsplit(self.url).path).name or "part"

    @property
    def key(self) -> str:
        """Journal key: split and URL (two lists may reuse part names)."""
        return f"{self.split} {self.url}"


@dataclass
class MirrorPlan:
    """Everything the mirror route would fetch."""

    base_url: str
    parts: list[PartPlan]
    annotation_urls: dict[str, str]
    replacement_url: str | None
    replacement_size: int | None = None

    @property
    def total_bytes(self) -> int | None:
        """Sum of part sizes, None when any size is unknown."""
        sizes = [p.size_bytes for p in self.parts]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)


def parse_url_list(text: str, *, list_url: str, base_url: str = CVDF_BASE_URL,
                   release: Release = KINETICS400) -> list[str]:
    """Part URLs from a URL list file: one per line, blank lines and `#` comments skipped.

    Relative lines resolve against the list's URL. Absolute CVDF S3 URLs of the
    release are moved under `base_url` when it differs, so a copy of the mirror
    (lists unchanged) is read from the copy and not from S3.
    """
    urls = []
    cvdf = release.base_url.rstrip("/") + "/"
    base = base_url.rstrip("/") + "/"
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        url = urljoin(list_url, line)
        if base != cvdf and url.startswith(cvdf):
            url = base + url.removeprefix(cvdf)
        urls.append(url)
    return urls


def plan_mirror(
    *, base_url: str, splits: Sequence[str], policy: RetryPolicy, jobs: int = 4, with_sizes: bool = True,
    release: Release = KINETICS400,
) -> MirrorPlan:
    """Fetch the URL lists and (optionally, by HEAD) the size of every part."""
    parts: list[PartPlan] = []
    for split in splits:
        list_url = url_list_url(base_url, split, release)
        try:
            text = fetch_bytes(list_url, policy=policy).decode("utf-8")
        except DownloadFailed as exc:
            raise LayoutError(list_url, f"cannot fetch the part list of {split}: {exc.reason}") from None
        urls = parse_url_list(text, list_url=list_url, base_url=base_url, release=release)
        if not urls:
            raise LayoutError(list_url, "part list is empty")
        parts.extend(PartPlan(split, url) for url in urls)
    rep_url = replacement_url(base_url, release)
    rep_size = None
    if with_sizes:
        extra = [rep_url] if rep_url else []
        sizes = _head_sizes([p.url for p in parts] + extra, policy=policy, jobs=jobs)
        parts = [PartPlan(p.split, p.url, sizes.get(p.url)) for p in parts]
        rep_size = sizes.get(rep_url) if rep_url else None
    return MirrorPlan(
        base_url=base_url,
        parts=parts,
        annotation_urls={s: annotations_url(base_url, s) for s in splits},
        replacement_url=rep_url,
        replacement_size=rep_size,
    )


def _head_sizes(urls: Sequence[str], *, policy: RetryPolicy, jobs: int) -> dict[str, int | None]:
    """HEAD many URLs in parallel; a URL whose size cannot be learned maps to None."""
    def one(url: str) -> int | None:
        try:
            return head_size(url, policy=policy)
        except DownloadFailed as exc:
            log.info("HEAD %s failed: %s", url, exc.reason)
            return None

    # HEADs are tiny: use more connections than transfers, or 600 parts would take minutes
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(16, jobs)) as pool:
        return dict(zip(urls, pool.map(one, urls), strict=True))


def fetch_annotations(url: str, split: str, *, policy: RetryPolicy) -> bytes:
    """The body of a split's annotation CSV; a LayoutError naming the URL when it cannot be had."""
    try:
        return fetch_bytes(url, policy=policy)
    except DownloadFailed as exc:
        raise LayoutError(url, f"cannot fetch the annotations of {split}: {exc.reason}") from None


def write_annotations(*, plan: MirrorPlan, out_dir: Path, policy: RetryPolicy) -> dict[str, Path]:
    """Fetch each split's annotation CSV to `{out}/annotations/{split}.csv` (atomically)."""
    written = {}
    for split, url in plan.annotation_urls.items():
        target = out_dir / "annotations" / f"{split}.csv"
        atomic_write_text(target, fetch_annotations(url, split, policy=policy).decode("utf-8"))
        written[split] = target
    return written


def planned_files(plan: MirrorPlan, *, out_dir: Path) -> list[PlannedFile]:
    """The dry-run listing: every file with its size when known and where it ends up."""
    files = [PlannedFile(url, None, str(out_dir / "annotations" / f"{split}.csv"), split)
             for split, url in plan.annotation_urls.items()]
    files += [PlannedFile(p.url, p.size_bytes, str(out_dir / p.split) + "/", p.split) for p in plan.parts]
    if plan.replacement_url:
        files.append(PlannedFile(plan.replacement_url, plan.replacement_size, "(copied over corrupt clips)"))
    return files
