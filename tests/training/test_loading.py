"""What every later use of a run needs from its folder: one-line errors for a wrong folder or checkpoint name."""

from __future__ import annotations

import pytest

from longtail.core.errors import LongtailError
from longtail.rundir import layout
from longtail.training.loading import checkpoint_file, load_run_config


def test_checkpoint_names_map_to_the_run_files():
    assert checkpoint_file("best") == layout.BEST
    assert checkpoint_file("last") == layout.LAST


def test_an_unknown_checkpoint_name_is_one_line():
    with pytest.raises(LongtailError, match=r"checkpoint 'latest' is not one of best, last; use best"):
        checkpoint_file("latest")


def test_a_folder_without_a_config_is_not_a_run(tmp_path):
    with pytest.raises(LongtailError, match="is not a longtail run directory \\(no config.yaml\\)"):
        load_run_config(tmp_path)
