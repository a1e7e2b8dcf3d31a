"""One titled block of the report, independent of the output format (HTML or Markdown)."""

from __future__ import annotations

from dataclasses import dataclass, field

Table = tuple[list[str], list[list[str]]]  # (header, rows), every cell already formatted


@dataclass
class Section:
    title: str
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)  # (file stem, png)
    text: list[str] = field(default_factory=list)
    text_tables: bool = False  # left-align every column (key/value tables)
