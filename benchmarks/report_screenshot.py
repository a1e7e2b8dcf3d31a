"""A screenshot of some sections of a run's report, rendered by headless Chromium (docs/img/).

    python benchmarks/report_screenshot.py RUN_DIR --first "Calibration" --last "Cases" --out docs/img/trust_sections.png

The page is rendered at 1280 px wide; the crop runs from the top of the first section whose title
starts with --first to the top of the section after the one whose title starts with --last.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

WIDTH = 1280
PROBE = """<script>
window.addEventListener("load", () => {
  const heads = [...document.querySelectorAll("h2")].map(h => [h.textContent, h.getBoundingClientRect().top + window.scrollY]);
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({heads: heads, height: document.body.scrollHeight});
  document.body.appendChild(probe);
});
</script>"""


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    binary = next(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b))
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180, check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--first", required=True)
    ap.add_argument("--last", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    page = args.run_dir.resolve() / "report.html"  # a file URI needs an absolute path
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        probed = tmp_path / "probed.html"
        probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        dom = chromium(tmp_path / "p1", f"--window-size={WIDTH},1000", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
        state = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S).group(1))
        heads = state["heads"]
        start = next(i for i, (t, _) in enumerate(heads) if t.startswith(args.first))
        end = next(i for i, (t, _) in enumerate(heads) if t.startswith(args.last))
        top = int(heads[start][1]) - 10
        bottom = int(heads[end + 1][1]) - 10 if end + 1 < len(heads) else int(state["height"])
        shot = tmp_path / "shot.png"
        chromium(tmp_path / "p2", f"--window-size={WIDTH},{int(state['height']) + 50}", f"--screenshot={shot}", page.as_uri())
        image = Image.open(shot).crop((0, top, WIDTH, bottom))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({image.width}x{image.height}) from sections '{heads[start][0]}' to '{heads[end][0]}' of {page}")


if __name__ == "__main__":
    main()
