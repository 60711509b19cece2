"""Find the videos under a dataset root and work out each one's split and label.

Layouts understood (they may be mixed in one tree):
- class folders   `{split}/{label}/{clip}.ext`  (crawler, MMAction2)
- flat CVDF       `{split}/{clip}.ext`, labelled through the annotation CSVs
- plain           `{label}/{clip}.ext`           (split "all", or the one given)

Paths that the BAT list format cannot hold (whitespace, shell-hostile
characters) get a view of safe-named symlinks; `safe_name` is the one rule.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from videoprep.errors import EmptySourceError, LayoutError
from videoprep.formats import VIDEO_EXTENSIONS
from videoprep.kinetics import Clip, class_names, find_annotation_files, read_annotations, split_name

log = logging.getLogger(__name__)

SAFE_VIEW_DIRNAME = "_videoprep_safe"
# A folder holding this file is a symlink view we made; discovery never descends into it.
SAFE_VIEW_MARKER = ".videoprep-safe-view"
ANNOTATIONS_DIRNAME = "annotations"
DEFAULT_SPLIT = "all"

_SAFE_CHARS = "A-Za-z0-9._+-"
_UNSAFE_EDGES = re.compile(rf"^[^{_SAFE_CHARS}]+|[^{_SAFE_CHARS}]+$")
_UNSAFE_RUN = re.compile(rf"[^{_SAFE_CHARS}]+")
_SAFE_EXT = re.compile(r"^\.[A-Za-z0-9]{1,8}$")
_SAFE_PATH = re.compile(rf"[{_SAFE_CHARS}]+(?:/[{_SAFE_CHARS}]+)*")  # safe_name is the identity on such components
_CLASS_KEY_DROP = re.compile(r"[^a-z0-9]+")


def safe_name(name: str) -> str:
    """One path component made whitespace- and shell-safe; identity on names already safe.

    Runs of characters outside [A-Za-z0-9._+-] become one '_' (dropped at the
    ends of the stem); the extension is kept:
    `passing American football (in game)` -> `passing_American_football_in_game`.
    """
    stem, ext = os.path.splitext(name)
    if not _SAFE_EXT.match(ext):
        stem, ext = name, ""
    cleaned = _UNSAFE_RUN.sub("_", _UNSAFE_EDGES.sub("", stem))
    return (cleaned or "_") + ext


def printable_path(path: str) -> str:
    """A path as writable UTF-8 text: bytes that are not UTF-8 (kept by os as surrogates) become U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def raw_path(path: str) -> str:
    """'' for a path that is valid UTF-8; else its original bytes percent-encoded (lossless, '/' kept).

    Reports and manifests record non-UTF-8 names this way beside the printable
    form; `urllib.parse.unquote_to_bytes` gives the bytes back.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return urllib.parse.quote_from_bytes(path.encode("utf-8", "surrogateescape"), safe="/")
    return ""


def safe_relpath(relpath: str) -> str:
    """`safe_name` applied to every component of a '/'-separated relative path."""
    return "/".join(safe_name(part) for part in relpath.split("/"))


def is_safe_relpath(relpath: str) -> bool:
    """True when a relative path can be written as-is in a BAT list."""
    return bool(_SAFE_PATH.fullmatch(relpath)) or safe_relpath(relpath) == relpath


def plan_safe_view(relpaths: Iterable[str]) -> dict[str, str]:
    """Map each unsafe relpath to a unique safe relpath inside the view.

    Two originals that clean to the same name both get a short hash of their
    original path appended to the stem, so the plan does not depend on order.
    """
    wanted: dict[str, list[str]] = {}
    for rel in relpaths:
        if not is_safe_relpath(rel):
            wanted.setdefault(safe_relpath(rel), []).append(rel)
    plan: dict[str, str] = {}
    for safe, originals in wanted.items():
        if len(originals) == 1:
            plan[originals[0]] = safe
            continue
        for rel in originals:
            digest = hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest()[:8]
            p = PurePosixPath(safe)
            plan[rel] = str(p.with_name(f"{p.stem}-{digest}{p.suffix}"))
    return plan


def link_safe_view(*, video_root: Path, safe_dir: Path, plan: dict[str, str]) -> dict[str, str]:
    """Create the planned symlinks (relative targets) and return relpath -> list path from the root.

    Links already pointing at the right target are left alone, so re-runs are cheap.
    """
    if not plan:
        return {}
    root = Path(os.path.abspath(video_root))
    view = Path(os.path.abspath(safe_dir))
    prefix = os.path.relpath(view, root).replace(os.sep, "/")
    if not is_safe_relpath(prefix):
        raise LayoutError(
            view, f"the safe view's path from the video root ({prefix!r}) is not whitespace-free"
        )
    view.mkdir(parents=True, exist_ok=True)
    marker = view / SAFE_VIEW_MARKER
    if not marker.exists():
        marker.write_text("symlink view made by `videoprep index`; safe to delete and re-create\n")
    list_paths = {}
    for rel, safe in plan.items():
        link = view / safe
        target = os.path.relpath(root / rel, link.parent)
        if not (os.path.islink(link) and os.readlink(link) == target):
            link.parent.mkdir(parents=True, exist_ok=True)
            tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.replace(tmp, link)
        list_paths[rel] = f"{prefix}/{safe}"
    return list_paths


def find_video_files(video_root: Path, *, skip_dirs: Iterable[Path] = ()) -> list[str]:
    """Sorted '/'-separated relpaths of every video file under the root.

    Skips hidden entries, our symlink views and `skip_dirs`; follows symlinked
    folders once (a loop is visited a single time).
    """
    root = Path(video_root)
    if not root.is_dir():
        raise LayoutError(root, "video root is not a folder")
    skipped = {os.path.realpath(p) for p in skip_dirs}
    seen: set[str] = set()
    found: list[str] = []
    for dirpath, dirnames, filenames in _walk_files(str(root)):
        real = os.path.realpath(dirpath)
        if real in seen or real in skipped or SAFE_VIEW_MARKER in filenames:
            dirnames[:] = []
            continue
        seen.add(real)
        # Real folders before symlinked ones, so a video reachable both ways keeps its real path.
        dirnames[:] = sorted(
            (d for d in dirnames if not d.startswith(".") and d != SAFE_VIEW_DIRNAME),
            key=lambda d: (os.path.islink(os.path.join(dirpath, d)), d),
        )
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in VIDEO_EXTENSIONS:
                continue
            rel = name if rel_dir == "." else os.path.join(rel_dir, name)
            found.append(rel.replace(os.sep, "/"))
    return sorted(found)


def _walk_files(top: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk(top, followlinks=True), top-down and prunable, whose file names are only (links to) regular files.

    The directory entries' types answer that without a stat per regular file
    (os.path.isfile on every name stat'ed each file once more at Kinetics' size).
    """
    stack = [top]
    while stack:
        dirpath = stack.pop()
        try:
            with os.scandir(dirpath) as entries:
                dirnames, filenames = [], []
                for entry in entries:
                    if entry.is_dir():
                        dirnames.append(entry.name)
                    elif entry.is_file() or entry.name == SAFE_VIEW_MARKER:
                        filenames.append(entry.name)
        except OSError:
            continue  # unreadable: skipped, as os.walk does
        yield dirpath, dirnames, filenames
        stack.extend(os.path.join(dirpath, d) for d in reversed(dirnames))


