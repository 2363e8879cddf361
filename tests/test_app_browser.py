"""Headless Chromium uses the review workstation served by uvicorn: a call page plays the whole call from an
evidence span, an override submitted through the page shows up in its history, the queue answers j/k, and no
page logs a console error. Screenshots land in docs/img/ for docs/app.md."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from tests.reportdb import dev_db_copy
from tests.test_browser import Browser

IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(app):
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    return srv, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory, shared_data):
    from callqa.pipelines.app.server import create_app

    db = dev_db_copy(tmp_path_factory, "browserapp")
    srv, thread, base = serve(create_app(db))
    yield base, db
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium-app"))
    yield b
    b.close()


def gesture(b: Browser, js: str, await_promise: bool = False):
    """Evaluate as if the user did it (media may play), returning the value."""
    res = b.call("Runtime.evaluate", expression=js, returnByValue=True, userGesture=True, awaitPromise=await_promise)
    if "exceptionDetails" in res:
        raise AssertionError(res["exceptionDetails"])
    return res["result"].get("value")


def wait_for_load(b: Browser, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not any(e.get("method") == "Page.loadEventFired" for e in b.events):
        b.events.append(json.loads(b.ws.recv(timeout=max(0.1, deadline - time.monotonic()))))
    b.call("Runtime.evaluate", expression="new Promise(r => setTimeout(r, 300))", awaitPromise=True)


def key(b: Browser, k: str) -> None:
    for kind in ("keyDown", "keyUp"):
        b.call("Input.dispatchKeyEvent", type=kind, key=k, text=k if kind == "keyDown" else "",
               code=f"Key{k.upper()}", windowsVirtualKeyCode=ord(k.upper()))


PLAY_CHECK = """new Promise((resolve) => {
  const a = document.getElementById('call-audio');
  const t0 = Date.now();
  (function poll() {
    if ((a.currentTime > 0 && !a.paused) || Date.now() - t0 > 8000) {
      resolve({t: a.currentTime, paused: a.paused, error: a.error && a.error.message, ready: a.readyState});
    } else setTimeout(poll, 100);
  })();
})"""


def test_call_page_plays_evidence_and_takes_an_override(server, browser):
    base, db = server
    IMG.mkdir(parents=True, exist_ok=True)
    assert browser.open(f"{base}/?week=2026-W46") == []
    browser.screenshot(IMG / "app-home.png")

    assert browser.open(f"{base}/calls/D001") == []
    seek = browser.eval("(() => { const b = document.querySelector('#item-selling_point button.seek[data-seek]');"
                        " return b ? Number(b.dataset.seek) : null; })()")
    assert seek is not None and seek > 5
    gesture(browser, "document.querySelector('#item-selling_point button.seek[data-seek]').click()")
    played = gesture(browser, PLAY_CHECK, await_promise=True)
    assert played["error"] is None and played["t"] > 0, played
    assert played["t"] >= seek - 0.5  # it jumped to the evidence, not to the start
    gesture(browser, "document.getElementById('call-audio').pause()")
    clip_ok = gesture(browser, """new Promise((resolve) => {
      const a = document.querySelector('audio.clip'); a.preload = 'auto';
      a.addEventListener('loadedmetadata', () => resolve(a.duration), {once: true});
      a.addEventListener('error', () => resolve(-1), {once: true}); a.load(); })""", await_promise=True)
    assert clip_ok > 2  # the evidence clip is real audio (its span plus padding)
    browser.screenshot(IMG / "app-call.png")

    with duckdb.connect(str(db), read_only=True) as con:
        auto = con.execute("SELECT v.verdict FROM item_verdicts v JOIN recordings r USING (recording_id) "
                           "WHERE r.call_id = 'D001' AND v.item_id = 'usage_scenario'").fetchone()[0]
    flipped = "fail" if auto == "pass" else "pass"
    browser.events.clear()
    gesture(browser, f"""(() => {{
      const f = document.querySelector('#item-usage_scenario form.review-form');
      f.closest('details').open = true;
      f.querySelector('[name=verdict]').value = '{flipped}';
      f.querySelector('[name=reviewer]').value = 'browser-lee';
      f.querySelector('[name=comment]').value = 'heard it on the recording';
      f.requestSubmit(); }})()""")
    wait_for_load(browser)  # the page reloads after the review is saved
    assert browser.errors() == []
    row = browser.eval("""(() => { const r = document.querySelector('#item-usage_scenario .history-table tbody tr');
      return r && [...r.cells].map(c => c.textContent.trim()); })()""")
    assert row is not None and row[1:] == ["browser-lee", auto, flipped, "heard it on the recording"]
    assert browser.eval("document.querySelector('#item-usage_scenario').dataset.verdict") == flipped
    listed = subprocess.run([sys.executable, "-m", "callqa.pipelines.cli", "review", "list", "--db", str(db),
                             "--call", "D001", "--item", "usage_scenario", "--json"],
                            capture_output=True, text=True, timeout=120, check=True)
    latest = json.loads(listed.stdout)[0]  # `callqa review list` shows the review the page stored
    assert (latest["reviewer"], latest["verdict"], latest["auto_verdict"], latest["comment"]) == (
        "browser-lee", flipped, auto, "heard it on the recording")

    assert browser.open(f"{base}/queue?week=2026-W46") == []
    first = browser.eval("document.querySelector('tr.q-row.selected').dataset.call")
    key(browser, "j")
    second = browser.eval("[...document.querySelectorAll('tr.q-row')]"
                          ".indexOf(document.querySelector('tr.q-row.selected'))")
    assert first and second == 1
    browser.screenshot(IMG / "app-queue.png")
    assert browser.errors() == []


def test_rules_bench_and_appeals_pages_work_in_the_browser(server, browser):
    base, _ = server
    assert browser.open(f"{base}/appeals") == []
    assert browser.open(f"{base}/agents/A06?week=2026-W46") == []
    assert browser.open(f"{base}/rules?checklist=team_follow_up") == []
    gesture(browser, "document.querySelector('#dialogue-form').requestSubmit()")
    rows = gesture(browser, """new Promise((resolve) => { const t0 = Date.now(); (function poll() {
      const r = document.querySelectorAll('#dialogue-result tbody tr');
      if (r.length || Date.now() - t0 > 20000) resolve([...r].map(x => x.dataset.item)); else setTimeout(poll, 100);
    })(); })""", await_promise=True)
    assert rows == ["follow_up_time"]
    browser.screenshot(IMG / "app-rules.png")
    assert browser.errors() == []


def test_signing_in_through_the_page(tmp_path_factory, shared_data, browser):
    from callqa.pipelines.app.server import create_app
    from callqa.pipelines.app.users import add_user

    db = dev_db_copy(tmp_path_factory, "browserusers")
    users = tmp_path_factory.mktemp("users") / "users.txt"
    add_user(users, "kim", "kim-secret-1")
    srv, thread, base = serve(create_app(db, users=users))
    try:
        assert browser.open(f"{base}/calls/D001") == []  # redirected to the sign-in page
        assert browser.eval("location.pathname") == "/login"
        browser.screenshot(IMG / "app-login.png")
        browser.events.clear()
        gesture(browser, """(() => { const f = document.getElementById('login-form');
          f.elements.name.value = 'kim'; f.elements.password.value = 'kim-secret-1'; f.requestSubmit(); })()""")
        wait_for_load(browser)  # back on the page asked for, signed in
        assert browser.eval("location.pathname") == "/calls/D001"
        assert browser.eval("document.getElementById('signed-in').textContent") == "kim"
        assert browser.eval("document.querySelector('[name=reviewer]')") is None  # no name to type
        assert browser.errors() == []
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
