"""`longtail bench` on changed and hostile inputs, and the CLI boundary: the last-resort handler,
--debug, a reader that leaves the pipe, and the per-command wording of an interruption (issue #31)."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from longtail import rundir
from longtail.bench import grid as bench
from longtail.cli import commands
from longtail.core.errors import DataError, LongtailError
from longtail.engine.interrupt import Interrupted

from .common import ENV, cli, digests, one_error, small, write_yaml


# ------------------------------------------------------------------------------ helpers
def _grid(tmp: Path, epochs: int = 1, seeds: tuple[int, ...] = (0,)) -> Path:
    """ce trains; la re-evaluates ce's training with the post-hoc logit adjustment (same_training_as)."""
    base = write_yaml(tmp / "base.yaml", small(tmp, "base"))
    return write_yaml(tmp / "bench.yaml", {
        "name": "g", "output_dir": str(tmp / "grid"), "results": str(tmp / "results" / "g.csv"), "seeds": list(seeds),
        "overrides": [f"train.epochs={epochs}"],
        "methods": {"ce": {"config": str(base)},
                    "la": {"config": str(base), "overrides": ["posthoc.logit_adjust=true"], "posthoc": True, "same_training_as": "ce"}},
    })


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _summary_methods(md: Path) -> list[str]:
    return [line.split(" | ")[1] for line in md.read_text().splitlines() if line.startswith("| default |")]


def _messages(caplog, level: str, part: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == level and part in r.getMessage()]


def _hand_written_results(grid: Path, seeds: tuple[int, ...] | None = None, cut: str = "") -> Path:
    """Results of a grid without its run directories (a fresh clone): a row per ce cell of ``seeds`` (default:
    the grid's) with its right config hash, then the text ``cut``."""
    spec = bench.load_bench(grid)
    header = [*bench.COLUMNS, bench.HASH_COLUMN]
    lines = [",".join(header)]
    for seed in spec.seeds if seeds is None else seeds:
        values = {"dataset": "default", "method": "ce", "seed": str(seed), "balanced_accuracy": "0.5", "run_dir": "gone",
                  bench.HASH_COLUMN: bench.config_hash(bench.cell_config(spec, "default", "ce", seed))}
        lines.append(",".join(values.get(h, "") for h in header))
    path = Path(spec.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + cut)
    path.with_suffix(".md").write_text("# g\n")
    return path


# ------------------------------------------------------------------------------ a changed cell is rerun
@pytest.mark.parametrize(("override", "changes"), [
    ("train.epochs=2", True), ("loss.name=focal", True), ("data.max_per_class=10", True), ("seed=1", True), ("posthoc.logit_adjust=true", True),
    ("train.threads=2", False), ("train.progress=true", False), ("train.tensorboard=true", False), ("data.num_workers=2", False),
    ("data.cache=true", False), ("name=other", False), ("output_dir=elsewhere", False),
    ("train.deterministic=true", False),  # a key at its default value: a run's config.yaml names every key, an older one fewer
])
def test_the_config_hash_changes_with_what_a_cell_computes_only(override, changes, tmp_path):
    from longtail.catalog.check import load_config

    cfg = small(tmp_path, "c")
    assert (bench.config_hash(load_config(raw=cfg, overrides=[override])) != bench.config_hash(load_config(raw=cfg))) is changes


@pytest.fixture
def no_reports(monkeypatch) -> None:
    """The cells' HTML reports (seconds of matplotlib each) play no part in which cell is rerun."""
    monkeypatch.setattr("longtail.evaluation.report.write_report", lambda run_dir: Path(run_dir) / "report.html")


