"""GPU proof kit: one command that proves every GPU path of the toolkit on the first machine that has one.

    make gpu-check                                   # = .venv/bin/python benchmarks/gpu_check.py --out gpu-check
    python3 benchmarks/gpu_check.py --out gpu-check  # with a Python that already has a CUDA torch
    .venv/bin/python benchmarks/gpu_check.py --only dali_gpu transcode_gpu

On a CUDA machine, on generated data, within --budget seconds (default 480) in all:
  1. gpu_tests          every `gpu`-marked test (pytest -m gpu)
  2. dali_gpu           DALI on NVDEC vs the pyav reader, same indices: H.264 GOP 16, GOP 250, HEVC
  3. torchcodec_cuda    torchcodec's VideoDecoder(device="cuda") the same way, when installed
  4. transcode_gpu      `videoprep transcode --hwaccel cuda`, x264 and nvenc: videos/s vs the CPU path
  5. train_throughput   c2d_resnet50 3-D BAT, 8x8 clips, 224 px, batch 16: official setup vs ours, data wait
  6. bench_gpu          `videoprep bench` with the GPU backends
and on any machine: transcode_args (the ffmpeg arguments each path builds), refusals (the NVDEC/NVENC
probes and the one-line refusals without a GPU), dali_cpu_vp9 (DALI on CPU vs pyav on VP9), torchcodec_cpu
(torchcodec on CPU vs pyav: the FFmpeg libraries it loads work).

On a GPU node without a network: `make gpu-check PYTHON=python3 WHEELHOUSE=DIR` installs from a wheelhouse
(tools/wheelhouse.py) first and passes --install-record, so the report has the install time on a line of its own.

Each part runs in its own process under its own time limit; a part that fails or times
out is recorded and the kit goes on. Writes OUT/report.json and OUT/report.md (machine,
driver, versions, every figure, every skipped part with its reason). Exit status 1 when
a part failed, else 0 (also on a machine without a GPU, where the GPU parts are skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import ROOT, machine_record
from _gpu_common import missing_modules, missing_reason
from _gpu_parts import PARTS, PartFailed, Skip

from videoprep.atomic import atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class PartSpec:
    """One part of the kit: what it proves, what it needs (torch on CUDA, an NVIDIA GPU, nothing), its limit."""

    name: str
    title: str
    needs: str  # "cuda": torch sees a CUDA GPU; "nvidia": a /dev/nvidia* node (ffmpeg alone); "": any machine
    timeout_s: float
    modules: tuple[str, ...] = ()  # what it imports beyond the project: a missing one names its wheel and group


# In the order, then the parts any machine runs. Limits sum past the budget on purpose:
# each part gets min(its limit, what is left of the budget).
SPECS: tuple[PartSpec, ...] = (
    PartSpec("gpu_tests", "every gpu-marked test", "cuda", 75, ("pytest", "av")),
    PartSpec("dali_gpu", "DALI on NVDEC vs pyav (H.264 GOP 16, GOP 250, HEVC)", "cuda", 50, ("av", "nvidia.dali")),
    PartSpec("torchcodec_cuda", "torchcodec on CUDA vs pyav", "cuda", 35, ("av", "torchcodec")),
    PartSpec("transcode_gpu", "videoprep transcode --hwaccel cuda, x264 and nvenc, vs CPU", "nvidia", 70, ("av",)),
    PartSpec("train_throughput", "training clips/s per GPU: official setup vs ours, data wait", "cuda", 170,
             ("av",)),
    PartSpec("bench_gpu", "videoprep bench with the GPU backends", "cuda", 60, ("av", "nvidia.dali")),
    PartSpec("transcode_args", "the ffmpeg arguments of each transcode path", "", 20),
    PartSpec("refusals", "NVDEC/NVENC probes; one-line refusals without a GPU", "", 30, ("av",)),
    PartSpec("dali_cpu_vp9", "DALI on CPU vs pyav on VP9", "", 45, ("av", "nvidia.dali")),
    PartSpec("torchcodec_cpu", "torchcodec on CPU vs pyav (its FFmpeg libraries load)", "", 30, ("av", "torchcodec")),
)
DEFAULT_BUDGET_S = 480.0
MIN_PART_S = 5.0  # a part is not started with less than this left of the budget


@dataclass
class PartResult:
    """How one part ended: ok, failed or skipped, why, its figures and its wall time."""

    name: str
    title: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)


# --- the machine ----------------------------------------------------------------------------------


def _command_output(cmd: list[str]) -> str | None:
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return run.stdout.strip() if run.returncode == 0 else None


def _version(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except ImportError:
        return None
    except Exception as exc:  # installed but broken: worth recording, never fatal
        return f"unloadable: {type(exc).__name__}: {exc}"


def gpu_status(needs: str = "cuda") -> tuple[bool, str]:
    """(this machine has what a part needs, why not): torch on CUDA, or just an NVIDIA device node."""
    devices = sorted(str(p) for p in Path("/dev").glob("nvidia[0-9]*"))
    if needs == "nvidia":
        return bool(devices), "" if devices else "no NVIDIA GPU on this machine (no /dev/nvidia0)"
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if torch.cuda.is_available():
        return True, ""
    if devices:
        return False, f"torch {torch.__version__} sees no CUDA GPU although {devices[0]} exists (CPU build?)"
    return False, f"no CUDA GPU on this machine (torch {torch.__version__}: cuda not available; no /dev/nvidia0)"


def machine() -> dict[str, Any]:
    """Host, GPU, driver and versions of everything the parts use."""
    smi = _command_output(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    info: dict[str, Any] = {
        **machine_record(), "gpus": smi.splitlines() if smi else [],
        "versions": {m: _version(m) for m in ("torch", "av", "nvidia.dali", "torchcodec", "numpy", "decord")},
    }
    with contextlib.suppress(ImportError):
        import torch

        info["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name(0)
    with contextlib.suppress(Exception):
        from videoprep.ffmpeg import ffmpeg_exe
        from videoprep.hwaccel import gpu_ffmpeg_exe

        for key, exe in (("ffmpeg", ffmpeg_exe()), ("gpu_ffmpeg", gpu_ffmpeg_exe())):
            head = _command_output([exe, "-hide_banner", "-version"]) or ""
            info[key] = f"{exe}: {head.splitlines()[0] if head else 'does not run'}"
    return info


# --- running parts --------------------------------------------------------------------------------


def run_part_here(name: str, work: Path, result_path: Path) -> int:
    """Child side: run one part, write {status, reason, figures} to result_path."""
    work.mkdir(parents=True, exist_ok=True)
    try:
        out = {"status": "ok", "reason": "", "figures": PARTS[name](work)}
    except Skip as exc:
        out = {"status": "skipped", "reason": str(exc), "figures": {}}
    except PartFailed as exc:
        out = {"status": "failed", "reason": str(exc), "figures": exc.figures}
    except Exception as exc:  # the part broke: record it; the parent goes on with the next part
        out = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}",
               "figures": {"traceback": traceback.format_exc()[-2000:]}}
    atomic_write_json(result_path, out)
    return 0


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the part's process group (torchrun then stops its workers), SIGKILL what is left after 15 s."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_part(spec: PartSpec, *, work: Path, timeout_s: float) -> PartResult:
    """Parent side: the part in its own process group, killed with its children at the time limit."""
    work.mkdir(parents=True, exist_ok=True)
    result_path = work / f"{spec.name}.result.json"
    result_path.unlink(missing_ok=True)
    log_path = work / f"{spec.name}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-part", spec.name, "--work", str(work / spec.name),
           "--result", str(result_path)]
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            return PartResult(spec.name, spec.title, "failed", f"timed out after {timeout_s:.0f} s (log: {log_path})",
                              time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if not result_path.is_file():
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip()[-600:]
        return PartResult(spec.name, spec.title, "failed", f"exited {proc.returncode} without a result: {tail}",
                          seconds)
    data = json.loads(result_path.read_text(encoding="utf-8"))
    return PartResult(spec.name, spec.title, data["status"], data["reason"], seconds, data["figures"])


def run_kit(*, out: Path, budget_s: float, only: list[str] | None) -> list[PartResult]:
    """Every part in order: GPU parts skipped without a GPU, each within what is left of the budget."""
    results = []
    started = time.perf_counter()
    for spec in SPECS:
        if only and spec.name not in only:
            continue
        left = budget_s - (time.perf_counter() - started)
        usable, why_not = gpu_status(spec.needs) if spec.needs else (True, "")
        if not usable:
            missing = missing_modules(spec.modules)  # said now, so the next copy to the node brings them
            also = f"; with a GPU it would still be skipped: {missing_reason(missing)}" if missing else ""
            results.append(PartResult(spec.name, spec.title, "skipped", why_not + also))
        elif left < MIN_PART_S:
            results.append(PartResult(spec.name, spec.title, "failed", f"not started: {max(left, 0):.0f} s left "
                                      f"of the {budget_s:.0f} s budget"))
        else:
            print(f"== {spec.name}: {spec.title} (limit {min(spec.timeout_s, left):.0f} s)", file=sys.stderr, flush=True)
            results.append(run_part(spec, work=out / "work", timeout_s=min(spec.timeout_s, left)))
        r = results[-1]
        print(f"   {r.name}: {r.status} in {r.seconds:.1f} s{': ' + r.reason if r.reason else ''}", file=sys.stderr,
              flush=True)
    return results


# --- the goals ------------------------------------------------------------------------------------


def _min_over_sets(figures: dict[str, Any], key: str) -> float | None:
    """The smallest `key` over a decode part's video sets (h264_gop16, h264_gop250, hevc)."""
    values = [f[key] for f in figures.values() if isinstance(f, dict) and key in f]
    return min(values) if values else None


