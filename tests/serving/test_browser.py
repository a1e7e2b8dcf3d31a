"""`longtail serve` end to end: a real server process on a free local port, its page driven in headless Chromium.

Playwright drives Debian's ``chromium`` (no browser download); skipped only when either is missing.
"""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import longtail

from .conftest import EXAMPLES

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install -y chromium)")
#: Chromium's flags on a machine without network: no background connections, no first-run work
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(served_run):
    """`longtail serve RUN --port P` in its own process, ready once /health answers; stopped after the module."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "longtail", "serve", str(served_run), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the server did not start: {proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_page_shows_longtail_predicts_answer(server, served_run, tmp_path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    image = EXAMPLES / "3.png"
    out = tmp_path / "preds.csv"
    longtail.predict(served_run, [str(image)], out=out)
    with open(out, newline="") as f:
        expected = next(csv.DictReader(f))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(server + "/")
            page.wait_for_function("document.getElementById('about').textContent.includes('classes')")
            page.set_input_files("#file", str(image))
            page.wait_for_selector("body[data-state=done]", timeout=60_000)
            assert page.inner_text("#prediction") == expected["label"]
            assert page.inner_text("#probability") == f"({100 * float(expected['probability']):.1f}%)"
            bars = page.eval_on_selector_all("#bars .bar", "rows => rows.map(r => [r.dataset.label, r.querySelector('.value').textContent])")
            assert {name: float(v) for name, v in bars} == pytest.approx({n: float(expected[n]) for n, _ in bars}, abs=1e-4)
            assert page.inner_text("#set") == "Prediction set: " + ", ".join(expected["prediction_set"].split(";"))
            if page.is_visible("#overlay"):  # the explain extra is installed: the Grad-CAM overlay decoded
                page.wait_for_function("document.getElementById('overlay').naturalWidth > 0")
        finally:
            browser.close()