def test_a_cell_made_with_another_config_is_rerun_and_never_averaged_with_the_new_one(tmp_path, capsys, caplog, monkeypatch, no_reports):
    caplog.set_level("INFO", logger="longtail")
    grid = _grid(tmp_path)
    cells, results = tmp_path / "grid", tmp_path / "results"
    assert cli(capsys, "bench", "-c", grid) == (0, [])
    spec = bench.load_bench(grid)
    rows = {r["method"]: r for r in _csv(results / "g.csv")}
    assert rows["ce"][bench.HASH_COLUMN] == bench.config_hash(bench.cell_config(spec, "default", "ce", 0))
    first = {name: digests(cells / name) for name in ("ce-s0", "la-s0")}

    # the budget changes: a failed rerun leaves the old cell, and every result file, byte for byte
    _grid(tmp_path, epochs=2)
    import longtail.engine.trainer as trainer

    def broken_fit(self, *a, **k):
        raise DataError("image 'x.png' cannot be decoded; replace it")

    with monkeypatch.context() as m:
        m.setattr(trainer.Trainer, "fit", broken_fit)
        before = digests(results)
        code, errors = cli(capsys, "bench", "-c", grid, "--only", "ce")
    assert code == 2
    one_error(errors, "x.png")
    assert {name: digests(cells / name) for name in first} == first and digests(results) == before
    assert sorted(p.name for p in cells.iterdir()) == ["ce-s0", "la-s0"]  # no staging copy left

    # the rerun that succeeds: one INFO line per changed cell; the unselected stale cell stays out of the summary
    caplog.clear()
    assert cli(capsys, "bench", "-c", grid, "--only", "ce") == (0, [])
    (info,) = _messages(caplog, "INFO", "is run again")
    assert info.startswith("ce/seed 0 is run again: ") and f"records config hash {rows['ce'][bench.HASH_COLUMN]}" in info
    assert rundir.read_json(cells / "ce-s0" / rundir.RESULTS)["epochs"] == 2
    assert digests(cells / "la-s0") == first["la-s0"]
    (warning,) = _messages(caplog, "WARNING", "left out of the summary")
    assert warning.startswith("1 finished cell(s) were made with another config") and "): la/seed 0; run the bench again" in warning
    assert _summary_methods(results / "g.md") == ["ce"]
    assert {r["method"]: r["epochs"] for r in _csv(results / "g.csv")} == {"ce": "2", "la": "1"}  # both kept, each with its hash

    # the whole grid: the shared cell is evaluated again on the new training and swapped in for the old one
    caplog.clear()
    assert cli(capsys, "bench", "-c", grid) == (0, [])
    assert [line.split(" is run again")[0] for line in _messages(caplog, "INFO", "is run again")] == ["la/seed 0"]
    assert not _messages(caplog, "WARNING", "left out of the summary")
    assert len(rundir.read_jsonl(cells / "la-s0" / rundir.METRICS)) == 2 and _summary_methods(results / "g.md") == ["ce", "la"]
    assert sorted(p.name for p in cells.iterdir()) == ["ce-s0", "la-s0"]


def test_rows_written_before_the_config_hash_are_checked_against_their_run_directory_or_kept(tmp_path, capsys, caplog, no_reports):
    """The committed benchmarks/results/*.csv have no config_hash column: they must not all be rerun."""
    caplog.set_level("INFO", logger="longtail")
    grid = _grid(tmp_path)
    assert cli(capsys, "bench", "-c", grid, "--only", "ce") == (0, [])
    csv_file, run = tmp_path / "results" / "g.csv", tmp_path / "grid" / "ce-s0"
    old = [{k: v for k, v in r.items() if k != bench.HASH_COLUMN} for r in _csv(csv_file)]
    with open(csv_file, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(old[0]))
        writer.writeheader()
        writer.writerows(old)
    spec = bench.load_bench(grid)
    cell, current = ("default", "ce", 0), bench.config_hash(bench.cell_config(spec, "default", "ce", 0))

    before = digests(run)
    capsys.readouterr()
    assert commands.main(["bench", "-c", str(grid), "--only", "ce"]) == 0  # its run directory's config.yaml says it is current
    assert "1 of 1 selected cells are done and skipped" in capsys.readouterr().out
    assert digests(run) == before and not _messages(caplog, "INFO", "is run again")

    rundir.discard(run)  # a fresh clone: only the row is left
    assert bench.cell_state(spec, cell, {"config_hash": "0" * 16}, current)[0] == "rerun"  # a row that names another config
    csv_file.write_text(csv_file.read_text().replace(f",{current},", ",,"))  # the row as an older longtail wrote it
    caplog.clear()
    assert cli(capsys, "bench", "-c", grid, "--only", "ce") == (0, [])
    assert not run.exists()  # nothing trained
    (warning,) = _messages(caplog, "WARNING", "carry no config hash")
    assert warning.startswith(f"1 row(s) of '{csv_file}' carry no config hash") and f"delete its row from '{csv_file}'" in warning
    assert _summary_methods(csv_file.with_suffix(".md")) == ["ce"]


# ------------------------------------------------------------------------------ bad bench inputs
BAD_GRIDS = {
    "YAML that does not parse": ("name: g\nmethods: [ce\n", ["not valid YAML at line 3; fix the syntax"]),
    "a list, not a mapping": ("- ce\n- la\n", ["the top level must be a mapping", "not a list"]),
    "a misspelt key": ("name: g\nmethodz: {}\n", ["unknown key 'methodz' (did you mean 'methods'?)"]),
    "a misspelt method key": (None, ["unknown key 'methods.ce.overides' (did you mean 'overrides'?)", "valid keys here: config, overrides"]),
    "not UTF-8": (b"name: \xff\xfe\n", ["line 1, column 7", "is not UTF-8 text; save the file as UTF-8"]),
}


