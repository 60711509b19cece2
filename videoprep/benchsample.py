"""Build the benchmark's file sets: the same clips in several encodings, with a BAT list per encoding.

The sample comes from the user's own videos (a BAT list or a folder) or from
generated footage (ffmpeg lavfi sources with texture and motion), so users
see what a transcode buys before they transcode 400 GB.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from videoprep.atomic import atomic_path, atomic_write_json
from videoprep.errors import PathError, VideoprepError
from videoprep.ffmpeg import run_ffmpeg
from videoprep.parallel import default_jobs
from videoprep.probe import VIDEO_EXTENSIONS, probe_video
from videoprep.progress import ProgressFn, no_progress
from videoprep.records import ListRecord, read_list, write_list

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoding:
    """One way to store the sample: ffmpeg output arguments, container, and what the codec allows."""

    name: str
    description: str
    args: tuple[str, ...]
    container: str  # ffmpeg muxer name; "frames" = a folder of img_{:05d}.jpg (0-based)
    suffix: str
    codec: str
    intra_only: bool
    gop: int | None = None


_X264 = ("-c:v", "libx264", "-preset", "medium", "-crf", "23", "-pix_fmt", "yuv420p")

# Every encoding the bench knows; DEFAULT_ENCODINGS is what --generate builds.
ENCODINGS: dict[str, Encoding] = {
    e.name: e
    for e in (
        Encoding("h264_gop250", "H.264 crf 23, GOP 250 (x264 default, as downloaded)",
                 (*_X264, "-g", "250"), "mp4", ".mp4", "h264", False, 250),
        Encoding("h264_gop16", "H.264 crf 23, GOP 16",
                 (*_X264, "-g", "16", "-keyint_min", "16"), "mp4", ".mp4", "h264", False, 16),
        Encoding("h264_gop16_nob", "H.264 crf 23, GOP 16, no B-frames",
                 (*_X264, "-g", "16", "-keyint_min", "16", "-bf", "0"), "mp4", ".mp4", "h264", False, 16),
        Encoding("h264_gop16_fastdecode", "H.264 crf 23, GOP 16, -tune fastdecode (no CABAC/deblock/B)",
                 (*_X264, "-g", "16", "-keyint_min", "16", "-tune", "fastdecode"), "mp4", ".mp4", "h264",
                 False, 16),
        Encoding("h264_gop8", "H.264 crf 23, GOP 8",
                 (*_X264, "-g", "8", "-keyint_min", "8"), "mp4", ".mp4", "h264", False, 8),
        Encoding("mjpeg", "MJPEG q 3 (intra-only)",
                 ("-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p"), "avi", ".avi", "mjpeg", True, 1),
        Encoding("vp9", "VP9 crf 32, GOP 16 (DALI decodes it on CPU)",
                 ("-c:v", "libvpx-vp9", "-crf", "32", "-b:v", "0", "-g", "16", "-deadline", "realtime",
                  "-cpu-used", "8", "-row-mt", "1", "-pix_fmt", "yuv420p"), "webm", ".webm", "vp9", False, 16),
        Encoding("jpeg", "JPEG frame folders q 3 (img_00000.jpg...)",
                 ("-q:v", "3"), "frames", "", "mjpeg", True, 1),
    )
}
DEFAULT_ENCODINGS: tuple[str, ...] = ("h264_gop250", "h264_gop16", "mjpeg", "vp9", "jpeg")

# Generated footage: lavfi sources with fine texture, motion and colour change (340x256 by default).
# Sizes at crf 23 GOP 250 span ~0.2-1.1 MB per 10 s, around real 256p footage (~0.5 MB).
_SOURCES: tuple[str, ...] = (
    "mandelbrot=size={w}x{h}:rate={fps}:start_scale={scale}",
    "testsrc2=size={w}x{h}:rate={fps},noise=alls=3:allf=t:all_seed={seed}",
    "cellauto=size={w}x{h}:rate={fps}:rule=110:seed={seed},gblur=sigma=1.5,hue=h=t*20",
    "life=size={w}x{h}:rate={fps}:seed={seed}:mold=10:death_color=#303050:life_color=#D0C080,"
    "gblur=sigma=1,noise=alls=2:allf=t:all_seed={seed}",
)


@dataclass(frozen=True)
class SampleConfig:
    """Where to build the sample, from what, and in which encodings."""

    out_dir: Path
    sources: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] | None = None  # list, folder or None
    root_path: str = ""  # joined to the paths of a source list
    num_videos: int = 4
    duration_s: float = 10.0
    width: int = 340  # generated footage only
    height: int = 256
    fps: int = 30
    short_side: int = 256  # user videos are scaled to this short side (0 keeps their size)
    encodings: tuple[str, ...] = DEFAULT_ENCODINGS
    jobs: int | None = None


@dataclass
class EncodedSet:
    """One encoding of the sample: its BAT list, and size per second of video."""

    name: str
    description: str
    list_file: str
    root_path: str
    kind: str  # "video" or "frames"
    codec: str
    intra_only: bool
    gop: int | None
    videos: int
    total_bytes: int
    duration_s: float
    bytes_per_s: float
    width: int
    height: int
    fps: float
    max_gop: int | None = None
    keyframes: int | None = None

    def as_dict(self) -> dict:
        """Plain dict for the JSON report."""
        return asdict(self)


@dataclass
class SampleResult:
    """The file sets built (by encoding name) and whether an earlier finished sample was reused."""

    out_dir: Path
    sets: dict[str, EncodedSet] = field(default_factory=dict)
    reused: bool = False


def check_encodings(names: Sequence[str]) -> tuple[str, ...]:
    """Validate encoding names against ENCODINGS, listing the valid ones on a bad one."""
    bad = [n for n in names if n not in ENCODINGS]
    if bad:
        raise VideoprepError(f"unknown encoding(s) {', '.join(bad)}: valid are {', '.join(ENCODINGS)}")
    return tuple(names)


def find_source_videos(source: str | os.PathLike[str], *, root_path: str = "", limit: int) -> list[Path]:
    """Up to `limit` videos from a BAT list file or a folder (sorted, searched recursively)."""
    src = Path(source)
    if src.is_dir():
        found = sorted(p for p in src.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    elif src.is_file():
        found = [Path(root_path) / rec.path for rec in read_list(src)]
    else:
        raise PathError(src, "neither a list file nor a folder")
    if not found:
        raise PathError(src, "no videos found")
    # Spread the picks over the whole list rather than its first class.
    step = max(1, len(found) // limit)
    return found[::step][:limit]


def _input_args(config: SampleConfig, index: int, source: Path | None) -> list[str]:
    """ffmpeg input (and filter) arguments for sample video `index`."""
    if source is None:
        template = _SOURCES[index % len(_SOURCES)]
        graph = template.format(
            w=config.width, h=config.height, fps=config.fps, seed=1000 + index, scale=3.0 / (1 + index // 4),
        )
        return ["-f", "lavfi", "-i", graph, "-t", f"{config.duration_s:g}"]
    args = ["-i", str(source), "-t", f"{config.duration_s:g}", "-an"]
    if config.short_side:
        s = config.short_side
        args += ["-vf", f"scale='if(gt(iw,ih),-2,{s})':'if(gt(iw,ih),{s},-2)'"]
    return args


def _encode_one(config: SampleConfig, encoding: Encoding, index: int, source: Path | None) -> Path:
    """Encode sample video `index` in `encoding`; the output appears only when ffmpeg succeeded."""
    name = f"vid{index:03d}"
    out_dir = Path(config.out_dir) / encoding.name
    out_dir.mkdir(parents=True, exist_ok=True)
    if encoding.container == "frames":
        final = out_dir / name
        if final.is_dir():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".part", dir=out_dir))
        try:
            run_ffmpeg([*_input_args(config, index, source), "-an", *encoding.args, "-start_number", "0",
                        str(tmp / "img_%05d.jpg")], target=str(final))
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return final
    final = out_dir / f"{name}{encoding.suffix}"
    if final.is_file():
        return final
    with atomic_path(final) as tmp:
        run_ffmpeg([*_input_args(config, index, source), "-an", *encoding.args, "-f", encoding.container,
                    "-y", str(tmp)], target=str(final))
    return final


def _describe_set(config: SampleConfig, encoding: Encoding, outputs: list[Path]) -> EncodedSet:
    """Probe the outputs, write the encoding's BAT list, and sum sizes and durations."""
    root = Path(config.out_dir)
    records, total_bytes, duration, infos = [], 0, 0.0, []
    for out in outputs:
        if encoding.container == "frames":
            files = sorted(out.glob("img_*.jpg"))
            if not files:
                raise PathError(out, "ffmpeg wrote no frames")
            total_bytes += sum(f.stat().st_size for f in files)
            duration += len(files) / config.fps
            records.append(ListRecord(path=out.relative_to(root).as_posix(), frame_num=len(files), label=0))
            continue
        info = probe_video(out)
        infos.append(info)
        total_bytes += info.size_bytes
        duration += info.duration_s
        records.append(ListRecord(path=out.relative_to(root).as_posix(), frame_num=info.frames, label=0))
    list_file = root / f"{encoding.name}.txt"
    write_list(list_file, records)
    first = infos[0] if infos else None
    return EncodedSet(
        name=encoding.name, description=encoding.description, list_file=str(list_file), root_path=str(root),
        kind="frames" if encoding.container == "frames" else "video", codec=encoding.codec,
        intra_only=encoding.intra_only, gop=encoding.gop, videos=len(records), total_bytes=total_bytes,
        duration_s=round(duration, 3), bytes_per_s=round(total_bytes / duration, 1) if duration else 0.0,
        width=first.width if first else config.width, height=first.height if first else config.height,
        fps=first.fps if first else float(config.fps),
        max_gop=max(i.max_gop for i in infos) if infos else None,
        keyframes=sum(i.keyframes for i in infos) if infos else None,
    )


