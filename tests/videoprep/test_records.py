"""The BAT list format: what the official parser accepts, with errors naming file and line."""

from __future__ import annotations

import pytest

from videoprep.errors import ListFormatError, PathError
from videoprep.records import ListRecord, parse_list_line, read_list, write_list


def test_round_trip(tmp_path):
    recs = [ListRecord("train/a/x.mp4", 300, 0), ListRecord("train/b/y.mp4", 250, 3)]
    out = tmp_path / "train.txt"
    assert write_list(out, recs) == 2
    assert out.read_text() == "train/a/x.mp4 300 0\ntrain/b/y.mp4 250 3\n"
    assert read_list(out) == recs


def test_extra_columns_ignored_like_official():
    assert parse_list_line("a.mp4 10 2 extra") == ListRecord("a.mp4", 10, 2)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("a.mp4 10", "expected 'path frame_num label'"),
        ("a.mp4 ten 1", "frame_num 'ten' is not an integer"),
        ("a.mp4 10 x", "label 'x' is not an integer"),
        ("a b.mp4 10 1", "does the path contain a space"),
        ("a.mp4\t10\t1", "single spaces"),
        ("a.mp4 0 1", "frame_num (0) must be >= 1"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, reason):
    f = tmp_path / "bad.txt"
    f.write_text("ok.mp4 10 0\n" + line + "\n")
    with pytest.raises(ListFormatError) as info:
        read_list(f)
    assert info.value.line_no == 2
    assert f"{f}:2" in str(info.value)
    assert reason in str(info.value)


def test_label_range_and_missing_files(tmp_path):
    f = tmp_path / "l.txt"
    f.write_text("a.mp4 10 5\n")
    with pytest.raises(ListFormatError, match=r"label \(5\) must be in 0..3"):
        read_list(f, num_classes=4)
    with pytest.raises(ListFormatError, match="does not exist"):
        read_list(f, root=tmp_path, check_files=True)
    (tmp_path / "a.mp4").write_bytes(b"x")
    assert read_list(f, root=tmp_path, check_files=True)[0].label == 5


def test_record_refuses_whitespace_path():
    with pytest.raises(ValueError, match="whitespace"):
        ListRecord("passing American football (in game)/x.mp4", 10, 0)


def test_empty_and_missing_list(tmp_path):
    with pytest.raises(PathError, match="not found"):
        read_list(tmp_path / "nope.txt")
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(PathError, match="no entries"):
        read_list(tmp_path / "e.txt")
