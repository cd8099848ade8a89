"""report.html in a real headless browser: no console errors, every plot renders, no sideways scroll."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from refconv.report import write_reports

RUNS = Path(__file__).parent / "data" / "runs"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")

# Appended to a COPY of the report (the report itself has no scripts): after load, the title says how many
# inline SVG plots have a laid-out box with marks in it, and whether the page is wider than the window.
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.querySelectorAll('figure.plot svg')];
  const ok = imgs.filter(s => { const r = s.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && s.querySelectorAll('path, circle, rect, line').length > 0; }).length;
  const wide = document.documentElement.scrollWidth > window.innerWidth;
  document.title = `probe images=${imgs.length} decoded=${ok} wide=${wide}`;
});
</script>"""


def _chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,2400", "--virtual-time-budget=5000", *extra, page.as_uri()]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)  # type: ignore[arg-type]


@pytest.fixture
def report(tmp_path: Path) -> Path:
    run = Path(shutil.copytree(RUNS / "regressed", tmp_path / "run"))
    return write_reports(run)[1]


def test_every_plot_renders_and_nothing_scrolls_sideways(tmp_path, report):
    probed = report.with_name("probed.html")
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    result = _chromium(tmp_path, probed, "--dump-dom")
    title = re.search(r"<title>(probe[^<]*)</title>", result.stdout)
    assert title, result.stderr[-2000:]
    m = re.fullmatch(r"probe images=(\d+) decoded=(\d+) wide=(\w+)", title.group(1))
    assert m and int(m.group(1)) >= 3 and m.group(1) == m.group(2) and m.group(3) == "false", title.group(1)


def test_no_console_errors(tmp_path, report):
    result = _chromium(tmp_path, report, "--enable-logging=stderr", "--v=0", "--dump-dom")
    assert "</html>" in result.stdout
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
