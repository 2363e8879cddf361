"""Security for a local tool: who may talk to the workstation and which requests may change the database.

- Bound to 127.0.0.1 (the default) only this machine reaches it. Binding any other address needs a token or a
  users file (`check_bind` refuses to start otherwise; accounts and sessions: users.py).
- With a token, every request carries it: the `X-Callqa-Token` header, or the `callqa_token` cookie that opening
  `/?token=T` sets (HttpOnly, SameSite=Strict) before redirecting to the same page without the token in the URL.
- State-changing requests (anything but GET/HEAD/OPTIONS) must also come from the app's own pages: the `Origin`
  header (or, without one, the `Referer`) must name the host the request was sent to, and the body must be JSON
  (a cross-site HTML form cannot send `application/json` without a CORS preflight, which the app never grants).
- Without a token or accounts the `Host` header must be a loopback name: a web page that rebinds its own DNS name to
  127.0.0.1 cannot read or write through the victim's browser.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

TOKEN_HEADER = "x-callqa-token"
TOKEN_COOKIE = "callqa_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, users: object | None = None) -> None:
    """Raise `SystemExit` with the reason when binding `host` without a token or accounts would expose the
    workstation."""
    if not is_loopback(host) and not token and users is None:
        raise SystemExit(f"callqa app: binding {host} makes the workstation reachable from other machines; "
                         "pass --token T (every request must then carry it) or --users FILE (everyone signs in), "
                         "or bind 127.0.0.1")
    if token is not None and len(token) < 8:
        raise SystemExit("callqa app: --token must be at least 8 characters")


def token_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def host_name(host_header: str) -> str:
    """'127.0.0.1' from '127.0.0.1:8765', '::1' from '[::1]:8765'."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:h.index("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def same_origin(host_header: str, origin: str | None, referer: str | None) -> tuple[bool, str]:
    """Whether a state-changing request comes from a page of this host, and why not."""
    source = origin if origin and origin != "null" else referer
    if not source:
        return False, "state-changing requests must come from the app's pages (no Origin or Referer header)"
    netloc = urlsplit(source).netloc.lower()
    if netloc != host_header.strip().lower():
        return False, f"cross-site request refused: it comes from {netloc or source!r}, not {host_header!r}"
    return True, ""
