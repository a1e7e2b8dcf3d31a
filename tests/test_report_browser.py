"""The HTML report rendered by a real headless Chromium: every figure decodes, the page is not blank.

Needs the Debian package ``chromium`` (``apt-get install -y chromium``); skipped only when no
chromium binary is on PATH.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from longtail import report as R


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
    run = make_run(tmp_path / "browser_run", posthoc=True)
    page = R.write_report(run)
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))

    dom = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, f"chromium did not run the probe (exit {dom.returncode}): {dom.stderr[-500:]}"
    state = json.loads(match.group(1))
    assert len(state["widths"]) == 4
    assert all(w > 0 for w in state["widths"]), f"an embedded figure failed to load: {state['widths']}"
    assert state["text"] > 500 and state["height"] > 1000

    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--window-size=1280,2200", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), "chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2200, 1280)
    assert pixels.std() > 10  # not a blank page
    assert (pixels < 200).mean() > 0.02  # a fair share of the page is ink: text, tables, plots