@dataclass(frozen=True)
class VideoFile:
    """One video found on disk: where it is, which split, which class (None: unlabelled, see `note`)."""

    relpath: str
    split: str
    label: str | None
    note: str = ""


@dataclass(frozen=True)
class Layout:
    """Every video under a root with split and label, the class list, and the annotations used."""

    root: Path
    videos: list[VideoFile]
    classes: list[str]
    annotation_files: dict[str, Path] = field(default_factory=dict)
    clips: list[Clip] = field(default_factory=list)

    @property
    def splits(self) -> list[str]:
        """The splits that have at least one video, sorted."""
        return sorted({v.split for v in self.videos})

    def class_index(self) -> dict[str, int]:
        """Class name -> label index (position in the sorted class list)."""
        return {name: i for i, name in enumerate(self.classes)}


def _class_key(name: str) -> str:
    """Loose key so `passing_American_football_in_game` finds `passing American football (in game)`."""
    return _CLASS_KEY_DROP.sub("", name.lower())


def load_annotations(video_root: Path, annotations: Path | None) -> tuple[dict[str, Path], list[Clip]]:
    """Annotation CSVs (split -> file) and their clips: from `annotations`, else `{root}/annotations/`."""
    folder = annotations
    if folder is None:
        auto = Path(video_root) / ANNOTATIONS_DIRNAME
        if not auto.is_dir():
            return {}, []
        try:
            files = find_annotation_files(auto)
        except LayoutError as exc:
            log.warning("ignoring %s: %s", auto, exc.reason)
            return {}, []
    else:
        files = find_annotation_files(folder)
    clips: list[Clip] = []
    for path in files.values():
        clips.extend(read_annotations(path))
    return files, clips


