"""What `make bench` runs: the full loader benchmark, then every other benchmarks/*.py script.

    .venv/bin/python benchmarks/run_all.py --out bench-out [--only bench_loaders] [--timeout 240]

Each script runs in its own process with a time limit; its output goes to
OUT/<script>.log and, when the script takes --out (or --json), its figures under OUT.
OUT/summary.json records every script's exit status and duration (written last).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT

from videoprep.atomic import atomic_write_json

HERE = Path(__file__).resolve().parent
FIRST = "bench_loaders"  # the loader benchmark of `videoprep bench`, always first


def scripts(only: list[str] | None) -> list[Path]:
    """The benchmark scripts to run: bench_loaders first, then the others by name."""
    # gpu_check is `make gpu-check`: its own 8-minute budget on a GPU machine, its own report
    skip = ("run_all", "__init__", "gpu_check")
    found = sorted(p for p in HERE.glob("*.py") if p.stem not in skip and not p.stem.startswith("_"))
    found.sort(key=lambda p: (p.stem != FIRST, p.stem))
    if only:
        found = [p for p in found if p.stem in only]
    return found


def script_args(script: Path, out: Path) -> list[str]:
    """Where a script writes its figures: --out DIR or --json FILE when it declares either."""
    text = script.read_text(encoding="utf-8")
    if '"--out"' in text:
        return ["--out", str(out / script.stem)]
    if '"--json"' in text:
        return ["--json", str(out / f"{script.stem}.json")]
    return []


def run_script(script: Path, out: Path, *, timeout_s: float) -> dict:
    """Run one script, its output to OUT/<name>.log; a failure or timeout is recorded, not raised."""
    log_path = out / f"{script.stem}.log"
    cmd = [sys.executable, str(script), *script_args(script, out)]
    started = time.perf_counter()
    print(f"== {script.name}: {' '.join(cmd[1:])}", flush=True)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
            status = "ok" if rc == 0 else f"exit {rc}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the script and the workers it started
            proc.wait()
            rc, status = None, f"timed out after {timeout_s:g} s"
        except BaseException:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise
    seconds = round(time.perf_counter() - started, 1)
    print(f"   {status} in {seconds} s; output in {log_path}", flush=True)
    return {"script": script.name, "command": cmd[1:], "status": status, "returncode": rc, "seconds": seconds,
            "log": str(log_path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--only", nargs="+", help="script names (without .py) to run")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per script other than bench_loaders")
    parser.add_argument("--loaders-timeout", type=float, default=480.0, help="seconds for bench_loaders")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for script in scripts(args.only):
        limit = args.loaders_timeout if script.stem == FIRST else args.timeout
        results.append(run_script(script, out, timeout_s=limit))
    atomic_write_json(out / "summary.json", {"scripts": results})
    failed = [r["script"] for r in results if r["status"] != "ok"]
    if failed:
        print(f"failed: {', '.join(failed)}", flush=True)
    print(f"summary: {out / 'summary.json'}; loader figures: {out / FIRST / 'bench.json'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
