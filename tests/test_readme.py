"""The README opens with the two new-user commands, CI runs exactly the README's test command, and the
"Using it" section runs top to bottom when pasted right after the quickstart."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip() and not line.strip().startswith("#")]


def test_readme_opens_with_two_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert "longtail train -c configs/quickstart.yaml" in commands[0]
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_command_verbatim():
    test_cmd = readme_commands()[1].split("&& ", 2)[-1]  # after venv creation and activation
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in [line.strip() for line in ci], test_cmd
    assert (ROOT / "configs" / "quickstart.yaml").is_file()


# --------------------------------------------------------------------------- "Using it", in order
TINY = ["train.epochs=2", "train.tensorboard=false"]  # the README's runs, shortened: the commands are the same


def using_it_blocks() -> tuple[list[str], str]:
    """The bash lines (comments stripped) and the Python snippet of the README's "Using it" section."""
    section = (ROOT / "README.md").read_text().split("## Using it", 1)[1].split("\n## ", 1)[0]
    bash = section.split("```bash", 1)[1].split("```", 1)[0]
    python = section.split("```python", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in bash.strip().splitlines() if line.split("#", 1)[0].strip()], python


@pytest.mark.slow
def test_using_it_runs_top_to_bottom_right_after_the_quickstart(tmp_path, monkeypatch, capsys):
    import csv
    import json
    import shlex

    import yaml

    from longtail.cli.commands import main

    clone = tmp_path / "clone"
    (clone / "benchmarks").mkdir(parents=True)
    for folder in ("configs", "examples"):
        (clone / folder).symlink_to(ROOT / folder)
    grid = yaml.safe_load((ROOT / "benchmarks" / "quickstart.yaml").read_text())
    grid.update(overrides=TINY, seeds=[0])  # one seed of two 2-epoch runs
    (clone / "benchmarks" / "quickstart.yaml").write_text(yaml.safe_dump(grid))
    monkeypatch.chdir(clone)

    quickstart = shlex.split(readme_commands()[0].split("&& ")[-1])
    assert quickstart[:2] == ["longtail", "train"] and main([*quickstart[1:], *TINY]) == 0
    lines, snippet = using_it_blocks()
    assert len(lines) == 10
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "longtail", line
        extra = TINY if argv[1] == "train" and "--resume" not in argv else []
        assert main([*argv[1:], *extra]) == 0, line
    out = capsys.readouterr().out

    assert json.loads((clone / "runs" / "quickstart-2" / "results.json").read_text())["epochs"] == 2
    assert yaml.safe_load((clone / "runs" / "quickstart-2" / "config.yaml").read_text())["loss"] == {"name": "focal", "gamma": 2}
    with open(clone / "preds.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["image"]).name for r in rows) == [f"{c}.png" for c in range(10)]
    assert (clone / "runs" / "quickstart" / "report.html").is_file()
    assert "runs/quickstart-2" in out and "ETA" in out
    assert (clone / "runs" / "bench-quickstart" / "results.csv").is_file()

    scope: dict = {}
    exec(snippet, scope)
    assert scope["result"].run_dir == Path("runs") / "quickstart-3" and scope["result"].finished
    with open(clone / "preds.csv") as f:
        assert [Path(r["image"]).name for r in csv.DictReader(f)] == ["3.png"]
