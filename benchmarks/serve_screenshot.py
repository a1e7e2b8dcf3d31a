"""A screenshot of `longtail serve`'s page after one image was dropped on it (docs/img/serve_page.png).

    python benchmarks/serve_screenshot.py RUN_DIR IMAGE --out docs/img/serve_page.png

Starts ``longtail serve RUN_DIR`` on a free port of 127.0.0.1, opens its page in headless Chromium
(Playwright driving Debian's ``chromium``), uploads IMAGE through the page's file input, waits for the
answer (and the Grad-CAM overlay when the run can be explained) and saves the page at 1100 px wide.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from serve_load import free_port, wait_ready

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("image")
    parser.add_argument("--out", default="docs/img/serve_page.png")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or sys.exit("no chromium on PATH (apt-get install -y chromium)")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "longtail", "serve", args.run_dir, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_ready(port, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.getElementById('about').textContent.includes('classes')")
            page.set_input_files("#file", args.image)
            page.wait_for_selector("body[data-state=done]", timeout=120_000)
            if page.is_visible("#overlay"):
                page.wait_for_function("document.getElementById('overlay').naturalWidth > 0")
            page.screenshot(path=args.out, full_page=True)
            print(f"wrote {args.out}: prediction {page.inner_text('#prediction')} {page.inner_text('#probability')}")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
