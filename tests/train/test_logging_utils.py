"""Run output: official lines to the stream and log.txt, JSONL metrics, the per-epoch progress bar."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from train.logging_utils import LOG_FILE, METRICS_FILE, RunLog, epoch_progress, progress_wanted, read_metrics


def test_lines_and_metrics_go_to_the_stream_log_txt_and_jsonl(tmp_path: Path):
    out = io.StringIO()
    run_log = RunLog(log_dir=tmp_path, stream=out, tensorboard=False)
    run_log.line("Testing Results: Prec@1 50.000 Prec@5 100.000 Loss 0.69315")
    run_log.metrics("val", step=3, prec1=50.0, count=2)
    run_log.metrics("epoch", loss=0.5)
    assert out.getvalue() == "Testing Results: Prec@1 50.000 Prec@5 100.000 Loss 0.69315\n"
    assert (tmp_path / LOG_FILE).read_text() == out.getvalue()
    with open(tmp_path / METRICS_FILE, "a") as f:
        f.write('{"kind": "train", "st')  # a record torn by a kill
    assert read_metrics(tmp_path) == [{"kind": "val", "step": 3, "prec1": 50.0, "count": 2},
                                      {"kind": "epoch", "loss": 0.5}]


def test_other_ranks_write_nothing(tmp_path: Path):
    out = io.StringIO()
    run_log = RunLog(log_dir=tmp_path / "log", enabled=False, stream=out)
    run_log.line("Epoch: [0][1/2]")
    run_log.metrics("train", step=1, loss=1.0)
    assert out.getvalue() == "" and not (tmp_path / "log").exists()


def test_progress_bar_only_when_interactive_or_asked(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert progress_wanted("auto", enabled=True) and progress_wanted("on", enabled=True)
    assert not progress_wanted("off", enabled=True)
    assert not progress_wanted("on", enabled=False)  # ranks other than 0 never draw
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not progress_wanted("auto", enabled=True) and progress_wanted("on", enabled=True)


def test_epoch_bar_draws_on_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats stderr as a terminal
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    with epoch_progress("epoch 3", show=True) as bar:
        bar(1, 2)
        bar(2, 2)
    drawn = capsys.readouterr().err
    assert "epoch 3" in drawn and "2/2" in drawn
    with epoch_progress("epoch 4", show=False) as bar:
        bar(1, 1)
    assert capsys.readouterr().err == ""