def _fingerprint(config: SampleConfig, sources: list[Path] | None) -> dict:
    """What decides the sample's content: a finished sample with the same one is reused."""
    return {
        "sources": [str(s) for s in sources] if sources else None,
        "num_videos": config.num_videos, "duration_s": config.duration_s, "width": config.width,
        "height": config.height, "fps": config.fps, "short_side": config.short_side,
        "generators": list(_SOURCES) if not sources else None,
        "encodings": {n: list(ENCODINGS[n].args) for n in config.encodings},
    }


def make_sample(config: SampleConfig, *, on_progress: ProgressFn = no_progress) -> SampleResult:
    """Encode the sample in every requested encoding (in parallel) and write one BAT list per encoding.

    A finished sample (its `sample.json` written last) with the same settings
    is reused as it is; encodes already on disk are kept.
    """
    encodings = [ENCODINGS[n] for n in check_encodings(config.encodings)]
    if config.num_videos < 1:
        raise VideoprepError(f"num_videos ({config.num_videos}) must be >= 1")
    out = Path(config.out_dir)
    sources: list[Path] | None = None
    if config.sources:
        if isinstance(config.sources, (str, os.PathLike)):
            sources = find_source_videos(config.sources, root_path=config.root_path, limit=config.num_videos)
        else:
            sources = [Path(s) for s in config.sources][: config.num_videos]
    count = len(sources) if sources else config.num_videos
    fingerprint = _fingerprint(config, sources)
    record = out / "sample.json"
    if record.is_file():
        try:
            done = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("%s: unreadable (%s); rebuilding the sample", record, exc)
            done = {}
        if done.get("fingerprint") == fingerprint:
            sets = {n: EncodedSet(**done["sets"][n]) for n in config.encodings}
            if all(Path(s.list_file).is_file() for s in sets.values()):
                log.info("reusing the finished sample in %s", out)
                return SampleResult(out_dir=out, sets=sets, reused=True)
        record.unlink()
    jobs = [(enc, i) for enc in encodings for i in range(count)]
    outputs: dict[str, dict[int, Path]] = {enc.name: {} for enc in encodings}
    workers = max(1, min(config.jobs or default_jobs(), len(jobs)))
    # ffmpeg does the work in its own process; threads only wait on it.
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            pool.submit(_encode_one, config, enc, i, sources[i] if sources else None): (enc, i) for enc, i in jobs
        }
        for done_count, future in enumerate(concurrent.futures.as_completed(futures), start=1):
            enc, i = futures[future]
            outputs[enc.name][i] = future.result()  # an encode failure fails the sample: it must be complete
            on_progress(done_count, len(jobs))
    sets = {
        enc.name: _describe_set(config, enc, [outputs[enc.name][i] for i in range(count)]) for enc in encodings
    }
    atomic_write_json(record, {"fingerprint": fingerprint, "sets": {n: s.as_dict() for n, s in sets.items()}})
    return SampleResult(out_dir=out, sets=sets)