@pytest.mark.parametrize("case", [*BAD_GRIDS, "--seeds abc", "--seeds 1,x", "--seeds 0,7", "results CSV without a seed column",
                                  "results CSV not UTF-8"])
def test_bad_bench_input_is_one_line_and_changes_no_result(case, tmp_path, capsys):
    grid = _grid(tmp_path, seeds=(0, 1))
    results = _hand_written_results(grid)
    extra: list[str] = []
    if case in BAD_GRIDS:
        text, parts = BAD_GRIDS[case]
        if text is None:
            raw = yaml.safe_load(grid.read_text())
            raw["methods"]["ce"]["overides"] = raw["methods"]["ce"].pop("overrides", [])
            text = yaml.safe_dump(raw)
        grid.write_bytes(text if isinstance(text, bytes) else text.encode())
        parts = [str(grid), *parts]
    elif case.startswith("--seeds"):
        extra = case.split()
        word = extra[1].split(",")[-1]
        parts = [f"--seeds: seed {word} is not a seed of this grid; seeds: 0, 1"] if word.isdigit() else \
                [f"--seeds: '{word}' is not an integer; pass seeds like --seeds 0,1,2"]
    else:
        results.write_bytes(b"dataset,method\ndefault,ce\n" if "seed column" in case else b"dataset,method,seed\n\xff\xfe,ce,0\n")
        parts = [f"results file '{results}'", "move it away"]
    before = digests(results.parent)
    code, errors = cli(capsys, "bench", "-c", grid, *extra)
    assert code == 2
    one_error(errors, *parts)
    assert digests(results.parent) == before and not (tmp_path / "grid").exists()


@pytest.mark.parametrize("cut", [
    "default,ce,2,0.4",  # a killed write: fewer fields than the header, no newline
    'default,ce,2,0.4,,,,,,,,,,"gone',  # ... cut inside a quoted field
    "default,ce,x,0.4,,,,,,,,,,gone,\n",  # every field, but a seed that is not an integer
    "default,ce,2" + "," * 20 + "\n",  # more fields than the header
])
def test_a_results_csv_cut_mid_row_is_read_up_to_its_last_complete_row(cut, tmp_path, capsys, caplog):
    """A killed write (or an edit) left a partial or malformed last row: one WARNING, the complete rows kept, nothing trained."""
    grid = _grid(tmp_path, seeds=(0, 1, 2))
    results = _hand_written_results(grid, seeds=(0, 1), cut=cut)
    spec = bench.load_bench(grid)
    caplog.set_level("WARNING", logger="longtail")
    assert cli(capsys, "bench", "-c", grid, "--only", "ce", "--seeds", "0,1") == (0, [])
    (warning,) = _messages(caplog, "WARNING", "cut short or malformed")
    assert warning.startswith(f"'{results}': 1 row(s) cut short or malformed")
    assert [(r["method"], r["seed"]) for r in _csv(results)] == [("ce", "0"), ("ce", "1")]
    assert not (tmp_path / "grid").exists() and len(bench.recorded_rows(spec)) == 2


# ------------------------------------------------------------------------------ the last-resort handler
class OutOfMemoryError(RuntimeError):
    """Named like torch's CUDA one (torch.OutOfMemoryError)."""


@pytest.mark.parametrize(("error", "parts"), [
    (TypeError("unsupported operand type(s) for +: 'int' and 'str'\nsecond line"),
     ["error: unexpected TypeError: unsupported operand type(s) for +: 'int' and 'str'; this is a bug in longtail or an input it does not "
      "check: rerun with --debug for the traceback and report it"]),
    (KeyError("epochs"), ["error: unexpected KeyError: 'epochs'; this is a bug"]),
    (ValueError(), ["error: unexpected ValueError; this is a bug"]),
    (MemoryError(), ["error: out of memory (MemoryError); lower data.batch_size"]),
    (OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), ["error: out of memory (OutOfMemoryError: CUDA out of memory.", "batch_size"]),
    (RecursionError("maximum recursion depth exceeded"), ["error: unexpected RecursionError: maximum recursion depth exceeded: something is nested too deeply"]),
])
def test_an_unexpected_exception_is_one_line_with_status_1_and_debug_shows_it(error, parts, capsys, monkeypatch):
    def failing(args):
        raise error

    monkeypatch.setattr(commands, "cmd_list", failing)
    monkeypatch.delenv("LONGTAIL_DEBUG", raising=False)
    code, errors = cli(capsys, "list")
    assert code == 1
    assert one_error(errors, *parts).count("\n") == 0 and "second line" not in errors[0]
    assert "Traceback" not in capsys.readouterr().err
    for argv in (["--debug", "list"], ["list", "--debug"]):
        with pytest.raises(type(error)):
            commands.main(argv)
    monkeypatch.setenv("LONGTAIL_DEBUG", "1")
    with pytest.raises(type(error)):
        commands.main(["list"])
    monkeypatch.setenv("LONGTAIL_DEBUG", "0")
    assert commands.main(["list"]) == 1


