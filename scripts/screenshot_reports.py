"""Screenshot HTML reports in headless Chromium at a given width and check that nothing is cut off.

    python scripts/screenshot_reports.py runs/demo/report.html [more.html ...] [--width 1280] [--out shots/]

For each report: a layout check run in the browser (the page must not be wider than the window;
tables wider than their box must scroll inside it, which the report's CSS provides), then a full-page
screenshot ``<out>/<name>.png`` and tiles ``<name>-<k>.png`` of at most 1,600 px height for reading.
Needs Debian's ``chromium`` (``apt-get install chromium``) or ``$CHROMIUM``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TILE_HEIGHT = 1600
PROBE = """<script>
window.addEventListener('load', () => {
  const W = window.innerWidth;
  const tables = [...document.querySelectorAll('table')].map((t, i) => ({
    index: i, caption: (t.caption ? t.caption.textContent : '').slice(0, 60),
    scrolls: t.scrollWidth > t.clientWidth + 1, right: Math.round(t.getBoundingClientRect().right)}));
  const wide = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > W + 1
      && !e.closest('table')).map(e => e.tagName).slice(0, 10);
  const probe = document.createElement('pre');
  probe.id = 'layout-probe';
  probe.textContent = JSON.stringify({width: W, page_width: document.documentElement.scrollWidth,
    page_height: document.documentElement.scrollHeight, tables, outside_window: wide});
  document.body.appendChild(probe);
});
</script>"""


def chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    sys.exit("no chromium found: apt-get install chromium, or set $CHROMIUM")


def browser(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1"]
    return subprocess.run([chromium(), *flags, *args], capture_output=True, text=True, timeout=timeout)


def layout(report: Path, width: int) -> dict:
    """The probe's findings for ``report`` in a window ``width`` px wide."""
    with tempfile.TemporaryDirectory() as tmp:
        probed = Path(tmp) / "probed.html"
        probed.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
        dom = browser([f"--window-size={width},1000", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()]).stdout
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom, re.S)
    if not found:
        sys.exit(f"{report}: the layout probe did not run (chromium output: {dom[:200]!r})")
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


def screenshot(report: Path, width: int, height: int, png: Path) -> list[Path]:
    """Full-page PNG plus tiles of at most TILE_HEIGHT px."""
    browser([f"--window-size={width},{height}", f"--screenshot={png}", report.resolve().as_uri()])
    from PIL import Image

    image = Image.open(png)
    tiles = []
    for k, top in enumerate(range(0, image.height, TILE_HEIGHT)):
        tile = png.with_name(f"{png.stem}-{k}.png")
        image.crop((0, top, image.width, min(top + TILE_HEIGHT, image.height))).save(tile)
        tiles.append(tile)
    return tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--out", type=Path, default=Path("runs/screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    for report in args.reports:
        found = layout(report, args.width)
        name = report.parent.name + "-" + report.stem
        tiles = screenshot(report, args.width, min(found["page_height"] + 40, 30000), args.out / f"{name}.png")
        scrolling = [t["caption"] or f"table {t['index']}" for t in found["tables"] if t["scrolls"]]
        cut = found["page_width"] > found["width"] or found["outside_window"]
        failed |= bool(cut)
        print(f"{report}: page {found['page_width']}×{found['page_height']} px in a {found['width']} px window; "
              f"{len(found['tables'])} tables, {len(scrolling)} scroll inside their box {scrolling}; "
              f"{'CUT OFF: page wider than the window ' + str(found['outside_window']) if cut else 'nothing past the window'}; "
              f"{len(tiles)} tiles in {args.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
