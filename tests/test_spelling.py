"""Every long option takes both spellings (kebab and snake case) in bench, train and test alike."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from cli import cli
from train.config import parse_test_args, parse_train_args
from videoprep.spelling import canonical_spellings, spelling_table


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_canonical_spellings_rewrites_only_known_long_options():
    table = spelling_table(["--seq_length", "--save-iter-freq", "-j", "--workers"])
    argv = ["--seq-length", "8", "--save_iter_freq=3", "-j", "2", "--seq_lenght", "1", "--", "--seq-length"]
    assert canonical_spellings(argv, table) == [
        "--seq_length", "8", "--save-iter-freq=3", "-j", "2", "--seq_lenght", "1", "--", "--seq-length"]


def test_two_options_sharing_a_key_are_left_alone():
    assert spelling_table(["--batch-size", "--batch_size", "--lr"]) == {"--lr": "--lr"}


@pytest.mark.parametrize("spelling", ["--seq-length", "--seq_length"])
def test_bench_takes_both_spellings(tmp_path, spelling):
    """The value reaches --seq-length's own check whichever spelling carried it."""
    listing = tmp_path / "val.txt"
    listing.write_text("a.mp4 10 0\n")
    result = _invoke("bench", str(listing), spelling, "0", "--root_path", str(tmp_path), "--test_segments", "2")
    assert result.exit_code == 2
    assert "Invalid value for '--seq-length'" in result.output


def test_bench_parses_the_other_spelling_up_to_its_own_rules(tmp_path):
    listing = tmp_path / "val.txt"
    listing.write_text("a.mp4 10 0\n")
    result = _invoke("bench", str(listing), "--root_path", str(tmp_path), "--seq_length", "4",
                     "--test_segments", "2", "--sample_rate", "2", "--encodings", "mjpeg")
    assert result.exit_code == 2
    assert "--encodings only applies with --generate" in result.output


def test_a_misspelt_option_is_still_refused_by_the_name_typed(tmp_path):
    result = _invoke("bench", str(tmp_path), "--seq_lenght", "4")
    assert result.exit_code == 2
    assert "--seq_lenght" in result.output


def test_other_commands_take_both_spellings_too(tmp_path):
    result = _invoke("validate", str(tmp_path), "--min_frames", "abc")
    assert result.exit_code == 2 and "Invalid value for '--min-frames'" in result.output
    result = _invoke("validate", str(tmp_path), "--min_frames", "3", "--state_dir", str(tmp_path / "s"))
    assert result.exit_code == 1 and "no videos found" in result.output


@pytest.mark.parametrize(("official", "ours"), [
    (["--seq_length", "4", "--root_path", "v", "--sample_rate", "2"],
     ["--seq-length", "4", "--root-path", "v", "--sample-rate", "2"]),
    (["--save-iter-freq", "3", "--num_clips", "2"], ["--save_iter_freq", "3", "--num-clips", "2"]),
])
def test_train_flags_take_both_spellings(official, ours):
    a = parse_train_args(["t.txt", "v.txt", *official])
    b = parse_train_args(["t.txt", "v.txt", *ours])
    assert a == b
    assert a.given == b.given


def test_test_flags_take_both_spellings():
    a = parse_test_args(["v.txt", "w.pth", "--test_segments", "10", "--test_crops", "3", "--img_size", "112"])
    b = parse_test_args(["v.txt", "w.pth", "--test-segments", "10", "--test-crops", "3", "--img-size", "112"])
    assert (a.test_segments, a.test_crops, a.img_size) == (10, 3, 112)
    assert a == b


@pytest.mark.parametrize("command", ["train", "test"])
def test_runner_commands_check_the_other_spelling_under_the_official_name(tmp_path, command):
    flag = "--test-segments" if command == "test" else "--seq-length"
    result = _invoke(command, "a.txt", "b.txt", flag, "0")
    assert result.exit_code == 2
    assert f"argument {flag.replace('-', '_').replace('__', '--')}" in result.output


@pytest.mark.parametrize(("command", "shown", "hidden"), [
    ("bench", "--seq-length", "--seq_length"),
    ("train", "--seq_length", "--seq-length"),
    ("test", "--test_segments", "--test-segments"),
])
def test_help_shows_one_name_per_option(command, shown, hidden):
    result = _invoke(command, "--help")
    assert result.exit_code == 0
    option_column = [line.split()[0] for line in result.output.splitlines() if re.match(r"\s+--", line)]
    assert any(name.startswith(shown) for name in option_column)
    assert not any(name.startswith(hidden) for name in option_column)
