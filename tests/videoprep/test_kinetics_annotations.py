"""Reading the annotation CSVs of Kinetics (the format the CVDF mirror and DeepMind publish)."""

from __future__ import annotations

import pytest

from videoprep.errors import LayoutError
from videoprep.kinetics import Clip, read_annotations


def test_train_and_test_csvs_read_as_clips(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text('\ufefflabel,youtube_id,time_start,time_end,split,is_cc\n'
                     '"passing, american football",-abc_defghi,5,15,train,0\n\n'
                     'abseiling,0123456789a,0,10,validate,1\n', encoding="utf-8")
    assert read_annotations(train) == [Clip("-abc_defghi", 5, 15, "train", "passing, american football"),
                                       Clip("0123456789a", 0, 10, "val", "abseiling")]
    test = tmp_path / "test.csv"
    test.write_text("youtube_id,time_start,time_end,split\n00000000001,20,30,test\n")
    assert read_annotations(test) == [Clip("00000000001", 20, 30, "test", None)]


@pytest.mark.parametrize(("text", "reason"), [
    ("label,youtube_id,time_start,split\nx,a,1,train\n", "missing column(s) time_end"),
    ("label,youtube_id,time_start,time_end,split\nx,a,one,10,train\n", "must be integers"),
    ("label,youtube_id,time_start,time_end,split\nx,a,0,10,train,extra\n", "6 fields where the header has 5"),
    ("", "empty"),
])
def test_a_malformed_csv_is_one_layout_error_naming_the_file(tmp_path, text, reason):
    path = tmp_path / "train.csv"
    path.write_text(text)
    with pytest.raises(LayoutError, match="train.csv") as err:
        read_annotations(path)
    assert reason in str(err.value)


def test_a_csv_that_is_not_utf8_is_a_layout_error(tmp_path):
    path = tmp_path / "val.csv"
    path.write_bytes(b"label,youtube_id,time_start,time_end,split\n\xff\xfe,a,0,10,val\n")
    with pytest.raises(LayoutError, match="cannot read annotation CSV"):
        read_annotations(path)