def resolve_layout(
    video_root: Path,
    relpaths: Iterable[str],
    *,
    annotation_files: dict[str, Path] | None = None,
    clips: list[Clip] | None = None,
    split: str | None = None,
) -> Layout:
    """Assign split and label to each relpath (pure: no disk access).

    A first folder named like a split (`train`, `validation`, `val_256`) is the
    split; otherwise the split is `split`, the root's own name if it is one,
    or "all". With `split` and split folders present, only that split is kept.
    """
    clips = clips or []
    if split is not None:
        split = split_name(split) or split
    default_split = split or split_name(Path(video_root).name) or DEFAULT_SPLIT
    placed: list[tuple[str, str, list[str]]] = []
    in_split_folders = False
    for rel in relpaths:
        parts = rel.split("/")
        folder_split = split_name(parts[0]) if len(parts) >= 2 else None
        if folder_split:
            placed.append((rel, folder_split, parts[1:]))
            in_split_folders = True
        else:
            placed.append((rel, default_split, parts))
    # Classes come from every split on disk (or the annotations) before `split` narrows the
    # videos, so lists indexed one split at a time share one class map.
    if clips:
        classes = class_names(clips)
        by_clip = {c.clip_id: c for c in clips}
    else:
        classes = sorted({rest[0] for _, _, rest in placed if len(rest) >= 2})
        by_clip = {}
    if split is not None and in_split_folders:
        placed = [p for p in placed if p[1] == split]
    exact = set(classes)
    loose = {_class_key(name): name for name in classes}

    videos = []
    for rel, video_split, rest in placed:
        folder = rest[0] if len(rest) >= 2 else None
        label, note = _label_for(
            stem=_stem(rel),
            folder=folder,
            by_clip=by_clip,
            exact=exact,
            loose=loose,
            annotated=bool(clips),
            num_classes=len(classes),
        )
        videos.append(VideoFile(relpath=rel, split=video_split, label=label, note=note))
    return Layout(
        root=Path(video_root),
        videos=videos,
        classes=classes,
        annotation_files=dict(annotation_files or {}),
        clips=list(clips),
    )


def _stem(relpath: str) -> str:
    """PurePosixPath(relpath).stem without building a path object (once per video at Kinetics' size)."""
    name = relpath.rpartition("/")[2]
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 else name


def _label_for(
    *,
    stem: str,
    folder: str | None,
    by_clip: dict[str, Clip],
    exact: set[str],
    loose: dict[str, str],
    annotated: bool,
    num_classes: int,
) -> tuple[str | None, str]:
    """(class name, "") for a labelled video, else (None, why not)."""
    clip = by_clip.get(stem)
    if clip is not None and clip.label is not None:
        return clip.label, ""
    if folder is not None:
        if folder in exact:
            return folder, ""
        if _class_key(folder) in loose:
            return loose[_class_key(folder)], ""
        if annotated:
            return None, f"folder {folder!r} is not one of the {num_classes} annotated classes"
    if clip is not None:
        return None, f"no label in the annotations ({clip.split} split)"
    if annotated:
        return None, "clip not in the annotation CSVs"
    return None, "flat layout: pass --annotations to label these clips"


def discover(
    video_root: str | os.PathLike[str],
    *,
    annotations: str | os.PathLike[str] | None = None,
    split: str | None = None,
    skip_dirs: Iterable[Path] = (),
) -> Layout:
    """Find every video under the root and label it (annotations: the given folder or `{root}/annotations/`)."""
    root = Path(video_root)
    files, clips = load_annotations(root, Path(annotations) if annotations is not None else None)
    relpaths = find_video_files(root, skip_dirs=skip_dirs)
    layout = resolve_layout(root, relpaths, annotation_files=files, clips=clips, split=split)
    log.info(
        "%s: %d videos in split(s) %s, %d classes",
        root,
        len(layout.videos),
        ", ".join(layout.splits) or "-",
        len(layout.classes),
    )
    return layout


def missing_clips(layout: Layout) -> list[Clip]:
    """Annotated clips with no file on disk, in the splits present on disk (all splits if none is named)."""
    if not layout.clips:
        return []
    on_disk = {PurePosixPath(v.relpath).stem for v in layout.videos}
    splits = set(layout.splits)
    named = {c.split for c in layout.clips} & splits
    return [c for c in layout.clips if (not named or c.split in named) and c.clip_id not in on_disk]


def require_videos(layout: Layout, *, where: str = "") -> None:
    """Every stage refuses a source without videos the same way (one line, exit 1, nothing written)."""
    if not layout.videos:
        raise EmptySourceError(layout.root, f"no videos found{where} (extensions: {' '.join(VIDEO_EXTENSIONS)})")


# --- the class-folder view of a flat download ------------------------------------


def build_class_view(*, out_dir: Path, split: str, labels: Mapping[str, str | None]) -> int:
    """Symlinks `{out}/by_class/{split}/{label}/{clip}.mp4` -> `{out}/{split}/{clip}.mp4`; return count.

    `{out}/by_class` is then a dataset root in class-folder layout (with
    `annotations` linked), for tools that expect label folders. Unlabelled
    clips (test) are linked directly under `by_class/{split}/`.
    """
    split_dir = out_dir / split
    view_root = out_dir / "by_class"
    made = 0
    if not split_dir.is_dir():
        return 0
    for video in sorted(split_dir.iterdir()):
        if video.name.startswith(".") or not video.is_file() or video.stat().st_size == 0:
            continue
        clip = video.stem
        if clip not in labels:
            continue
        label = labels[clip]
        folder = view_root / split / label if label else view_root / split
        link = folder / video.name
        folder.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(video, folder)
        if link.is_symlink() and os.readlink(link) == target:
            made += 1
            continue
        tmp = folder / f".{video.name}.link.part"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)
        made += 1
    annotations_link = view_root / "annotations"
    if not annotations_link.exists() and (out_dir / "annotations").is_dir():
        view_root.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(out_dir / "annotations", view_root), annotations_link)
    return made


