"""The HTML dashboard renders in a real headless Chromium with its plots drawn, and loads
nothing from anywhere.

Chromium loads the page in a frame of a small harness page (same folder, file access allowed
between local files); once everything has loaded, the harness measures every plot of the frame
-- its size on screen and the marks drawn in it -- and writes the figures into its own document,
which ``--dump-dom`` prints. Without Chromium the test fails, naming the package to install: CI
installs Debian's ``chromium`` (``.ci/run``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from authmodels.report import collect, render_html
from authmodels.testing.factories import UserFactory
from tests.report import rows

#: Debian's flags for a headless Chromium on a machine with no display and no network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

HARNESS = """<!DOCTYPE html>
<html><head><meta charset="utf-8"></head><body>
<iframe id="page" src="dashboard.html" style="width:1280px;height:4000px"></iframe>
<pre id="result">pending</pre>
<script>
window.addEventListener("load", () => {
  const doc = document.getElementById("page").contentDocument;
  const plots = [...doc.querySelectorAll("svg.plot")].map(svg => {
    const box = svg.getBoundingClientRect();
    const drawn = selector => [...svg.querySelectorAll(selector)].filter(m => {
      const b = m.getBoundingClientRect();
      return b.width > 0 && b.height > 0;
    }).length;
    return {name: svg.dataset.plot, width: box.width, height: box.height,
            marks: drawn("rect.bar, path.gauge-track"), values: drawn("path.gauge-value")};
  });
  document.getElementById("result").textContent = JSON.stringify({
    title: doc.title, plots: plots,
    resources: doc.defaultView.performance.getEntriesByType("resource").map(r => r.name)
  });
});
</script></body></html>
"""


def chromium() -> str:
    """The Chromium executable (``$AUTHMODELS_CHROMIUM``, else ``chromium`` on the PATH)."""
    found = os.environ.get("AUTHMODELS_CHROMIUM") or shutil.which("chromium")
    found = found or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "headless Chromium is needed to check the dashboard: install Debian's chromium "
            "(apt-get install -y chromium) or set AUTHMODELS_CHROMIUM"
        )
    return found


def render_in_chromium(page: str, folder: Path) -> dict[str, Any]:
    """Load ``page`` in headless Chromium; the harness's measurements of it."""
    (folder / "dashboard.html").write_text(page, encoding="utf-8")
    (folder / "harness.html").write_text(HARNESS, encoding="utf-8")
    run = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={folder / 'profile'}",
         "--allow-file-access-from-files", "--window-size=1400,1000",
         "--virtual-time-budget=10000", "--dump-dom", (folder / "harness.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    match = re.search(r'<pre id="result">(.*?)</pre>', run.stdout, re.DOTALL)
    assert match and match.group(1) != "pending", run.stdout[-2000:]
    return dict(json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&")))


@pytest.fixture
def page(db: Session, authmodels_user_factory: UserFactory) -> str:
    """The dashboard of a database under attack (rows of the test's transaction)."""
    a, b = authmodels_user_factory(), authmodels_user_factory()
    rows.login_attempts(db, 150, ip="198.51.100.7", ago="2 minutes")
    rows.login_attempts(db, 40, result="success", ago="3 hours")
    rows.security_events(db, 4, "refresh_token.reused", "high", ago="2 days")
    rows.security_events(db, 1, "webauthn.sign_count_regression", "critical")
    rows.sessions(db, a, 3, dpop=True)
    rows.sessions(db, b, 12)
    rows.deliveries(db, "email", {"delivered": 8, "failed": 2})
    rows.deliveries(db, "sms", {"delivered": 5, "sent": 1})
    return render_html(collect(db.connection()))


def test_the_dashboard_renders_in_chromium_with_its_plots(page: str, tmp_path: Path) -> None:
    measured = render_in_chromium(page, tmp_path)
    assert measured["title"] == "authmodels security dashboard"
    plots = {p["name"]: p for p in measured["plots"]}
    assert set(plots) == {
        "failed-logins", "security-events", "sessions-per-user", "delivery",
        "gauge-token_digests", "gauge-ip_and_user_agent_hashes", "gauge-row_level_security",
        "gauge-dpop_bound", "gauge-retention", "gauge-audit_coverage", "gauge-argon2id_passwords",
    }  # fmt: skip
    for name, plot in plots.items():
        assert plot["width"] > 100 and plot["height"] > 80, plot
        assert plot["marks"] > 0, f"{name} drew nothing: {plot}"
    # a bar per bucket with attempts, per day with events, per session count, per channel
    assert plots["failed-logins"]["marks"] >= 2
    assert plots["security-events"]["marks"] == 2
    assert plots["sessions-per-user"]["marks"] == 2  # 3 sessions: one user; 12: another
    assert plots["delivery"]["marks"] == 4
    # a gauge's arc shows its share: 3 of 15 live sessions are DPoP-bound, no session was
    # created by a flow that audits it
    assert plots["gauge-dpop_bound"]["values"] == 1
    assert plots["gauge-audit_coverage"]["values"] == 0
    assert plots["gauge-token_digests"]["values"] == 1
    assert measured["resources"] == []  # the page started no fetch (of a script, style, image)


def test_the_dashboard_needs_nothing_from_the_network(page: str) -> None:
    assert "<script" not in page.lower()
    assert not re.search(r"\b(src|href)\s*=", page, re.IGNORECASE)
    assert "url(" not in page and "@import" not in page
    # the only address is SVG's namespace name, which is never fetched
    assert set(re.findall(r"https?://[^\"' )]+", page)) == {"http://www.w3.org/2000/svg"}
