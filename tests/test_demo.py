"""The reduced demo end to end: every real subcommand on a generated mirror, as CI runs it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import cli


@pytest.mark.slow  # the whole toolkit end to end: ~45 s on 2 cores
def test_reduced_demo_runs_every_step(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "demo_summary.json").read_text())
    assert [s["name"] for s in summary["steps"]] == [
        "download", "validate", "transcode", "index", "bench", "train", "test"
    ]
    facts = summary["facts"]
    made = facts["generated"]
    # The two corrupt clips are found and moved aside; the third was repaired by the
    # mirror's replacement archive and stays.
    quarantined = sorted(p.stem for p in (out / "quarantine").rglob("*.mp4"))
    assert quarantined == sorted(made["corrupt"])
    assert (out / "kinetics400" / "train" / f"{made['repaired_by_replacement']}.mp4").stat().st_size > 0
    total = made["clips"]["train"] + made["clips"]["val"]
    assert facts["lists"] == {"train": made["clips"]["train"] - 2, "val": made["clips"]["val"]}
    assert sum(facts["lists"].values()) == total - 2
    assert facts["test"]["videos"] == made["clips"]["val"]
    assert 0.0 <= facts["test"]["top1"] <= 1.0
    assert facts["bench"]["results"], "bench wrote no figures"
    # Re-running is safe: finished work is reused and the result is the same shape.
    again = CliRunner().invoke(cli, ["demo", "--quick", "--out", str(out)])
    assert again.exit_code == 0, again.output
