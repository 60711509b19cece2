"""A wheelhouse for a GPU node without a network: built on a networked machine, installed on the node.

    python -m tools.wheelhouse build --out wheelhouse --python-version 3.12       # make wheelhouse PYVER=3.12
    python3 -m tools.wheelhouse install --wheelhouse wheelhouse --venv .venv-gpu  # make gpu-check WHEELHOUSE=...

The wheelhouse holds one folder per group, each with its own manifest.json (sha256 of every file):
  core        every wheel the project needs minus torch (the node's own CUDA torch is used), pytest included
  torchcodec  a torchcodec wheel per torch release of the table, and FFmpeg's shared libraries from Debian
  dali        NVIDIA DALI and what it needs beyond core
A user may leave out torchcodec and dali. No file is larger than --max-piece-mib: a larger one (DALI's wheel)
is stored as NAME.part000, NAME.part001, ... and `install` reassembles and checks it.

`install` uses the standard library only and never touches the network (pip runs with --no-index): a venv
with --system-site-packages over the Python that runs it, which also sees that Python's own site-packages when
it is itself a venv, so the node's torch is the one used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from videoprep.atomic import atomic_dir, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("core", "torchcodec", "dali")
MANIFEST = "manifest.json"
FFMPEG_ARCHIVE = "ffmpeg-libs.tar.gz"
FFMPEG_DIR = "ffmpeg-libs"  # under the venv; gpu-check puts it first on LD_LIBRARY_PATH
INSTALL_RECORD = "install.json"
DEFAULT_MAX_PIECE_MIB = 60.0
DEFAULT_GLIBC = "2.28"  # manylinux_2_28: RHEL 8 and newer
# What torchcodec loads at run time (Debian 12: FFmpeg 5.1), with their dependency closure.
FFMPEG_PACKAGES = ("libavcodec59", "libavformat59", "libavutil57", "libswscale6", "libswresample4",
                   "libavdevice59", "libavfilter8")
# On every Linux node already, and a copy from elsewhere may be older than what the node's torch needs.
NODE_PACKAGES = ("libc6", "libgcc-s1", "libstdc++6")
CHUNK = 1 << 20


class WheelhouseError(Exception):
    """A wheelhouse or install step that cannot go on; the message names the path, the reason and the fix."""


# --- the manifest -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """One stored file of a wheelhouse group: its name, size and sha256."""

    name: str
    size: int
    sha256: str


@dataclass
class Entry:
    """One file as pip needs it; `pieces` lists the stored parts when it was split."""

    name: str
    size: int
    sha256: str
    pieces: list[Piece] = field(default_factory=list)


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def split_file(path: Path, max_bytes: int) -> list[Piece]:
    """Replace `path` by NAME.part000, NAME.part001, ... of at most max_bytes each."""
    pieces = []
    with open(path, "rb") as src:
        for i in range(-(-path.stat().st_size // max_bytes)):
            piece = path.with_name(f"{path.name}.part{i:03d}")
            with open(piece, "wb") as dst:
                left = max_bytes
                while left and (chunk := src.read(min(CHUNK, left))):
                    dst.write(chunk)
                    left -= len(chunk)
            pieces.append(Piece(piece.name, piece.stat().st_size, sha256_of(piece)))
    path.unlink()
    return pieces


def seal_group(folder: Path, *, max_bytes: int, meta: dict) -> dict:
    """Split what is too large, then write the group's manifest.json; returns it."""
    entries = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        entry = Entry(path.name, path.stat().st_size, sha256_of(path))
        if entry.size > max_bytes:
            entry.pieces = split_file(path, max_bytes)
        entries.append(entry)
    stored = [p.stat().st_size for p in folder.iterdir() if p.is_file()]
    manifest = {"schema": 1, **meta, "files": [asdict(e) for e in entries], "total_bytes": sum(stored),
                "largest_file_bytes": max(stored, default=0), "max_piece_bytes": max_bytes}
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def read_manifest(folder: Path) -> dict:
    """A group's manifest.json, or a WheelhouseError that says what is wrong with it."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WheelhouseError(f"{path}: missing; this folder was not written by `make wheelhouse`") from None
    except (OSError, ValueError) as exc:
        raise WheelhouseError(f"{path}: unreadable ({exc}); copy the group again") from None
    if manifest.get("schema") != 1:
        raise WheelhouseError(f"{path}: schema {manifest.get('schema')!r} is not 1; rebuild with this checkout")
    return manifest


def verified_files(folder: Path, into: Path) -> list[Path]:
    """Every file of a group, checked against its manifest; split files reassembled under `into`."""
    out = []
    for raw in read_manifest(folder)["files"]:
        entry = Entry(**{**raw, "pieces": [Piece(**p) for p in raw["pieces"]]})
        if not entry.pieces:
            out.append(_checked(folder / entry.name, entry.sha256))
            continue
        into.mkdir(parents=True, exist_ok=True)
        whole = into / entry.name
        with open(whole, "wb") as dst:
            for piece in entry.pieces:
                with open(_checked(folder / piece.name, piece.sha256), "rb") as src:
                    shutil.copyfileobj(src, dst, CHUNK)
        out.append(_checked(whole, entry.sha256))
    return out


def _checked(path: Path, sha256: str) -> Path:
    if not path.is_file():
        raise WheelhouseError(f"{path}: missing from its group; copy the whole folder again")
    if sha256_of(path) != sha256:
        raise WheelhouseError(f"{path}: sha256 differs from the manifest (damaged in transfer); copy it again")
    return path


# --- build: wheels --------------------------------------------------------------------------------------------


def manylinux_platforms(glibc: str) -> list[str]:
    """Every manylinux tag for x86_64 up to glibc `glibc` (pip does not expand manylinux_2_x tags itself)."""
    major, minor = (int(x) for x in glibc.split("."))
    return [f"manylinux_{major}_{m}_x86_64" for m in range(minor, 4, -1)] + [
        "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def project_requirements(group: str, torchcodec_table: dict[str, str]) -> list[str]:
    """What a group holds, read from pyproject.toml: core = dependencies minus torch, dev and the build backend."""
    import tomllib  # build side only (Python >= 3.11); `install` stays importable on 3.10

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = meta["project"]["optional-dependencies"]
    if group == "core":
        deps = [d for d in meta["project"]["dependencies"] if re.match(r"torch\b", d) is None]
        return deps + extras["dev"] + meta["build-system"]["requires"]
    if group == "dali":
        return list(extras["dali"])
    return [f"torchcodec=={v}" for v in sorted(set(torchcodec_table.values()))]


def pip_download(requirements: Sequence[str], dest: Path, *, python_version: str, glibc: str,
                 no_deps: bool, log: Path, index_url: str = "") -> None:
    """pip download of binary wheels for the target Python and manylinux x86_64 into dest (from index_url if set)."""
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", python_version,
           "--implementation", "cp", "--dest", str(dest), "--progress-bar", "off"]
    cmd += ["--index-url", index_url] if index_url else []
    cmd += [arg for p in manylinux_platforms(glibc) for arg in ("--platform", p)]
    cmd += ["--no-deps"] * no_deps + list(requirements)
    with open(log, "a", encoding="utf-8") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        run = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if run.returncode != 0:
        raise WheelhouseError(f"pip download failed (exit {run.returncode}) for {', '.join(requirements)}; "
                              f"see {log}")


# --- build: FFmpeg's shared libraries -------------------------------------------------------------------------


def apt_closure(packages: Sequence[str]) -> list[str]:
    """Debian packages `packages` need (Depends, recursively), less what every node has and what holds no library."""
    run = _run_tool(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                     "--no-breaks", "--no-replaces", "--no-enhances", *packages])
    names = {line.strip() for line in run.splitlines() if line and not line[0].isspace() and line[0] != "<"}
    return sorted(n for n in names if n not in NODE_PACKAGES and (n.startswith(("lib", "zlib")) or "-lib" in n))


def _run_tool(cmd: list[str], cwd: Path | None = None) -> str:
    if shutil.which(cmd[0]) is None:
        raise WheelhouseError(f"{cmd[0]}: not found; the torchcodec group takes FFmpeg's libraries from Debian's "
                              "packages: build it on Debian 12, or leave the group out (--groups core dali)")
    run = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise WheelhouseError(f"{' '.join(cmd[:3])} ... failed (exit {run.returncode}): {run.stderr.strip()[-400:]}")
    return run.stdout


def collect_libraries(extracted: Path, into: Path) -> list[str]:
    """Shared libraries of the unpacked packages, flat in `into`, symlinks kept; libblas-like subfolders hoisted."""
    into.mkdir(parents=True, exist_ok=True)
    tops = [extracted / d / "x86_64-linux-gnu" for d in ("lib", "usr/lib")]
    nested = []
    for top in (t for t in tops if t.is_dir()):
        for path in sorted(top.iterdir()):
            if ".so" in path.name and (path.is_file() or path.is_symlink()):
                _copy_keeping_link(path, into / path.name)
        nested += sorted(p for p in top.glob("*/lib*.so*") if p.is_file())
    for path in nested:  # e.g. blas/libblas.so.3, put in place by update-alternatives on a real system
        if not (into / path.name).exists():
            shutil.copy2(path, into / path.name)
    return sorted(p.name for p in into.iterdir())


def _copy_keeping_link(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        return
    if src.is_symlink():
        os.symlink(Path(os.readlink(src)).name, dst)
    else:
        shutil.copy2(src, dst)


def check_and_prune(libdir: Path) -> dict:
    """Prove the carried libraries complete, then keep only what FFmpeg's libraries load.

    With `libdir` first on the search path, ldd must resolve every library FFmpeg's need (recursively) to
    one in `libdir` or to the C/C++ runtime every node has (glibc, libstdc++, libgcc_s); the rest is removed.
    """
    runtime = {Path(line).name for line in _run_tool(["dpkg", "-L", *NODE_PACKAGES]).splitlines() if ".so" in line}
    env = {**os.environ, "LD_LIBRARY_PATH": str(libdir)}
    problems, used = [], set()
    for lib in sorted(p for p in libdir.glob("lib[as][vw]*.so.*") if not p.is_symlink()):
        used.add(lib.name)
        ldd = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, env=env, check=False).stdout
        for name, where in re.findall(r"^\s*(\S+) => (\S+)", ldd, flags=re.M):
            if Path(where).parent == libdir:
                used |= {name, Path(os.path.realpath(libdir / name)).name}
            elif where == "not" or name not in runtime:
                problems.append(f"{lib.name} needs {name} ({where})")
    if problems:
        raise WheelhouseError(f"FFmpeg libraries incomplete: {'; '.join(sorted(set(problems))[:5])}")
    for path in libdir.iterdir():
        if path.name not in used and Path(os.path.realpath(path)).name not in used:
            path.unlink()
    glibc = max((int(v) for p in libdir.iterdir() if p.is_file() and not p.is_symlink()
                 for v in re.findall(rb"GLIBC_2\.(\d+)", p.read_bytes())), default=0)
    return {"glibc_required": f"2.{glibc}", "libraries": len(list(libdir.iterdir()))}


def ffmpeg_archive(group_dir: Path, work: Path, *, packages: Sequence[str]) -> dict:
    """FFmpeg's shared libraries and their closure from Debian's packages, as one tar.gz; what went in."""
    debs = work / "debs"
    debs.mkdir()
    closure = apt_closure(packages)
    _run_tool(["apt-get", "download", "-q", *closure], cwd=debs)
    extracted = work / "root"
    for deb in sorted(debs.glob("*.deb")):
        _run_tool(["dpkg-deb", "-x", str(deb), str(extracted)])
    libdir = work / FFMPEG_DIR
    collect_libraries(extracted, libdir)
    checked = check_and_prune(libdir)
    with tarfile.open(group_dir / FFMPEG_ARCHIVE, "w:gz") as tar:
        tar.add(libdir, arcname=FFMPEG_DIR)
    source = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").is_file() else "?"
    return {"ffmpeg": {"archive": FFMPEG_ARCHIVE, "debian": source, "packages": sorted(d.name for d in
            debs.glob("*.deb")), **checked}}


# --- build ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildConfig:
    """What `build` writes: for which Python and glibc, which groups, the piece size, the torchcodec table."""

    out: Path
    python_version: str
    glibc: str = DEFAULT_GLIBC
    groups: tuple[str, ...] = GROUPS
    max_piece_bytes: int = int(DEFAULT_MAX_PIECE_MIB * CHUNK)
    torchcodec_table: dict[str, str] = field(default_factory=dict)
    only: tuple[str, ...] = ()  # these requirements instead of each group's own (tests; topping up)
    ffmpeg: bool = True
    torchcodec_index: str = ""  # e.g. PyTorch's CUDA wheel index: PyPI's torchcodec decodes on CPU only


def build_group(config: BuildConfig, group: str, folder: Path, work: Path) -> dict:
    """Download one group into `folder` (a fresh temp folder) and seal it; returns its manifest."""
    log = config.out / f"{group}.log"
    reqs = list(config.only) or project_requirements(group, config.torchcodec_table)
    # One release per call for torchcodec: pip resolves a call's requirements together, as one environment.
    for batch in [[r] for r in reqs] if group == "torchcodec" else [reqs]:
        pip_download(batch, folder, python_version=config.python_version, glibc=config.glibc,
                     no_deps=group == "torchcodec", log=log,
                     index_url=config.torchcodec_index if group == "torchcodec" else "")
    meta: dict = {"group": group, "python_version": config.python_version, "glibc_max": config.glibc,
                  "requirements": reqs, "built": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    if group == "dali" and (config.out / "core").is_dir():  # what core already carries stays there
        core = {e["name"] for e in read_manifest(config.out / "core")["files"]}
        for path in folder.iterdir():
            if path.name in core:
                path.unlink()
    if group == "torchcodec":
        meta["torchcodec_for_torch"] = config.torchcodec_table
        meta["torchcodec_index"] = config.torchcodec_index or "PyPI (CPU builds)"
        if config.ffmpeg:
            meta |= ffmpeg_archive(folder, work, packages=FFMPEG_PACKAGES)
    return seal_group(folder, max_bytes=config.max_piece_bytes, meta=meta)


def build(config: BuildConfig) -> dict[str, dict]:
    """Every group of the config, each replacing its folder whole only when complete."""
    config.out.mkdir(parents=True, exist_ok=True)
    manifests = {}
    for group in sorted(config.groups, key=GROUPS.index):  # core first: dali leaves out what core holds
        with atomic_dir(config.out / group) as folder, tempfile.TemporaryDirectory(dir=config.out) as work:
            manifests[group] = build_group(config, group, folder, Path(work))
        m = manifests[group]
        print(f"{group}: {len(m['files'])} files, {m['total_bytes'] / CHUNK:.1f} MiB, largest stored file "
              f"{m['largest_file_bytes'] / CHUNK:.1f} MiB", file=sys.stderr)
    if (config.out / "core").is_dir():
        print(check_resolves(config.out), file=sys.stderr)
    return manifests


def check_resolves(wheelhouse: Path) -> str:
    """Resolve core's and dali's requirements from the wheelhouse alone, for its target Python (pip --dry-run)."""
    core = read_manifest(wheelhouse / "core")
    present = [g for g in GROUPS if (wheelhouse / g).is_dir() and g != "torchcodec"]
    reqs = [r for g in present for r in read_manifest(wheelhouse / g)["requirements"]]
    with tempfile.TemporaryDirectory(dir=wheelhouse) as tmp:
        for group in present:
            verified_files(wheelhouse / group, Path(tmp, group))
        links = [wheelhouse / g for g in present] + [Path(tmp, g) for g in present if Path(tmp, g).is_dir()]
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index",
               "--only-binary=:all:", "--python-version", core["python_version"], "--implementation", "cp",
               "--target", str(Path(tmp, "target")), "--quiet"]
        cmd += [a for p in manylinux_platforms(core["glibc_max"]) for a in ("--platform", p)]
        cmd += [a for d in links for a in ("--find-links", str(d))] + reqs
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise WheelhouseError(f"{wheelhouse}: {', '.join(present)} do not resolve for Python "
                              f"{core['python_version']} without an index: {run.stderr.strip()[-500:]}")
    return f"{', '.join(present)}: {len(reqs)} requirements resolve for Python {core['python_version']} offline"


# --- install (standard library only: runs on the node's Python) ----------------------------------------------


def parse_table(text: str) -> dict[str, str]:
    """'2.13=0.13.0 2.11=0.11.1' -> {'2.13': '0.13.0', '2.11': '0.11.1'} (the Makefile's TORCHCODEC_FOR_TORCH)."""
    pairs = [item.split("=", 1) for item in text.split()]
    if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
        raise WheelhouseError(f"torchcodec table {text!r}: expected TORCH_MINOR=TORCHCODEC pairs, e.g. 2.13=0.13.0")
    return dict(pairs)


@dataclass
class InstallRecord:
    """What `install` did, for the report: seconds, torch found, groups installed or why not, the FFmpeg dir."""

    wheelhouse: str
    venv: str
    seconds: float = 0.0
    torch: str = ""
    groups: dict[str, str] = field(default_factory=dict)  # group -> "installed ..." or why it was not
    ffmpeg_libs: str = ""


def make_venv(venv: Path) -> Path:
    """A venv over this Python with --system-site-packages; a .pth adds this Python's site-packages if it is a venv."""
    import site
    import venv as venv_module

    venv_module.EnvBuilder(system_site_packages=True, with_pip=True, clear=True).create(venv)
    python = venv / "bin" / "python"
    if sys.prefix != sys.base_prefix:  # a venv's packages are not "system" ones for a venv made over it
        purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        Path(purelib, "_over_parent_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def torch_version(python: Path) -> str:
    """The torch the venv sees (the node's own), or a WheelhouseError naming the Python to use instead."""
    run = subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"], capture_output=True,
                         text=True, check=False)
    if run.returncode != 0:
        tail = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise WheelhouseError(f"{sys.executable}: torch does not import ({tail}); pass PYTHON=the Python that holds "
                              "the node's CUDA torch")
    return run.stdout.strip()


def pip_install(python: Path, args: Sequence[str], *, find_links: Iterable[Path], log: Path) -> None:
    """pip install --no-index from the given folders only; a failure names the log."""
    cmd = [str(python), "-m", "pip", "install", "--no-index", "--disable-pip-version-check", "--no-input"]
    cmd += [arg for d in find_links for arg in ("--find-links", str(d))] + list(args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # a node's pip.conf may name an index or constraints it cannot reach
    with open(log, "a", encoding="utf-8") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        run = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if run.returncode != 0:
        raise WheelhouseError(f"pip install {' '.join(args)} failed (exit {run.returncode}) from the wheelhouse; "
                              f"see {log}")


def torchcodec_for(torch: str, table: dict[str, str]) -> str | None:
    """The torchcodec release built for this torch's minor version, or None."""
    minor = ".".join(torch.split("+")[0].split(".")[:2])
    return table.get(minor)


def install(wheelhouse: Path, venv: Path, *, table: dict[str, str]) -> InstallRecord:
    """The project and every group present in the wheelhouse into a new venv over this Python; no network.

    Every file is checked against its group's manifest (and split ones reassembled) before anything is made.
    """
    start = time.perf_counter()
    if not (wheelhouse / "core").is_dir():
        raise WheelhouseError(f"{wheelhouse}: no core/ group; build one with `make wheelhouse` on a networked "
                              "machine and copy it here")
    present = [g for g in GROUPS if (wheelhouse / g).is_dir()]
    venv.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=venv.parent, prefix=f".{venv.name}.wheels-") as tmp:
        staging = Path(tmp)
        files = {g: verified_files(wheelhouse / g, staging / g) for g in present}
        links = [wheelhouse / g for g in present] + [staging / g for g in present if (staging / g).is_dir()]
        record = InstallRecord(str(wheelhouse), str(venv))
        python = make_venv(venv)
        record.torch = torch_version(python)
        log = venv / "install.log"
        extras = "dev,dali" if "dali" in present else "dev"
        pip_install(python, ["-e", f"{ROOT}[{extras}]"], find_links=links, log=log)
        record.groups = {g: "not in the wheelhouse" for g in GROUPS} | {"core": "installed"}
        if "dali" in present:
            record.groups["dali"] = "installed"
        if "torchcodec" in present:
            archive = next((f for f in files["torchcodec"] if f.name == FFMPEG_ARCHIVE), None)
            record.groups["torchcodec"] = _install_torchcodec(python, record, archive, links, table, log)
    record.seconds = round(time.perf_counter() - start, 1)
    atomic_write_json(venv / INSTALL_RECORD, asdict(record))
    return record


def _install_torchcodec(python: Path, record: InstallRecord, archive: Path | None, links: list[Path],
                        table: dict[str, str], log: Path) -> str:
    """torchcodec for the torch found, and FFmpeg's libraries unpacked into VENV/ffmpeg-libs."""
    # The table given (the Makefile's), else the one the wheelhouse was built with
    table = table or read_manifest(Path(record.wheelhouse) / "torchcodec").get("torchcodec_for_torch", {})
    version = torchcodec_for(record.torch, table)
    if version is None:
        return f"no torchcodec release for torch {record.torch} in the table {table}: add one (TORCHCODEC_FOR_TORCH)"
    pip_install(python, ["--no-deps", f"torchcodec=={version}"], find_links=links, log=log)
    if archive is None:
        return f"installed torchcodec {version} for torch {record.torch}; no {FFMPEG_ARCHIVE}: uses the node's FFmpeg"
    with tarfile.open(archive) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python < 3.10.12 has no filters
        tar.extractall(record.venv, **safe)
    record.ffmpeg_libs = str(Path(record.venv) / FFMPEG_DIR)
    return f"installed torchcodec {version} for torch {record.torch}, FFmpeg libraries in {record.ffmpeg_libs}"


# --- command line -----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.wheelhouse", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="download every wheel (minus torch) and FFmpeg's libraries for a node")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}")
    b.add_argument("--glibc", default=DEFAULT_GLIBC, help="newest manylinux glibc the node has (default 2.28)")
    b.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS))
    b.add_argument("--max-piece-mib", type=float, default=DEFAULT_MAX_PIECE_MIB)
    b.add_argument("--only", nargs="+", default=[], help="these requirements instead of each group's own")
    b.add_argument("--no-ffmpeg", action="store_true", help="leave FFmpeg's libraries out of the torchcodec group")
    b.add_argument("--torchcodec-table", default="", help="TORCH_MINOR=TORCHCODEC pairs (the Makefile's "
                   "TORCHCODEC_FOR_TORCH); needed for the torchcodec group")
    b.add_argument("--torchcodec-index", default="", help="index for torchcodec's wheels, e.g. "
                   "https://download.pytorch.org/whl/cu130 for CUDA builds (default PyPI: CPU builds)")
    c = sub.add_parser("check", help="every file against its manifest; the groups resolve offline for their Python")
    c.add_argument("--wheelhouse", type=Path, required=True)
    i = sub.add_parser("install", help="a venv over this Python from the wheelhouse, without a network")
    i.add_argument("--wheelhouse", type=Path, required=True)
    i.add_argument("--venv", type=Path, required=True)
    i.add_argument("--torchcodec-table", default="", help="as for build (default: the one the wheelhouse was "
                   "built with)")
    args = parser.parse_args(argv)
    try:
        table = parse_table(getattr(args, "torchcodec_table", ""))
    except WheelhouseError as exc:
        print(f"wheelhouse: --torchcodec-table: {exc}", file=sys.stderr)
        return 2
    if args.command == "build" and "torchcodec" in args.groups and not (table or args.only):
        print("wheelhouse: --torchcodec-table: needed for the torchcodec group (make wheelhouse passes "
              "TORCHCODEC_FOR_TORCH)", file=sys.stderr)
        return 2
    try:
        if args.command == "check":
            print(check_resolves(args.wheelhouse.resolve()), file=sys.stderr)
        elif args.command == "build":
            if args.max_piece_mib <= 0:
                parser.error(f"--max-piece-mib {args.max_piece_mib}: must be > 0")
            build(BuildConfig(args.out.resolve(), args.python_version, args.glibc, tuple(args.groups),
                              int(args.max_piece_mib * CHUNK), table, tuple(args.only), not args.no_ffmpeg,
                              args.torchcodec_index))
        else:
            record = install(args.wheelhouse.resolve(), args.venv.resolve(), table=table)
            print(f"installed from {record.wheelhouse} in {record.seconds:.0f} s over torch {record.torch}: "
                  + "; ".join(f"{g}: {s}" for g, s in record.groups.items()), file=sys.stderr)
    except WheelhouseError as exc:
        print(f"wheelhouse: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
