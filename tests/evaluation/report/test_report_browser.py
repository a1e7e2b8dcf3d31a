"""The HTML report rendered by a real headless Chromium: every figure decodes, the page is not blank.

Needs the Debian package ``chromium`` (``apt-get install -y chromium``); skipped only when no
chromium binary is on PATH.
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from longtail.evaluation import report as R


def _load_make_run():
    """``make_run`` from test_report.py, loaded by path so any pytest import mode works."""
    spec = importlib.util.spec_from_file_location("_longtail_report_fixtures", Path(__file__).with_name("test_report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_run


make_run = _load_make_run()

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (install the Debian package: apt-get install -y chromium)")

# writes, once the page has loaded, the load state of every <img> and the visible text size into the DOM
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    widths: images.map(img => (img.complete ? img.naturalWidth : -1)),
    text: document.body.innerText.length,
    height: document.body.scrollHeight,
  });
  document.body.appendChild(probe);
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    run = make_run(tmp_path / "browser_run", posthoc=True, decision=True)
    page = R.write_report(run)
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))

    dom = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, f"chromium did not run the probe (exit {dom.returncode}): {dom.stderr[-500:]}"
    state = json.loads(match.group(1))
    assert len(state["widths"]) == 6  # counts+recall, confusion, reliability, ROC/PR, error gallery, curves
    assert all(w > 0 for w in state["widths"]), f"an embedded figure failed to load: {state['widths']}"
    assert state["text"] > 500 and state["height"] > 1000

    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--window-size=1280,2200", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), "chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2200, 1280)
    assert pixels.std() > 10  # not a blank page
    assert (pixels < 200).mean() > 0.02  # a fair share of the page is ink: text, tables, plots


# the new decision sections alone: their headings, tables and figures, as the browser lays them out
SECTION_PROBE = """<script>
window.addEventListener("load", () => {
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify([...document.querySelectorAll("h2")].map(h => {
    const parts = [];
    for (let el = h.nextElementSibling; el && el.tagName !== "H2"; el = el.nextElementSibling) parts.push(el);
    const imgs = parts.filter(el => el.tagName === "IMG");
    const tables = parts.filter(el => el.tagName === "TABLE");
    return {title: h.textContent, images: imgs.map(i => [i.naturalWidth, i.getBoundingClientRect().height]),
            rows: tables.map(t => t.rows.length), tableHeight: tables.reduce((a, t) => a + t.getBoundingClientRect().height, 0)};
  }));
  document.body.appendChild(probe);
});
</script>"""


def test_decision_sections_render_in_headless_chromium(tmp_path: Path) -> None:
    """ROC/PR curves, operating points, the deployment-prior table and the error gallery: laid out, loaded and visible."""
    run_dir = make_run(tmp_path / "clinic", posthoc=True, decision=True)
    run = R.load_run(run_dir)
    page = tmp_path / "decision.html"
    page.write_text(R.render_html(run, R.decision_sections(run)).replace("</body>", SECTION_PROBE + "</body>"))
    dom = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, f"chromium did not run the probe (exit {dom.returncode}): {dom.stderr[-500:]}"
    sections = {s["title"]: s for s in json.loads(html.unescape(match.group(1)))}
    assert list(sections) == ["ROC and precision-recall curves (test)", "Operating points (positive: mel<a> + nv)",
                              "Metrics under the deployment prior", "Most confident errors (test)"]
    roc = sections["ROC and precision-recall curves (test)"]
    assert roc["rows"] == [6] and len(roc["images"]) == 1 and roc["images"][0][0] > 500 and roc["images"][0][1] > 150
    assert sections["Operating points (positive: mel<a> + nv)"]["rows"] == [4]  # header + 3 specificities
    prior = sections["Metrics under the deployment prior"]
    assert prior["rows"] == [6, 1 + 1 + 3 + 2 * 5] and prior["tableHeight"] > 200  # priors; accuracy, positive set, PPV/NPV per class
    gallery = sections["Most confident errors (test)"]["images"]
    assert len(gallery) == 1 and gallery[0][0] > 500 and gallery[0][1] > 150

    shot = tmp_path / "decision.png"
    chromium(tmp_path, "--window-size=1280,2600", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), "chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    grey = pixels.mean(axis=2)
    assert grey.std() > 10 and (grey < 200).mean() > 0.02  # text, tables and plots, not a blank page
    colour = (pixels.max(axis=2) - pixels.min(axis=2)) > 60
    assert colour.mean() > 0.005  # the coloured curves and the thumbnails are drawn
    filled_rows = np.flatnonzero((grey < 200).mean(axis=1) > 0.01)
    assert filled_rows.max() > 1500  # the sections reach far down the page: all four rendered, not just the first


# the alt text (figure stem) and load state of every <img>, and the page's visible text
TRUST_PROBE = PROBE.replace("widths: images.map(img => (img.complete ? img.naturalWidth : -1)),",
                            "widths: images.map(img => [img.alt, img.complete ? img.naturalWidth : -1]), body: document.body.innerText,")


def test_trust_and_subgroup_sections_render_in_headless_chromium(tmp_path: Path) -> None:
    """A real tiny run with every trust option: its new sections' tables and figures render in a browser."""
    import longtail

    from ..test_cohorts import _csv_run

    cfg = _csv_run(tmp_path, subgroups=["sex", "age"], aggregate_by="lesion", conformal={"alpha": 0.2}, selective={"target_coverage": 0.8})
    cfg["posthoc"] = {"temperature": "scalar"}
    page = longtail.train(cfg).run_dir / "report.html"
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", TRUST_PROBE + "</body>"))
    dom = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, f"chromium did not run the probe (exit {dom.returncode}): {dom.stderr[-500:]}"
    state = json.loads(html.unescape(match.group(1)))
    widths = dict(state["widths"])
    assert widths["risk_coverage"] > 0 and widths["subgroups"] > 0, widths
    for title in ("Calibration (test)", "Prediction sets (alpha 0.2)", "Selective prediction (test)", "Subgroups (test)", "Cases (test)"):
        assert title in state["body"], title
    assert "after temperature scaling" in state["body"] and "mean set size" in state["body"]
