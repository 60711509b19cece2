"""Progress for logs: with stderr a file, a long stage writes a line at least every interval and a summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cli import cli
from tests.videoprep.helpers import write_tree
from videoprep.progress import LogProgress, format_duration

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^transcode: (\d+)/(\d+) \((\d+)%\)")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_at_the_start_every_interval_and_a_summary_with_rate_and_time_left():
    clock, lines = FakeClock(), []
    progress = LogProgress("index", interval_s=30, write=lines.append, clock=clock)
    progress.tick()  # nothing started: nothing to say
    progress.update(20, 200)  # 20 cached
    clock.now += 10
    progress.update(70, 200)
    progress.tick()  # 10 s since the last line: too early
    clock.now += 20
    progress.update(110, 200)
    progress.tick()
    clock.now += 60
    progress.update(200, 200)
    progress.finish()
    assert lines == [
        "index: 20/200 (10%)",
        "index: 110/200 (55%), 3.0 items/s, about 30 s left",  # (110-20) made in 30 s
        "index: finished 200/200 in 1 min 30 s (2.0 items/s)",
    ]


def test_bytes_are_shown_in_mb():
    clock, lines = FakeClock(), []
    progress = LogProgress("fingerprint", interval_s=1, unit="bytes", write=lines.append, clock=clock)
    progress.update(0, 50_000_000)
    clock.now += 2
    progress.update(20_000_000, 50_000_000)
    progress.tick()
    assert lines[-1] == "fingerprint: 20.0 MB/50.0 MB (40%), 10.0 MB/s, about 3 s left"
    assert format_duration(7500) == "2 h 05 min"


def test_a_redirected_transcode_of_many_videos_writes_progress_lines_and_reaches_100_percent(tmp_path):
    count = 40
    src = write_tree(tmp_path / "src", {f"train/c{i % 4}/v{i:03d}.mp4": (32, 24, 25, 4) for i in range(count)})
    log = tmp_path / "stderr.log"
    env = {**os.environ, "VIDEOPREP_PROGRESS_INTERVAL": "0.05"}
    with open(log, "w") as stderr:  # a file, as under Slurm or nohup: auto picks log lines
        subprocess.run([sys.executable, "-m", "cli", "-v", "transcode", str(src), str(tmp_path / "out"), "-j", "2",
                        "--no-index"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr, check=True,
                       timeout=300)
    text = log.read_text()
    progress = [LINE.match(line) for line in text.splitlines() if LINE.match(line)]
    assert progress and all(int(m.group(2)) == count for m in progress), text
    assert f"transcode: finished {count}/{count} in " in text
    assert "\x1b[" not in text  # no terminal codes in a log


def test_progress_none_and_log_on_fingerprint(tmp_path):
    clip = tmp_path / "copy" / "train" / "a_000000_000010.mp4"
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"x" * 3_000_000)
    shown = CliRunner().invoke(cli, ["fingerprint", str(tmp_path / "copy"), "--progress", "log"])
    assert shown.exit_code == 0 and "fingerprint copy: finished 3.0 MB/3.0 MB" in shown.stderr
    silent = CliRunner().invoke(cli, ["fingerprint", str(tmp_path / "copy"), "--progress", "none"])
    assert silent.exit_code == 0 and "finished" not in silent.stderr
