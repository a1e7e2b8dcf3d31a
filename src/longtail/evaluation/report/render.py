"""Renders the sections of a run as one self-contained HTML page and as Markdown, and writes both.

The sections are built once (``sections.build_sections``) and rendered twice, so the two files
always say the same thing. The Markdown version links the same PNGs from ``report_files/``.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from .run import Run, load_run
from .section import Section
from .sections import build_sections
from .tables import html_table, md_table

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} th,td{border:1px solid #ddd;padding:.25em .6em}
th{background:#f4f4f4} td:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}
table.text td{text-align:left}
.note{background:#fff6dd;border-left:4px solid #e0b000;padding:.4em .8em;margin:.3em 0}
img{max-width:100%;height:auto;display:inline-block;vertical-align:top;margin:.6em .6em .6em 0}
"""


def render_html(run: Run, sections: list[Section]) -> str:
    """One self-contained page: figures embedded as base64 PNG, so the file can be mailed or archived alone."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(run.name)} - longtail report</title><style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>{html.escape(run.name)}</h1><p>Run directory: <code>{html.escape(str(run.run_dir))}</code></p>")
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in run.notes]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(t)}</p>" for t in s.text]
        parts += [html_table(h, r, s.text_tables) for h, r in s.tables]
        for stem, png in s.figures:
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<img alt='{html.escape(stem)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(run: Run, sections: list[Section], files_dir: str) -> str:
    """The same content in Markdown; figures are linked from ``files_dir`` (relative to the run directory)."""
    parts = [f"# {run.name}", "", f"Run directory: `{run.run_dir}`", ""]
    parts += [f"> {n}\n" for n in run.notes]
    for s in sections:
        parts += [f"## {s.title}", ""]
        parts += [f"{t}\n" for t in s.text]
        parts += [md_table(h, r) + "\n" for h, r in s.tables]
        parts += [f"![{stem}]({files_dir}/{stem}.png)\n" for stem, _ in s.figures]
    return "\n".join(parts)


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ ``report_files/*.png``); return the HTML path.

    Each file is written atomically (a kill leaves the old report or the new one, file by file), and
    only inside the run: a link at a file's place is replaced, a folder that links out is refused."""
    from ... import rundir  # loads torch: only when writing, so importing the report package stays light

    run = load_run(run_dir)
    root = run.run_dir
    for path in (root / rundir.REPORT_FILES / "figure.png", root / rundir.REPORT_MD, root / rundir.REPORT_HTML):
        rundir.check_inside(path, root)  # before drawing anything
    sections = build_sections(run)
    for stem, png in (f for s in sections for f in s.figures):
        rundir.atomic_write_bytes(root / rundir.REPORT_FILES / f"{stem}.png", png, within=root)
    rundir.atomic_write_bytes(root / rundir.REPORT_MD, render_markdown(run, sections, rundir.REPORT_FILES).encode(), within=root)
    out = root / rundir.REPORT_HTML
    rundir.atomic_write_bytes(out, render_html(run, sections).encode(), within=root)
    return out