def _ours(figures: dict[str, Any], key: str) -> float | None:
    """`key` of our fastest training setup (DALI or pyav loader)."""
    ours = [figures[s] for s in ("ours_dali", "ours_pyav") if "clips_per_s" in figures.get(s, {})]
    return max(ours, key=lambda f: f["clips_per_s"]).get(key) if ours else None


def _nested(*keys: str) -> Callable[[dict[str, Any]], Any]:
    def get(figures: dict[str, Any]) -> Any:
        for key in keys:
            figures = figures.get(key) if isinstance(figures, dict) else None
        return figures

    return get


@dataclass(frozen=True)
class Goal:
    """A goal the kit checks: which part measures it, how to read the figure, the target and its direction."""

    name: str
    part: str
    value: Callable[[dict[str, Any]], float | None]
    target: float
    at_least: bool = True


GOALS: tuple[Goal, ...] = (
    Goal("training: ours / official clips/s per GPU", "train_throughput", _nested("speedup_ours_over_official"), 2.0),
    Goal("training: data-wait fraction of ours", "train_throughput", lambda f: _ours(f, "data_wait_fraction"), 0.10,
         at_least=False),
    Goal("DALI NVDEC: share of frame-exact indices vs pyav", "dali_gpu", lambda f: _min_over_sets(f, "same_index_share"),
         1.0),
    Goal("DALI NVDEC: clips/s / our CPU reader's, per process", "dali_gpu", lambda f: _min_over_sets(f, "ratio_to_pyav"),
         5.0),
    Goal("torchcodec CUDA: share of frame-exact indices vs pyav", "torchcodec_cuda",
         lambda f: _min_over_sets(f, "same_index_share"), 1.0),
    Goal("torchcodec CUDA: clips/s / our CPU reader's, per process", "torchcodec_cuda",
         lambda f: _min_over_sets(f, "ratio_to_pyav"), 5.0),
    Goal("NVDEC+NVENC transcode: videos/s / CPU path's, 720p", "transcode_gpu", _nested("nvdec_nvenc", "ratio_to_cpu"),
         3.0),
)


