"""Headless Chromium opens the HTML report from disk: charts rendered, no console errors, a screenshot.

Chromium is driven over the DevTools protocol (its own websocket endpoint on 127.0.0.1) with the
`websockets` client; no browser driver package, nothing fetched. CI installs it with
`apt-get install -y chromium`.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from tests.reportdb import dev_db

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars", "--window-size=1280,2000",
         "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1"]


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("Chromium not found: apt-get install -y chromium")


class Browser:
    """One headless Chromium with one page, spoken to over the DevTools protocol."""

    def __init__(self, profile: Path):
        from websockets.sync.client import connect

        self.proc = subprocess.Popen([chromium_binary(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                pytest.fail("Chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=20)
        self.ids = itertools.count(1)
        self.events: list[dict] = []
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(method)

    def call(self, method: str, timeout: float = 30, **params) -> dict:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def open(self, url: str) -> list[str]:
        """Navigate, wait for the load event and a moment after; return the console errors seen."""
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))))
        self.call("Runtime.evaluate", expression="new Promise(r => setTimeout(r, 300))", awaitPromise=True)
        return self.errors()

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif m == "Runtime.exceptionThrown":
                out.append("exception: " + p["exceptionDetails"].get("text", ""))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
        return out

    def eval(self, js: str):
        return self.call("Runtime.evaluate", expression=js, returnByValue=True)["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, shared_data, encoder):
    from callqa.pipelines.reports.report import build_week_report, write_report

    out = tmp_path_factory.mktemp("browser-report")
    with duckdb.connect(str(dev_db(tmp_path_factory)), read_only=True) as con:
        write_report(build_week_report(con, "2026-W46", encoder=encoder), out)
    return out


CHART_CHECK = """(() => {
  const charts = [...document.querySelectorAll('svg.chart')].map(s => {
    const r = s.getBoundingClientRect();
    return {name: s.dataset.chart, w: r.width, h: r.height};
  });
  const bars = [...document.querySelectorAll('svg[data-chart="item-pass-rates"] rect.bar')]
    .map(b => b.getBoundingClientRect().width);
  const lines = [...document.querySelectorAll('svg[data-chart="weekly-trends"] path.trend')]
    .map(p => ({series: p.dataset.series, length: p.getTotalLength()}));
  return {charts, bars, lines, rows: document.querySelectorAll('table.scorecard tr[data-agent]').length,
          audios: document.querySelectorAll('audio').length};
})()"""


def test_report_renders_charts_without_console_errors(browser, report_dir, tmp_path):
    errors = browser.open((report_dir / "index.html").as_uri())
    assert errors == []
    got = browser.eval(CHART_CHECK)
    names = {c["name"] for c in got["charts"]}
    assert {"item-pass-rates", "weekly-trends"} <= names
    assert all(c["w"] > 200 and c["h"] > 100 for c in got["charts"])
    assert len(got["bars"]) >= 4 and all(w > 0 for w in got["bars"])
    a06 = [ln for ln in got["lines"] if ln["series"] == "A06"]
    assert a06 and a06[0]["length"] > 50  # three weekly points joined by a visible line
    assert got["rows"] == 6 and got["audios"] > 0
    shot = browser.screenshot(tmp_path / "report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    keep = report_dir / "screenshot-index.png"
    shutil.copy(shot, keep)


def test_drill_down_pages_open_cleanly(browser, report_dir):
    for page in (report_dir / "agents" / "A06.html", report_dir / "calls" / "D027.html"):
        assert browser.open(page.as_uri()) == [], page.name
    assert browser.eval("document.querySelectorAll('mark.ev-fail').length") >= 1
    assert browser.eval("[...document.querySelectorAll('a')].every(a => !a.href.startsWith('http'))")


def test_the_harness_sees_console_errors(browser, tmp_path):
    """The check above can fail: a page that logs an error and loads a missing file is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="missing.png"><script>console.error("boom")</script>'
                   "</body></html>", encoding="utf-8")
    errors = browser.open(bad.as_uri())
    assert any("boom" in e for e in errors)
    assert any("missing.png" in e for e in errors)