def test_debug_shows_the_traceback_of_an_input_error_too(capsys, monkeypatch):
    def failing(args):
        raise LongtailError("config file 'x.yaml' not found; pass an existing YAML file")

    monkeypatch.setattr(commands, "cmd_list", failing)
    monkeypatch.delenv("LONGTAIL_DEBUG", raising=False)
    assert cli(capsys, "list")[0] == 2
    with pytest.raises(LongtailError, match="x.yaml"):
        commands.main(["list", "--debug"])


def test_a_reader_that_leaves_the_pipe_ends_the_command_quietly(capsys, monkeypatch):
    """`longtail list | head`: no traceback, no message, SIGPIPE's status (in-process, and a real pipe closed before the first write)."""
    def failing(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(commands, "cmd_list", failing)
    assert commands.main(["list"]) == 128 + signal.SIGPIPE and capsys.readouterr().err == ""
    code = "import sys, time; time.sleep(0.5); from longtail.cli import main; sys.exit(main(['list']))"
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGPIPE and err.decode() == ""


# ------------------------------------------------------------------------------ interruptions, by command
RESUME = "continue with `longtail train --resume RUN_DIR`"
UNCHANGED = "interrupted; nothing in the run directory was changed (rerun the command)"
CELLS = "finished cells are kept, rerun the same bench command to continue"
#: command -> (the function its parser runs, argv, what a Ctrl-C says)
COMMANDS = {
    "train": ("longtail.cli.commands:cmd_train", ["train", "-c", "x.yaml"], RESUME),
    "eval": ("longtail.cli.commands:cmd_eval", ["eval", "run"], UNCHANGED),
    "predict": ("longtail.cli.commands:cmd_predict", ["predict", "run", "a.png"], UNCHANGED),
    "report": ("longtail.evaluation.report.cli:run_report", ["report", "run"], UNCHANGED),
    "export": ("longtail.inference.export:_cmd_export", ["export", "run"], UNCHANGED),
    "bench": ("longtail.bench.grid:cmd_bench", ["bench", "-c", "g.yaml"], f"interrupted; {CELLS}"),
    "list": ("longtail.cli.commands:cmd_list", ["list"], "interrupted; rerun the command"),
}


def _patch(monkeypatch, where: str, error: BaseException) -> None:
    import importlib

    module, name = where.split(":")

    def stopped(args):
        raise error

    monkeypatch.setattr(importlib.import_module(module), name, stopped)


@pytest.mark.parametrize("command", COMMANDS)
def test_ctrl_c_advice_depends_on_the_command(command, capsys, monkeypatch):
    where, argv, advice = COMMANDS[command]
    _patch(monkeypatch, where, KeyboardInterrupt())
    code, errors = cli(capsys, *argv)
    assert code == 130
    line = one_error(errors, advice)
    assert ("--resume" in line) == (command == "train")


@pytest.mark.parametrize("command", ["train", "bench"])
def test_a_safe_stop_on_sigterm_is_worded_for_the_command(command, capsys, monkeypatch):
    """Training's own message names the run to resume; inside a grid the advice is to rerun the grid."""
    where, argv, _ = COMMANDS[command]
    _patch(monkeypatch, where, Interrupted("stopped by SIGTERM; checkpoints/last.pt holds every finished batch, continue with "
                                           "`longtail train --resume runs/ce-s0`", signal.SIGTERM))
    code, errors = cli(capsys, *argv)
    assert code == 128 + signal.SIGTERM
    expected = "continue with `longtail train --resume runs/ce-s0`" if command == "train" else f"error: stopped by SIGTERM; {CELLS}"
    assert ("--resume" in one_error(errors, expected)) == (command == "train")