def check_goals(results: list[PartResult]) -> list[dict[str, Any]]:
    """Each goal with its measured ratio, the target and met (None: not measured, with the reason)."""
    by_name = {r.name: r for r in results}
    rows = []
    for goal in GOALS:
        part = by_name.get(goal.part)
        value = goal.value(part.figures) if part and part.figures else None
        met = None if value is None else (value >= goal.target if goal.at_least else value < goal.target)
        why = "" if value is not None else (f"not measured: {goal.part} {part.status}: {part.reason}" if part
                                             else f"not measured: {goal.part} not run")
        rows.append({"goal": goal.name, "part": goal.part, "value": value,
                     "target": f"{'>=' if goal.at_least else '<'} {goal.target:g}", "met": met, "note": why})
    return rows


# --- the report -----------------------------------------------------------------------------------


def _flat(prefix: str, value: Any) -> list[tuple[str, str]]:
    """Nested figures -> (dotted key, text) rows for the Markdown report."""
    if isinstance(value, dict) and value:
        return [row for k, v in value.items() for row in _flat(f"{prefix}.{k}" if prefix else str(k), v)]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [row for i, v in enumerate(value) for row in _flat(f"{prefix}[{i}]", v)]
    text = json.dumps(value) if not isinstance(value, str) else value
    return [(prefix, text.replace("|", "\\|").replace("\n", " "))]


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: machine, then one row per part, then every figure of each part that ran."""
    m = report["machine"]
    lines = [
        "# GPU proof kit report", "",
        f"- when: {report['finished']} (took {report['seconds']:.0f} s of a {report['budget_s']:.0f} s budget)",
        f"- command: `{report['command']}`",
        f"- machine: {m['host']}, {m['cpu_count']} cores ({m['cpu_model']}), {m['platform']}, "
        f"load average {m['load_average']}",
        f"- GPU: {'; '.join(m['gpus']) or 'none'} (torch sees CUDA: {report['cuda']})",
        f"- versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}; torch CUDA {m.get('torch_cuda')}",
        f"- ffmpeg: {m.get('ffmpeg')}; GPU path: {m.get('gpu_ffmpeg')}",
        f"- install: {install_line(report.get('install'))}",
        f"- result: {report['summary']}", "",
        "| part | what | status | s | reason |", "| --- | --- | --- | ---: | --- |",
    ]
    for p in report["parts"]:
        reason = p["reason"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {p['name']} | {p['title']} | {p['status']} | {p['seconds']:.1f} | {reason} |")
    lines += ["", "## goals", "", "| goal | value | target | met | note |", "| --- | ---: | --- | --- | --- |"]
    for g in report["goals"]:
        met = {True: "yes", False: "NO", None: "-"}[g["met"]]
        note = g["note"].replace("|", "\\|")
        lines.append(f"| {g['goal']} | {'' if g['value'] is None else g['value']} | {g['target']} | {met} | {note} |")
    for p in report["parts"]:
        if not p["figures"]:
            continue
        lines += ["", f"## {p['name']}", "", "| figure | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in _flat("", p["figures"]) if k != "traceback"]
    return "\n".join(lines) + "\n"


def install_line(install: dict[str, Any] | None) -> str:
    """The install step's own line: seconds from the wheelhouse, the node's torch, each group."""
    if not install:
        return "none (this Python's own packages; make gpu-check WHEELHOUSE=DIR installs from a wheelhouse)"
    groups = "; ".join(f"{g}: {s}" for g, s in install["groups"].items())
    return f"{install['seconds']:.0f} s from {install['wheelhouse']} over torch {install['torch']} ({groups})"


def write_report(out: Path, results: list[PartResult], *, budget_s: float, seconds: float,
                 install: dict[str, Any] | None = None) -> dict[str, Any]:
    """OUT/report.json and OUT/report.md (written last, atomically)."""
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "skipped")}
    report = {
        "schema": 1, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "seconds": round(seconds, 1),
        "budget_s": budget_s, "cuda": gpu_status()[0], "machine": machine(),
        "summary": f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped",
        "parts": [asdict(r) | {"seconds": round(r.seconds, 1)} for r in results], "install": install,
        "goals": check_goals(results),
    }
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", render_markdown(report))
    return report


def read_install_record(path: Path) -> dict[str, Any]:
    """The wheelhouse install's record; exits 2 with one line when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"gpu_check: --install-record {path}: cannot read it ({exc}); run the install step first") \
            from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="where report.json/.md and work/ go")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                        help="seconds for all parts together (less the install's, with --install-record)")
    parser.add_argument("--only", nargs="+", choices=[s.name for s in SPECS], default=None, help="run these parts")
    parser.add_argument("--install-record", type=Path, default=None,
                        help="install.json of `python -m tools.wheelhouse install` (make gpu-check WHEELHOUSE=...)")
    parser.add_argument("--run-part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_part:
        return run_part_here(args.run_part, args.work, args.result)
    install = read_install_record(args.install_record) if args.install_record else None
    if install is not None:
        print(f"install: {install_line(install)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    # The 8 minutes include installing from the wheelhouse: the parts get what the install left.
    budget = args.budget - (install["seconds"] if install else 0.0)
    results = run_kit(out=args.out.resolve(), budget_s=budget, only=args.only)
    report = write_report(args.out, results, budget_s=budget, seconds=time.perf_counter() - start,
                          install=install)
    for g in report["goals"]:
        state = {True: "met", False: "NOT met", None: g["note"]}[g["met"]]
        print(f"goal: {g['goal']}: {g['value']} (target {g['target']}): {state}", file=sys.stderr)
    print(f"gpu-check: {report['summary']}; report in {args.out / 'report.md'}", file=sys.stderr)
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