def describe_list(
    list_file: str | os.PathLike[str], *, root_path: str = "", probe_limit: int = 16, name: str | None = None,
) -> EncodedSet:
    """Describe a user's BAT list as a file set (codec, GOP, bytes per second) by probing a few entries."""
    records = read_list(list_file)
    picked = records[:: max(1, len(records) // probe_limit)][:probe_limit]
    paths = [Path(root_path) / rec.path for rec in picked]
    label = name or Path(list_file).stem
    if all(p.is_dir() for p in paths):
        files = [f for p in paths for f in sorted(p.glob("img_*.jpg"))]
        frames = sum(rec.frame_num for rec in picked)
        size = sum(f.stat().st_size for f in files)
        duration = frames / 30.0  # frame folders carry no rate; 30 fps assumed for bytes per second
        return EncodedSet(
            name=label, description=f"frame folders from {list_file} (30 fps assumed)", list_file=str(list_file),
            root_path=root_path, kind="frames", codec="mjpeg", intra_only=True, gop=1, videos=len(records),
            total_bytes=size, duration_s=round(duration, 3), bytes_per_s=round(size / duration, 1) if duration else 0.0,
            width=0, height=0, fps=30.0,
        )
    infos = [probe_video(p) for p in paths]
    codecs = sorted({i.codec for i in infos})
    try:
        import av

        intra = all(av.codec.Codec(c, "r").intra_only for c in codecs)
    except Exception as exc:  # an unknown decoder name: assume inter (the conservative guess)
        log.warning("cannot tell whether %s is intra-only: %s", codecs, exc)
        intra = False
    size = sum(i.size_bytes for i in infos)
    duration = sum(i.duration_s for i in infos)
    max_gop = max(i.max_gop for i in infos)
    return EncodedSet(
        name=label, description=f"{'/'.join(codecs)} from {list_file} (max GOP {max_gop}, {len(infos)} probed)",
        list_file=str(list_file), root_path=root_path, kind="video", codec="/".join(codecs), intra_only=intra,
        gop=max_gop, videos=len(records), total_bytes=size, duration_s=round(duration, 3),
        bytes_per_s=round(size / duration, 1) if duration else 0.0, width=infos[0].width, height=infos[0].height,
        fps=infos[0].fps, max_gop=max_gop, keyframes=sum(i.keyframes for i in infos),
    )
