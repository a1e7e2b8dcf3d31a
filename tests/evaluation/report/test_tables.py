"""Table rendering shared by both formats: escaping, and the text / numeric alignment switch."""

from __future__ import annotations

from longtail.evaluation.report.tables import html_table, md_table


def test_markdown_escapes_pipes() -> None:
    assert md_table(["a", "b|c"], [["1", "x|y"]]) == "| a | b\\|c |\n| --- | --- |\n| 1 | x\\|y |"


def test_html_escapes_and_marks_text_tables() -> None:
    assert html_table(["k"], [["<v>"]]) == "<table><thead><tr><th>k</th></tr></thead><tbody><tr><td>&lt;v&gt;</td></tr></tbody></table>"
    assert html_table(["k"], [], text=True).startswith("<table class='text'>")
