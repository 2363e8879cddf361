"""Reviewer accounts for the workstation: a users file of names and scrypt password hashes, and signed sessions.

    python -m callqa.pipelines.app.users add users.txt kim          # asks for the password twice
    python -m callqa.pipelines.app.users add users.txt lee --random  # makes one and prints it once
    callqa app --db callqa.duckdb --users users.txt

The file holds one account a line, `name scrypt$N$r$p$<salt hex>$<hash hex>` (`#` starts a comment); no password
is stored. With `--users` every page asks who you are (`/login`), and each review, appeal and judgment is stored
under the signed-in name: a request naming anyone else is refused. A session is an HttpOnly, SameSite=Strict
cookie `name|expiry|HMAC` signed with a key the app draws when it starts (restarting the app signs everyone out).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 16 MB and ~50 ms per check: fine for a sign-in, costly to guess
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
SESSION_COOKIE = "callqa_session"
SESSION_HOURS = 12


class UsersFileError(ValueError):
    """A users file line that is not `name scrypt$N$r$p$salt$hash`; the message names the file and line."""


def hash_password(password: str, salt: bytes | None = None, n: int = SCRYPT_N, r: int = SCRYPT_R,
                  p: int = SCRYPT_P) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    kind, n, r, p, salt, digest = stored.split("$")
    if kind != "scrypt":
        raise ValueError(kind)
    return int(n), int(r), int(p), bytes.fromhex(salt), bytes.fromhex(digest)


def verify_password(stored: str, password: str) -> bool:
    n, r, p, salt, digest = _parse_hash(stored)
    got = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(digest), maxmem=2**26)
    return hmac.compare_digest(got, digest)


@dataclass
class Users:
    """Accounts from a users file, and the sessions they sign in to."""

    accounts: dict[str, str]  # name → scrypt hash
    key: bytes = b""

    def __post_init__(self) -> None:
        self.key = self.key or secrets.token_bytes(32)
        self._dummy = hash_password(secrets.token_urlsafe(12))

    @classmethod
    def load(cls, path: str | Path) -> Users:
        path = Path(path)
        accounts: dict[str, str] = {}
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise UsersFileError(f"{path}: cannot read the users file ({e.strerror})") from None
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2 or not NAME.match(parts[0]):
                raise UsersFileError(f"{path}:{n}: expected `name scrypt$N$r$p$salt$hash` (a name of letters, "
                                     "digits, . _ @ -)")
            try:
                _parse_hash(parts[1])
            except ValueError:
                raise UsersFileError(f"{path}:{n}: {parts[0]}'s hash is not scrypt$N$r$p$salt$hash; make it with "
                                     "`python -m callqa.pipelines.app.users add`") from None
            if parts[0] in accounts:
                raise UsersFileError(f"{path}:{n}: {parts[0]} is listed twice")
            accounts[parts[0]] = parts[1]
        if not accounts:
            raise UsersFileError(f"{path}: no accounts; add one with `python -m callqa.pipelines.app.users add`")
        return cls(accounts)

    def check(self, name: str, password: str) -> bool:
        """The password is this account's; an unknown name costs the same time as a wrong password."""
        stored = self.accounts.get(name)
        ok = verify_password(stored or self._dummy, password)
        return ok and stored is not None

    def _sign(self, payload: str) -> str:
        return hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()

    def session(self, name: str, now: float | None = None) -> str:
        expiry = int((now or time.time()) + SESSION_HOURS * 3600)
        payload = f"{base64.urlsafe_b64encode(name.encode()).decode()}|{expiry}"
        return f"{payload}|{self._sign(payload)}"

    def signed_in(self, cookie: str | None, now: float | None = None) -> str | None:
        """The name a session cookie carries, or None when it is missing, forged, expired or for a removed user."""
        if not cookie or cookie.count("|") != 2:
            return None
        b64, expiry, sig = cookie.split("|")
        if not hmac.compare_digest(self._sign(f"{b64}|{expiry}"), sig):
            return None
        if not expiry.isdigit() or int(expiry) < (now or time.time()):
            return None
        try:
            name = base64.urlsafe_b64decode(b64.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return name if name in self.accounts else None


def add_user(path: Path, name: str, password: str) -> None:
    """Add (or replace) one account in a users file, keeping the other lines as they are."""
    if not NAME.match(name):
        raise UsersFileError(f"{name!r}: use letters, digits, . _ @ - (up to 64)")
    if len(password) < 8:
        raise UsersFileError("a password needs at least 8 characters")
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    lines = [ln for ln in lines if ln.split("#", 1)[0].split()[:1] != [name]]
    lines.append(f"{name} {hash_password(password)}")
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m callqa.pipelines.app.users",
                                 description="Add a reviewer account to a users file for `callqa app --users`.")
    ap.add_argument("action", choices=["add"])
    ap.add_argument("file", type=Path)
    ap.add_argument("name")
    ap.add_argument("--random", action="store_true", help="make a random password and print it once")
    args = ap.parse_args(argv)
    if args.random:
        password = secrets.token_urlsafe(12)
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("the two passwords differ; nothing written", file=sys.stderr)
            return 1
    try:
        add_user(args.file, args.name, password)
    except UsersFileError as e:
        print(f"callqa users: {e}", file=sys.stderr)
        return 1
    print(f"{args.name} added to {args.file}" + (f"; password: {password}" if args.random else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
