"""Dotted overrides after a flag still count as overrides (argparse alone would refuse them)."""

from __future__ import annotations

import pytest

from longtail.cli.commands import _parse, build_parser


def parse(*argv: str):
    argv_list = list(argv)
    return _parse(build_parser(argv_list[0]), argv_list)


def test_overrides_on_both_sides_of_a_flag_keep_their_order():
    args = parse("train", "-c", "c.yaml", "train.epochs=1", "--overwrite", "loss.name=focal", "loss.gamma=2")
    assert args.overwrite is True
    assert args.overrides == ["train.epochs=1", "loss.name=focal", "loss.gamma=2"]


def test_predict_overrides_after_a_flag_join_the_inputs_where_predict_reads_them():
    args = parse("predict", "runs/q", "img.png", "--out", "p.csv", "data.on_bad_image=skip")
    assert args.images == ["img.png", "data.on_bad_image=skip"] and args.out == "p.csv"


def test_an_unknown_flag_is_still_refused(capsys):
    with pytest.raises(SystemExit) as e:
        parse("train", "-c", "c.yaml", "--bogus")
    assert e.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
