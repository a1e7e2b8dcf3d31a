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
