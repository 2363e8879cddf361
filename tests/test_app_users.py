"""Reviewer accounts (`callqa app --users FILE`): a users file of scrypt hashes, sign-in sessions, reviews stored
under the signed-in name only (a body naming someone else is refused), cross-site requests refused, and a wrong
token refused, on a real dev database."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest
from callqa.pipelines.app.security import check_bind
from callqa.pipelines.app.server import create_app
from callqa.pipelines.app.users import SESSION_COOKIE, Users, UsersFileError, add_user, verify_password
from fastapi.testclient import TestClient

from tests.reportdb import dev_db_copy

BASE = "http://127.0.0.1:8765"
SAME = {"Origin": BASE}
PASSWORDS = {"kim": "kim-secret-1", "lee": "lee-secret-2"}


@pytest.fixture(scope="module")
def users_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users.txt"
    for name, pw in PASSWORDS.items():
        add_user(path, name, pw)
    return path


@pytest.fixture(scope="module")
def db(tmp_path_factory, shared_data) -> Path:
    return dev_db_copy(tmp_path_factory, "users")


@pytest.fixture()
def app_client(db, users_file):
    return TestClient(create_app(db, users=users_file, db_linger=0), base_url=BASE, follow_redirects=False)


def sign_in(c: TestClient, name: str = "kim") -> None:
    r = c.post("/api/login", headers=SAME, json={"name": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text


def reviews(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        has = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'verdict_reviews'")
        if not has.fetchone()[0]:
            return []
        return con.execute("SELECT review_id, reviewer, item_id FROM verdict_reviews ORDER BY review_id").fetchall()


def test_the_users_file_holds_hashes_and_says_what_is_wrong(users_file, tmp_path):
    text = users_file.read_text()
    assert "kim scrypt$16384$8$1$" in text and PASSWORDS["kim"] not in text
    users = Users.load(users_file)
    assert users.check("kim", PASSWORDS["kim"]) and not users.check("kim", PASSWORDS["lee"])
    assert not users.check("nobody", PASSWORDS["kim"])
    assert verify_password(users.accounts["lee"], PASSWORDS["lee"])
    for content, message in (("kim plaintext\n", ":1: kim's hash is not scrypt"), ("just-a-name\n", ":1: expected"),
                             ("# nobody\n", "no accounts"),
                             (f"kim {users.accounts['kim']}\nkim {users.accounts['kim']}\n", "listed twice")):
        bad = tmp_path / "bad.txt"
        bad.write_text(content)
        with pytest.raises(UsersFileError, match=message):
            Users.load(bad)
    with pytest.raises(UsersFileError, match="8 characters"):
        add_user(tmp_path / "u.txt", "ann", "short")
    add_user(users_file.with_name("copy.txt"), "kim", "another-password")  # replacing keeps one line per name
    add_user(users_file.with_name("copy.txt"), "kim", "third-password")
    assert Users.load(users_file.with_name("copy.txt")).check("kim", "third-password")


def test_sessions_cannot_be_forged_or_outlive_their_time(users_file):
    users = Users.load(users_file)
    cookie = users.session("kim")
    assert users.signed_in(cookie) == "kim"
    b64, expiry, sig = cookie.split("|")
    assert users.signed_in(f"{b64}|{int(expiry) + 999}|{sig}") is None  # extended by hand
    lee = users.session("lee").split("|")[0]
    assert users.signed_in(f"{lee}|{expiry}|{sig}") is None  # another name under kim's signature
    assert users.signed_in(cookie, now=time.time() + 13 * 3600) is None  # expired
    assert Users.load(users_file).signed_in(cookie) is None  # a restarted app has a new key


def test_every_page_needs_a_signed_in_user(app_client, db):
    c = app_client
    r = c.get("/calls/D001")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fcalls%2FD001"
    assert c.get("/login").status_code == 200 and c.get("/static/app.js").status_code == 200
    n = len(reviews(db))
    assert c.post("/api/reviews", headers=SAME, json={"call": "D001", "item": "greeting",
                                                      "verdict": "pass"}).status_code == 401
    assert c.post("/api/login", headers=SAME, json={"name": "kim", "password": "wrong-password"}).status_code == 401
    assert c.post("/api/login", headers=SAME, json={"name": "nobody", "password": "x" * 10}).status_code == 401
    assert c.post("/api/login", json={"name": "kim", "password": PASSWORDS["kim"]}).status_code == 403  # no Origin
    assert SESSION_COOKIE not in c.cookies
    r = c.post("/api/login", headers=SAME, json={"name": "kim", "password": PASSWORDS["kim"], "next": "//evil.example"})
    assert r.status_code == 200 and r.json()["next"] == "/"  # never sent to another site after signing in
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = c.get("/calls/D001").text
    assert 'id="signed-in">kim<' in page and 'name="reviewer"' not in page  # no name to type
    assert len(reviews(db)) == n
    c.post("/api/logout", headers=SAME)
    assert c.get("/").status_code == 303


def test_the_reviewer_is_the_signed_in_user_and_cannot_be_spoofed(app_client, db):
    c = app_client
    sign_in(c, "kim")
    n = len(reviews(db))
    spoof = c.post("/api/reviews", headers=SAME, json={"call": "D001", "item": "greeting", "verdict": "fail",
                                                       "reviewer": "lee"})
    assert spoof.status_code == 403 and "signed-in user 'kim'" in spoof.json()["error"]
    assert len(reviews(db)) == n
    for body in ({"call": "D001", "item": "greeting", "verdict": "fail"},
                 {"call": "D001", "item": "greeting", "verdict": "pass", "reviewer": "kim", "comment": "ok"}):
        r = c.post("/api/reviews", headers=SAME, json=body)
        assert r.status_code == 201 and r.json()["reviewer"] == "kim"
    assert [x[1] for x in reviews(db)[n:]] == ["kim", "kim"]
    # appeals: the appellant and the judge are the signed-in users too
    bad = c.post("/api/appeals", headers=SAME, json={"call": "D002", "item": "greeting", "appellant": "A01",
                                                     "reason": "x"})
    assert bad.status_code == 403
    opened = c.post("/api/appeals", headers=SAME, json={"call": "D002", "item": "greeting", "reason": "I did"})
    assert opened.status_code == 201 and opened.json()["appellant"] == "kim"
    other = TestClient(c.app, base_url=BASE, follow_redirects=False)
    sign_in(other, "lee")
    close = f"/api/appeals/{opened.json()['appeal_id']}/close"
    assert other.post(close, headers=SAME, json={"outcome": "upheld", "reviewer": "kim"}).status_code == 403
    closed = other.post(close, headers=SAME, json={"outcome": "upheld", "comment": "checked"})
    assert closed.status_code == 200 and closed.json()["resolver"] == "lee"


def test_cross_site_requests_are_refused_even_when_signed_in(app_client, db):
    c = app_client
    sign_in(c)
    n = len(reviews(db))
    body = {"call": "D001", "item": "greeting", "verdict": "pass"}
    for headers in ({}, {"Origin": "http://evil.example"}, {"Referer": "http://evil.example/page"},
                    {"Origin": "null"}):
        assert c.post("/api/reviews", headers=headers, json=body).status_code == 403, headers
    form = c.post("/api/reviews", content=b"call=D001&item=greeting&verdict=pass",
                  headers={**SAME, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415  # an HTML form's body is not JSON
    assert len(reviews(db)) == n


def test_a_wrong_token_is_refused(db, users_file):
    token = "team-token-123456"
    c = TestClient(create_app(db, token=token, users=users_file, db_linger=0), base_url="http://10.1.2.3:8765",
                   follow_redirects=False)
    assert c.get("/", headers={"X-Callqa-Token": "wrong-token-123"}).status_code == 401
    assert c.get("/?token=wrong-token-123").status_code == 401
    ok = c.post("/api/login", headers={"X-Callqa-Token": token, "Origin": "http://10.1.2.3:8765"},
                json={"name": "kim", "password": PASSWORDS["kim"]})
    assert ok.status_code == 200  # token and account together
    assert c.get("/", headers={"X-Callqa-Token": token}).status_code == 200


def test_a_public_address_needs_a_token_or_a_users_file(db, users_file, tmp_path, capsys):
    import argparse

    from callqa.pipelines.app import cmd_app

    with pytest.raises(SystemExit, match="--users FILE"):
        check_bind("0.0.0.0", None, None)
    check_bind("0.0.0.0", None, Users.load(users_file))  # accounts instead of a token: allowed
    bad = tmp_path / "users.txt"
    bad.write_text("kim hunter2\n")
    args = argparse.Namespace(db=db, host="0.0.0.0", port=0, token=None, checklist="sales_core", lang="en",
                              write_wait=1.0, users=bad)
    assert cmd_app(args) == 2  # what `callqa app --users FILE` runs
    assert "kim's hash is not scrypt" in capsys.readouterr().err
    args.users = None
    assert cmd_app(args) == 2 and "--token" in capsys.readouterr().err
