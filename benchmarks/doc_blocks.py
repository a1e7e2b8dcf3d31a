"""Replace a marked block of a docs page with a benchmark script's fresh table (shared by the scripts here)."""

from __future__ import annotations

from pathlib import Path


def replace_block(doc: Path, marker: str, body: str) -> Path:
    """Write ``body`` between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` (appended when absent)."""
    text = doc.read_text() if doc.is_file() else ""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text += "\n" + block + "\n"
    doc.write_text(text)
    return doc


def print_and_publish(table: str, machine: str, command: str, data: str, doc: Path, marker: str, write: bool = True) -> None:
    """Print a benchmark table with its machine line and, if ``write``, put it with its provenance into ``doc``."""
    print(table)
    print(machine)
    if write:
        body = f"Command: `{command}`  \nMachine: {machine}  \nData: {data}\n\n{table}"
        print(f"updated {replace_block(doc, marker, body)}")


def markdown_table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
    """A Markdown table; columns after the first ``text_columns`` are right-aligned numbers."""
    align = ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, align, *rows])


def machine_line(threads: int, extra: str = "") -> str:
    """What the numbers ran on, in one line."""
    import platform
    import sys

    import torch

    from longtail.rundir.provenance import cpu_model

    return f"{cpu_model() or platform.machine()}, {threads} torch threads, {sys.platform}, torch {torch.__version__}, CPU only{extra}"
