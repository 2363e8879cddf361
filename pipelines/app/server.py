"""The review workstation: a FastAPI app over one DuckDB file, server-rendered pages and a JSON write API.

Pages (Jinja2, autoescaped; every asset served by the app, nothing from the network):
  /                      the week's scorecard per agent (`weekly_scorecard`, what `callqa scorecard` prints),
                         review-queue count, open appeals, week picker
  /agents/<agent>        the agent's calls of the week, item pass rates, score trend
  /calls/<call>          transcript with evidence highlighted, verdicts, the call's audio, clips, review
                         history (machine beside human), appeals, forms to override and appeal
  /queue                 verdicts to review (low confidence, critical fails, seeded sample); keys j/k/p/f
  /appeals               open / upheld / overturned appeals, forms to close them
  /rules                 the checklist test bench (each item's examples through the engine)
Audio:  /audio/<recording_id> (the whole call), /clips/<recording_id>.wav?start=&end= (one moment)
API:    POST /api/reviews, POST /api/appeals, POST /api/appeals/<id>/close (JSON in, JSON out)
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from callqa.pipelines.reports.call_metrics import load_segments
from callqa.pipelines.reports.report_data import (
    AgentWeek,
    Call,
    Dataset,
    Scorecard,
    agent_weeks,
    item_title,
    load_dataset,
    routing_counts,
    week_summary,
    weekly_scorecard,
    weeks,
)
from callqa.pipelines.store import app_reads, reads
from callqa.pipelines.store import appeals as appeals_mod
from callqa.pipelines.store.database import DatabaseBusy, Store
from callqa.pipelines.store.pool import Pool
from callqa.pipelines.store.reader import Reader
from callqa.pipelines.store.review import VERDICTS, add_review, list_reviews, resolve_recording
from callqa.qa_rules.checklist import DEFAULT_CHECKLIST, ChecklistError, load_checklist
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from . import security
from .gate import ItemGate, item_gates
from .queue import review_queue
from .readmodel import ReadModel, merged, with_previous
from .users import SESSION_COOKIE, Users

HERE = Path(__file__).parent
log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
MAX_CLIP_S = 120.0
TREND_WEEKS = 8
CLIP_PAD_S = 1.0
RECORDING_ID = re.compile(r"^[0-9a-f]{64}$")
# containers a browser's <audio> plays as they are; anything else is decoded once to WAV
BROWSER_AUDIO = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg",
                 "webm": "audio/webm", "matroska,webm": "audio/webm", "mov,mp4,m4a,3gp,3g2,mj2": "audio/mp4"}
PUBLIC_PATHS = ("/login", "/api/login", "/static/", "/favicon.ico")  # reachable before signing in (users file)
CURRENT_USER: contextvars.ContextVar[str | None] = contextvars.ContextVar("callqa_user", default=None)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


class AppError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class Settings:
    db: Path
    token: str | None = None
    checklist_id: str = DEFAULT_CHECKLIST
    lang: str = "en"
    extra_hosts: set[str] = field(default_factory=set)  # Host names accepted without a token besides loopback
    read_wait: float = 3.0
    write_wait: float = 5.0
    queue_seed: int = 0
    users: Users | None = None  # reviewer accounts (`--users FILE`): names come from the signed-in user
    review_rules: dict[str, dict] | None = None  # item → its `review:` gate, from the checklist file; None: stored


# --- view helpers ----------------------------------------------------------------------------------


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0.0, float(seconds))
    return f"{int(s // 60)}:{s % 60:04.1f}"


def fmt_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


def highlight(text: str, marks: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Split `text` into (piece, css class, title) runs with each (quote, class, title) mark found in it; a piece
    inside several marks takes the first one's class and every title."""
    owner: list[list[int]] = [[] for _ in text]
    for n, (quote, _, _) in enumerate(marks):
        q = quote.strip()
        if not q:
            continue
        at = text.find(q)
        if at < 0:
            continue
        for i in range(at, at + len(q)):
            owner[i].append(n)
    runs: list[tuple[str, str, str]] = []
    i = 0
    while i < len(text):
        j = i
        while j < len(text) and owner[j] == owner[i]:
            j += 1
        ids = owner[i]
        cls = marks[ids[0]][1] if ids else ""
        title = "; ".join(dict.fromkeys(marks[k][2] for k in ids))
        runs.append((text[i:j], cls, title))
        i = j
    return runs


def sparkline(values: list[float | None], width: int = 240, height: int = 60) -> dict[str, Any]:
    """SVG points (score 0-100 upwards) for a week series; gaps (None) split the line."""
    n = len(values)
    if not n:
        return {"lines": [], "dots": [], "width": width, "height": height}
    pts = [(round(8 + i * (width - 16) / max(1, n - 1), 1) if n > 1 else width / 2,
            round(height - 6 - (v / 100) * (height - 12), 1)) if v is not None else None
           for i, v in enumerate(values)]
    lines, cur = [], []
    for p in pts:
        if p is None:
            if len(cur) > 1:
                lines.append(" ".join(f"{x},{y}" for x, y in cur))
            cur = []
        else:
            cur.append(p)
    if len(cur) > 1:
        lines.append(" ".join(f"{x},{y}" for x, y in cur))
    dots = [{"x": p[0], "y": p[1], "v": v} for p, v in zip(pts, values, strict=True) if p is not None]
    return {"lines": lines, "dots": dots, "width": width, "height": height}


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["t"] = fmt_time
    env.filters["rate"] = fmt_rate
    env.filters["score"] = lambda s: "-" if s is None else f"{s:.1f}"
    env.filters["conf"] = lambda c: "-" if c is None else f"{c:.2f}"
    env.filters["when"] = lambda d: "" if d is None else d.strftime("%Y-%m-%d %H:%M")
    env.globals["qs"] = lambda **kw: urlencode({k: v for k, v in kw.items() if v not in (None, "")})
    return env


# --- reading -----------------------------------------------------------------------------------------


def _checklist_version(con: Reader, checklist_id: str) -> int:
    v = reads.latest_version(con, checklist_id)
    if v is None:
        raise AppError(404, f"no calls scored with checklist {checklist_id!r} in this database yet")
    return v


def _pick_week(all_weeks: list[str], week: str | None) -> tuple[str, list[str]]:
    if not all_weeks:
        raise AppError(404, "no scored calls with a start time in this database")
    if week is None or week == "":
        return all_weeks[-1], all_weeks
    if week not in all_weeks:
        raise AppError(404, f"no scored calls in week {week}; weeks with calls: {', '.join(all_weeks)}")
    return week, all_weeks


def _items_view(ds: Dataset, lang: str) -> list[dict]:
    return [{**it, "label": item_title(it, lang)} for it in ds.items]


def pooled_rates(items: list[dict], agents: list[AgentWeek]) -> dict[str, float | None]:
    """Each item's pass rate over all the week's calls pooled (`WeekSummary.team_pass_rate`)."""
    out: dict[str, float | None] = {}
    for it in items:
        n = sum(a.applicable.get(it["id"], 0) for a in agents)
        out[it["id"]] = round(sum(a.passed.get(it["id"], 0) for a in agents) / n, 3) if n else None
    return out


def _local_path(target: str) -> str:
    """Where to go after signing in: a path of this app only (never another site: no scheme, host or `//`)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target or ":" in target.split("?")[0]:
        return "/"
    return target


WeekOf = Callable[[Reader, int, str], Dataset]


def _direct_week(con: Reader, s: Settings, version: int, week: str) -> Dataset:
    return load_dataset(con, s.checklist_id, version, weeks=[week])


def _call_of(con: Reader, s: Settings, call: str,
             week_of: WeekOf | None = None) -> tuple[Call, Dataset]:
    try:
        rid = resolve_recording(con, call)
    except ValueError as e:
        raise AppError(404, str(e)) from None
    week = app_reads.recording_week(con, rid)
    if week is None:
        raise AppError(404, f"call {call!r} has no start time, so it is in no week")
    version = _checklist_version(con, s.checklist_id)
    ds = week_of(con, version, week) if week_of else _direct_week(con, s, version, week)
    found = next((c for c in ds.calls if c.recording_id == rid), None)
    if found is None:
        raise AppError(404, f"call {call!r} has no verdicts under checklist {s.checklist_id!r} v{ds.version}")
    return found, ds


def call_page_data(con: Reader, s: Settings, call_ref: str,
                   week_of: WeekOf | None = None) -> dict[str, Any]:
    call, ds = _call_of(con, s, call_ref, week_of)
    items = _items_view(ds, s.lang)
    segments = load_segments(con, call.recording_id)
    marks: dict[int, list[tuple[str, str, str]]] = {}
    verdicts = []
    for it in items:
        v = call.verdicts.get(it["id"])
        if v is None:
            continue
        evidence = [{"segment": e.segment, "speaker": e.speaker, "quote": e.quote, "start": e.start, "end": e.end,
                     "score": e.score} for e in v.evidence]
        for e in v.evidence:
            marks.setdefault(e.segment, []).append((e.quote, f"ev-{v.verdict}", f"{it['label']}: {v.verdict}"))
        verdicts.append({"item": it, "v": v, "evidence": evidence})
    transcript = [{"idx": i, "speaker": seg.speaker, "start": seg.start, "end": seg.end,
                   "runs": highlight(seg.text, marks.get(i, []))} for i, seg in enumerate(segments)]
    history: dict[str, list] = {}
    for r in list_reviews(con, call=call.recording_id):
        history.setdefault(r.item_id, []).append(r)
    appeals: dict[str, list] = {}
    for a in appeals_mod.list_appeals(con, recording_id=call.recording_id):
        appeals.setdefault(a.item_id, []).append(a)
    return {"call": call, "ds": ds, "items": items, "verdicts": verdicts, "transcript": transcript,
            "history": history, "appeals": appeals, "week": call.week,
            "audio_ok": bool(call.path) and Path(call.path).is_file()}


def recording_path(con: Reader, recording_id: str) -> Path:
    """The file of a recording the database knows; 404 for anything else (no path from a URL reaches a file)."""
    if not RECORDING_ID.match(recording_id):
        raise AppError(404, "no such recording")
    stored = app_reads.recording_file(con, recording_id)
    if stored is None:
        raise AppError(404, "no such recording")
    path = Path(stored)
    if not path.is_file():
        raise AppError(404, f"recording {recording_id[:12]}'s file is no longer at its stored path")
    return path


class AudioCache:
    """Media type per recording file, and a WAV copy of files a browser cannot play (decoded once by PyAV)."""

    def __init__(self) -> None:
        self._kind: dict[tuple[str, float], str | None] = {}
        self._dir: tempfile.TemporaryDirectory | None = None

    def media_type(self, path: Path) -> str | None:
        key = (str(path), path.stat().st_mtime)
        if key not in self._kind:
            import av

            try:
                with av.open(str(path), mode="r", metadata_errors="ignore") as c:
                    self._kind[key] = BROWSER_AUDIO.get(c.format.name)
            except av.error.FFmpegError:
                raise AppError(404, "the recording's file is not readable audio") from None
        return self._kind[key]

    def wav_copy(self, path: Path, recording_id: str) -> Path:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="callqa-app-audio-")
        out = Path(self._dir.name) / f"{recording_id}.wav"
        if not out.is_file():
            import soundfile as sf
            from callqa.pipelines.reports.coaching import read_span

            data, sr = read_span(path, 0.0, 24 * 3600.0)
            tmp = out.with_suffix(".part")
            sf.write(str(tmp), data, sr, subtype="PCM_16", format="WAV")
            tmp.replace(out)
        return out


# --- the app -----------------------------------------------------------------------------------------


def review_rules_of(checklist: str | Path | None, checklist_id: str) -> dict[str, dict] | None:
    """The auto-accept gates (`review:` per item) of the checklist file the app is started with: a YAML path, or
    the bundled checklist named `checklist_id`; None when there is no such file (then the stored copy's apply)."""
    try:
        cl = load_checklist(checklist if checklist is not None else checklist_id)
    except (ChecklistError, FileNotFoundError, OSError, KeyError, ValueError):
        if checklist is not None:
            raise
        return None
    if cl.id != checklist_id:
        raise ValueError(f"checklist file {checklist} is {cl.id!r}, not {checklist_id!r}")
    return {it.id: dict(it.review) for it in cl.items if it.review}


def create_app(db: str | Path, token: str | None = None, checklist_id: str = DEFAULT_CHECKLIST, lang: str = "en",
               extra_hosts: set[str] | None = None, read_wait: float = 3.0, write_wait: float = 5.0,
               queue_seed: int = 0, users: Users | str | Path | None = None, read_model: bool = True,
               review_policy: str | Path | None = None, db_linger: float = 1.0, warm: bool = True) -> FastAPI:
    """The workstation over `db`. `users`: a users file (or loaded `Users`): every request then needs a signed-in
    session and reviews are stored under that name. `read_model=False` recomputes every page from the tables (the
    reference the cached read model is tested and benchmarked against). `review_policy`: a checklist YAML whose
    items' `review:` gates apply (default: the bundled checklist of `checklist_id`, else the stored copy).
    `db_linger`: seconds a read-only connection stays open after a request for the next one to reuse (0: one per
    request; see db.py). `warm`: when served (uvicorn runs the app's lifespan), compute the latest weeks of the read
    model in the background at start, so the first pages need not (`app.state.warmed` is set when done)."""
    if users is not None and not isinstance(users, Users):
        users = Users.load(users)
    s = Settings(Path(db), token, checklist_id, lang, set(extra_hosts or ()), read_wait, write_wait, queue_seed,
                 users, review_rules_of(review_policy, checklist_id))
    store = Pool(s.db, read_wait, write_wait, linger=db_linger)
    rm = ReadModel(checklist_id, enabled=read_model)
    env = _env()
    audio = AudioCache()
    warmed = threading.Event()

    def warm_up() -> None:
        started = time.perf_counter()
        try:
            def q(con: Reader) -> int:
                wk, all_weeks, version, fps = basics(con, None)
                span = [w for w in all_weeks if w in fps][-TREND_WEEKS:]
                for w in span:
                    rm.week(con, version, w, fps)
                return len(span)

            n = read(q)
            log.info("read model: %d weeks ready in %.1f s", n, time.perf_counter() - started)
        except Exception as e:  # noqa: BLE001 (an empty or busy database: the pages will say why)
            log.info("read model not warmed: %s", getattr(e, "message", e))
        finally:
            warmed.set()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if warm and rm.enabled:
            threading.Thread(target=warm_up, name="callqa-app-warm", daemon=True).start()
        else:
            warmed.set()
        yield
        store.close()

    app = FastAPI(title="callqa review workstation", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.settings = s
    app.state.read_model = rm
    app.state.warmed = warmed
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def page(name: str, http_status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("week", None)
        ctx.setdefault("title", "")
        ctx.setdefault("checklist_id", s.checklist_id)
        ctx.setdefault("user", CURRENT_USER.get())
        ctx.setdefault("accounts", s.users is not None)
        return HTMLResponse(env.get_template(name).render(**ctx), status_code=http_status)

    def read(fn: Callable[[Reader], Any]) -> Any:
        try:
            with store.read() as con:
                return fn(con)
        except DatabaseBusy as e:
            raise AppError(503, f"{e}. The page can be reloaded in a few seconds.", {"Retry-After": "5"}) from None
        except FileNotFoundError as e:
            raise AppError(503, str(e)) from None

    def write(fn: Callable[[Store], Any], what: str) -> Any:
        try:
            with store.write(what) as writer:
                return fn(writer)
        except DatabaseBusy as e:
            raise AppError(503, f"not saved: {e}. Nothing was lost: the form still holds your input; submit "
                           "it again in a moment.", {"Retry-After": "5"}) from None

    def same(key: tuple, compute: Callable[[], Any]) -> Any:
        """`compute()` once per database connection: while one is open nobody else can write (db.py)."""
        return rm.memo(("connection", *key), (store.generation,), compute)

    def basics(con: Reader, week: str | None) -> tuple[str, list[str], int, dict[str, tuple]]:
        """The week asked for (default the latest), every week, the checklist version and its weeks' fingerprints."""
        wk, all_weeks = _pick_week(same(("weeks",), lambda: weeks(con, s.checklist_id)), week)
        version = same(("version",), lambda: _checklist_version(con, s.checklist_id))
        fps = same(("fingerprints", version), lambda: rm.fingerprints(con, version)) if rm.enabled else {}
        return wk, all_weeks, version, fps

    def gates(con: Reader, version: int) -> dict[str, ItemGate]:
        """Per item: measured agreement and its auto-accept decision (kept while no review changes)."""
        def compute() -> dict[str, ItemGate]:
            rules = s.review_rules
            if rules is None:
                stored = reads.checklist_at(con, s.checklist_id, version)
                rules = {it.id: dict(it.review) for it in stored.items if it.review}
            ids = [it["id"] for it in reads.checklist_items(con, s.checklist_id, version)]
            return item_gates(app_reads.reviewed_pairs(con, s.checklist_id, version), ids, rules)

        fp = same(("reviews", version), lambda: app_reads.reviews_fingerprint(con, s.checklist_id, version))
        return rm.memo(("gates", version), fp, compute)

    def week_queue(con: Reader, version: int, wk: str, fps: dict[str, tuple],
                   item_gate: dict[str, ItemGate]) -> list:
        fp = (fps.get(wk), tuple((i, g.status) for i, g in item_gate.items()))
        return rm.memo(("queue", version, wk), fp, lambda: review_queue(
            rm.week(con, version, wk, fps).ds, wk, seed=s.queue_seed, gates=item_gate))

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> Response:
        if request.url.path.startswith("/api/") or request.url.path.startswith(("/audio/", "/clips/")):
            return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)
        resp = page("error.html", http_status=exc.status, title=f"{exc.status}", message=exc.message)
        resp.headers.update(exc.headers)
        return resp

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable) -> Response:
        host = request.headers.get("host", "")
        path = request.url.path
        api = path.startswith("/api/")

        def refuse(status: int, message: str) -> Response:
            if api or request.method not in security.SAFE_METHODS:
                return JSONResponse({"error": message}, status_code=status)
            return page("error.html", http_status=status, title=str(status), message=message)

        if s.token is None and s.users is None:
            name = security.host_name(host)
            if not (security.is_loopback(name) or name in s.extra_hosts):
                return refuse(421, f"this workstation answers only on loopback addresses, not {host!r}")
        if s.token is not None:
            if request.method == "GET" and "token" in request.query_params:
                if not security.token_ok(s.token, request.query_params["token"]):
                    return refuse(401, "wrong token")
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = path + (f"?{urlencode(rest)}" if rest else "")
                resp = RedirectResponse(target, status_code=303)
                resp.set_cookie(security.TOKEN_COOKIE, s.token, httponly=True, samesite="strict", path="/")
                return resp
            given = request.headers.get(security.TOKEN_HEADER) or request.cookies.get(security.TOKEN_COOKIE)
            if not security.token_ok(s.token, given):
                return refuse(401, "this workstation needs its token: open the address `callqa app` printed "
                              "(…/?token=…) or send the X-Callqa-Token header")
        if request.method not in security.SAFE_METHODS:
            ok, why = security.same_origin(host, request.headers.get("origin"), request.headers.get("referer"))
            if not ok:
                return refuse(403, why)
        user = None
        if s.users is not None:
            user = s.users.signed_in(request.cookies.get(SESSION_COOKIE))
            if user is None and not path.startswith(PUBLIC_PATHS):
                if api or request.method not in security.SAFE_METHODS:
                    return JSONResponse({"error": "sign in first (POST /api/login with your name and password)"},
                                        status_code=401)
                target = path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
        CURRENT_USER.set(user)
        request.state.user = user
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def who(request: Request, fields: dict[str, str], key: str) -> None:
        """With accounts, `fields[key]` (reviewer, appellant) is the signed-in user: left out it is filled in, any
        other name is refused (403), so nobody records a review under someone else's name."""
        user = getattr(request.state, "user", None)
        if s.users is None:
            return
        given = fields.get(key)
        if given is not None and given.strip() and given.strip() != user:
            raise AppError(403, f"{key} must be the signed-in user {user!r}, not {given!r}: with accounts, reviews "
                           "are stored under the name you signed in with")
        fields[key] = user

    # --- sign-in (users file) ---

    @app.get("/login", response_class=HTMLResponse)
    def login_page(next: str = "/") -> HTMLResponse:  # noqa: A002 (the query parameter's name)
        if s.users is None:
            return RedirectResponse("/", status_code=303)
        return page("login.html", title="Sign in", next=_local_path(next))

    @app.post("/api/login")
    async def login(request: Request) -> JSONResponse:
        if s.users is None:
            raise AppError(404, "this workstation has no accounts (start it with --users FILE)")
        fields = check_fields(await json_body(request), required=("name", "password"), optional=("next",))
        ok = await run_in_threadpool(s.users.check, fields["name"], fields["password"])
        if not ok:
            raise AppError(401, "wrong name or password")
        resp = JSONResponse({"user": fields["name"], "next": _local_path(fields.get("next", "/"))})
        resp.set_cookie(SESSION_COOKIE, s.users.session(fields["name"]), httponly=True, samesite="strict", path="/",
                        max_age=12 * 3600)
        return resp

    @app.post("/api/logout")
    async def logout() -> JSONResponse:
        resp = JSONResponse({"user": None, "next": "/login"})
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    # --- pages ---

    @app.get("/", response_class=HTMLResponse)
    def home(week: str | None = None) -> HTMLResponse:
        def q(con: Reader) -> dict:
            wk, all_weeks, version, fps = basics(con, week)
            item_gate = gates(con, version)
            if rm.enabled:
                wd = rm.week(con, version, wk, fps)
                ds = wd.ds
                card = Scorecard(s.checklist_id, version, wk, ds.items,
                                 sorted(wd.agents.values(), key=AgentWeek.rank_key),
                                 same(("routing", wk), lambda: routing_counts(con, wk, s.checklist_id)))
                queue = week_queue(con, version, wk, fps, item_gate)
            else:
                card = weekly_scorecard(con, wk, s.checklist_id)
                ds = load_dataset(con, s.checklist_id, card.checklist_version, weeks=[wk])
                queue = review_queue(ds, wk, seed=s.queue_seed, gates=item_gate)
            n_open = same(("open appeals",), lambda: len(appeals_mod.list_appeals(con, status="open")))
            return {"card": card, "weeks": all_weeks, "week": wk, "queue_count": len(queue), "open_appeals": n_open,
                    "items": _items_view(ds, s.lang), "n_calls": len(ds.week_calls(wk)), "gates": item_gate}

        return page("home.html", title="Scorecard", **read(q))

    @app.get("/agents/{agent_id}", response_class=HTMLResponse)
    def agent(agent_id: str, week: str | None = None) -> HTMLResponse:
        def q(con: Reader) -> dict:
            wk, all_weeks, version, fps = basics(con, week)
            span = [w for w in all_weeks if w <= wk][-TREND_WEEKS:]  # what the trend shows, nothing older
            if rm.enabled:
                cached = [rm.week(con, version, w, fps) for w in span if w in fps]
                by_week = {w.week: w for w in cached}
                if wk not in by_week:
                    raise AppError(404, f"no calls of week {wk} under checklist {s.checklist_id} v{version}")
                trend_weeks = [w for w in by_week if w <= wk][-TREND_WEEKS:]
                now = by_week[wk]
                earlier = [w for w in by_week if w < wk]
                agents = with_previous(now.agents, by_week[earlier[-1]].agents if earlier else {})
                me = agents.get(agent_id)
                if me is None and not any(agent_id in w.agents for w in cached):
                    raise AppError(404, f"no agent {agent_id!r} in this database")
                team_rate = pooled_rates(now.ds.items, list(agents.values()))
                trend = [by_week[w].agents[agent_id].score if agent_id in by_week[w].agents else None
                         for w in trend_weeks]
                ds = merged(cached)
            else:
                ds = load_dataset(con, s.checklist_id, version, weeks=span)
                summary = week_summary(ds, wk, trend_span=TREND_WEEKS)
                me = next((a for a in summary.agents if a.agent_id == agent_id), None)
                if me is None and not any(c.agent_id == agent_id for c in ds.calls):
                    raise AppError(404, f"no agent {agent_id!r} in this database")
                per_week = {w: agent_weeks(ds, w).get(agent_id) for w in summary.trend_weeks}
                trend = [a.score if a else None for a in per_week.values()]
                team_rate, trend_weeks = summary.team_pass_rate, summary.trend_weeks
            return {"agent_id": agent_id, "me": me, "week": wk, "weeks": all_weeks,
                    "calls": ds.week_calls(wk, agent_id), "items": _items_view(ds, s.lang),
                    "team_rate": team_rate, "trend_weeks": trend_weeks, "trend": trend,
                    "spark": sparkline(trend)}

        return page("agent.html", title=f"Agent {agent_id}", **read(q))

    def week_of(con: Reader, version: int, wk: str) -> Dataset:
        if rm.enabled:
            fps = same(("fingerprints", version), lambda: rm.fingerprints(con, version))
            return rm.week(con, version, wk, fps).ds
        return load_dataset(con, s.checklist_id, version, weeks=[wk])

    @app.get("/calls/{call_id}", response_class=HTMLResponse)
    def call_page(call_id: str) -> HTMLResponse:
        data = read(lambda con: call_page_data(con, s, call_id, week_of))
        return page("call.html", title=f"Call {data['call'].call_id}", verdict_choices=VERDICTS, **data)

    @app.get("/queue", response_class=HTMLResponse)
    def queue_page(week: str | None = None, agent: str | None = None, item: str | None = None) -> HTMLResponse:
        def q(con: Reader) -> dict:
            wk, all_weeks, version, fps = basics(con, week)
            item_gate = gates(con, version)
            if rm.enabled:
                ds = rm.week(con, version, wk, fps).ds
                entries = [e for e in week_queue(con, version, wk, fps, item_gate)
                           if (not agent or e.call.agent_id == agent) and (not item or e.item_id == item)]
            else:
                ds = load_dataset(con, s.checklist_id, version, weeks=[wk])
                entries = review_queue(ds, wk, agent or None, item or None, seed=s.queue_seed, gates=item_gate)
            items = _items_view(ds, s.lang)
            return {"entries": entries, "week": wk, "weeks": all_weeks, "items": items,
                    "labels": {it["id"]: it["label"] for it in items},
                    "agents": sorted({c.agent_id for c in ds.week_calls(wk)}), "agent": agent or "",
                    "item": item or "", "gates": item_gate}

        return page("queue.html", title="Review queue", **read(q))

    @app.get("/appeals", response_class=HTMLResponse)
    def appeals_page(status: str | None = None) -> HTMLResponse:
        if status not in (None, "", *appeals_mod.STATUSES):
            raise AppError(400, f"status must be one of {', '.join(appeals_mod.STATUSES)}")
        rows = read(lambda con: appeals_mod.list_appeals(con, status=status or None))
        return page("appeals.html", title="Appeals", appeals=rows, status=status or "",
                    statuses=appeals_mod.STATUSES, verdict_choices=VERDICTS)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")

    # --- audio ---

    @app.get("/audio/{recording_id}")
    def whole_call(recording_id: str) -> Response:
        path = read(lambda con: recording_path(con, recording_id))
        kind = audio.media_type(path)
        headers = {"Cache-Control": "private, max-age=3600"}
        if kind is None:
            return FileResponse(audio.wav_copy(path, recording_id), media_type="audio/wav", headers=headers)
        return FileResponse(path, media_type=kind, headers=headers)

    @app.get("/clips/{recording_id}.wav")
    def clip(recording_id: str, start: float, end: float) -> Response:
        if not (0 <= start < end) or end - start > MAX_CLIP_S:
            raise AppError(400, f"a clip needs 0 <= start < end and at most {MAX_CLIP_S:.0f} s")
        path = read(lambda con: recording_path(con, recording_id))
        import soundfile as sf
        from callqa.pipelines.reports.coaching import read_span

        data, sr = read_span(path, max(0.0, start - CLIP_PAD_S), end + CLIP_PAD_S)
        if not len(data):
            raise AppError(404, f"no audio between {start:.1f} s and {end:.1f} s")
        buf = io.BytesIO()
        sf.write(buf, data, sr, subtype="PCM_16", format="WAV")
        return Response(buf.getvalue(), media_type="audio/wav", headers={"Cache-Control": "private, max-age=3600"})

    # --- API ---

    @app.post("/api/reviews")
    async def post_review(request: Request) -> JSONResponse:
        body = await json_body(request)
        named = s.users is not None  # with accounts the reviewer is the signed-in user
        fields = check_fields(body, required=("call", "item", "verdict") + (() if named else ("reviewer",)),
                              optional=("comment",) + (("reviewer",) if named else ()))
        who(request, fields, "reviewer")
        if fields["verdict"] not in VERDICTS:
            raise AppError(422, f"verdict must be one of {', '.join(VERDICTS)}, not {fields['verdict']!r}")
        if not fields["reviewer"].strip():
            raise AppError(422, "a review needs a reviewer name")
        await run_in_threadpool(read, lambda con: precheck_verdict(con, s, fields["call"], fields["item"]))

        def do(writer: Store) -> dict:
            try:
                r = add_review(writer, fields["call"], fields["item"], fields["verdict"], fields["reviewer"],
                               fields.get("comment", ""), s.checklist_id)
            except ValueError as e:
                raise AppError(422, str(e)) from None
            return {"review_id": r.review_id, "call": r.call_id, "recording_id": r.recording_id, "item": r.item_id,
                    "verdict": r.verdict, "auto_verdict": r.auto_verdict, "reviewer": r.reviewer,
                    "comment": r.comment, "checklist": {"id": r.checklist_id, "version": r.checklist_version}}

        out = await run_in_threadpool(write, do, "callqa app (review)")
        return JSONResponse(out, status_code=201)

    @app.post("/api/appeals")
    async def post_appeal(request: Request) -> JSONResponse:
        body = await json_body(request)
        named = s.users is not None
        fields = check_fields(body, required=("call", "item", "reason") + (() if named else ("appellant",)),
                              optional=("appellant",) if named else ())
        who(request, fields, "appellant")
        await run_in_threadpool(read, lambda con: precheck_verdict(con, s, fields["call"], fields["item"]))

        def do(writer: Store) -> dict:
            try:
                a = appeals_mod.open_appeal(writer, fields["call"], fields["item"], fields["appellant"],
                                            fields["reason"], s.checklist_id)
            except LookupError as e:
                raise AppError(404, str(e)) from None
            except ValueError as e:
                raise AppError(409 if "still open" in str(e) else 422, str(e)) from None
            return appeal_json(a)

        return JSONResponse(await run_in_threadpool(write, do, "callqa app (appeal)"), status_code=201)

    @app.post("/api/appeals/{appeal_id}/close")
    async def close_appeal(appeal_id: int, request: Request) -> JSONResponse:
        body = await json_body(request)
        named = s.users is not None
        fields = check_fields(body, required=("outcome",) + (() if named else ("reviewer",)),
                              optional=("comment", "verdict") + (("reviewer",) if named else ()))
        who(request, fields, "reviewer")
        if fields["outcome"] not in appeals_mod.OUTCOMES:
            raise AppError(422, f"outcome must be one of {', '.join(appeals_mod.OUTCOMES)}")
        if fields.get("verdict") == "":
            fields.pop("verdict")

        def do(writer: Store) -> dict:
            try:
                a = appeals_mod.close_appeal(writer, appeal_id, fields["outcome"], fields["reviewer"],
                                             fields.get("comment", ""), fields.get("verdict"))
            except LookupError as e:
                raise AppError(404, str(e)) from None
            except ValueError as e:
                raise AppError(409 if "already closed" in str(e) else 422, str(e)) from None
            return appeal_json(a)

        return JSONResponse(await run_in_threadpool(write, do, "callqa app (appeal)"))

    from .rules_web import add_rules_routes

    add_rules_routes(app, page, AppError, json_body, check_fields)
    return app


def precheck_verdict(con: Reader, s: Settings, call: str, item: str) -> None:
    """404 for an unknown call or item before any lock is taken (a busy database must not hide bad input)."""
    try:
        rid = resolve_recording(con, call)
    except ValueError as e:
        raise AppError(404, str(e)) from None
    items = app_reads.verdict_items(con, rid, s.checklist_id)
    if item not in items:
        raise AppError(404, f"no verdict for item {item!r} on call {call!r}; items: {', '.join(items) or 'none'}")


def appeal_json(a: appeals_mod.Appeal) -> dict:
    return {"appeal_id": a.appeal_id, "call": a.call_id, "recording_id": a.recording_id, "item": a.item_id,
            "disputed_verdict": a.disputed_verdict, "appellant": a.appellant, "reason": a.reason,
            "status": a.status, "resolver": a.resolver, "resolution": a.resolution,
            "final_verdict": a.final_verdict, "review_id": a.review_id}


async def json_body(request: Request) -> dict:
    """The request's JSON object; 413 over 64 KB (read no further), 415 when not JSON, 400 when malformed."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise AppError(415, "send the body as JSON (Content-Type: application/json)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise AppError(413, f"body over {MAX_BODY // 1024} KB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise AppError(413, f"body over {MAX_BODY // 1024} KB")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AppError(400, f"malformed JSON: {e}") from None
    if not isinstance(body, dict):
        raise AppError(400, "the body must be a JSON object")
    return body


def check_fields(body: dict, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, str]:
    """The body's fields as strings: 422 for unknown, missing, non-string or empty required ones."""
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        raise AppError(422, f"unknown field(s): {', '.join(unknown)}; expected {', '.join(required + optional)}")
    missing = [k for k in required if k not in body]
    if missing:
        raise AppError(422, f"missing field(s): {', '.join(missing)}")
    out: dict[str, str] = {}
    for k, v in body.items():
        if v is None and k in optional:
            continue
        if not isinstance(v, str):
            raise AppError(422, f"field {k!r} must be a string")
        out[k] = v
    for k in required:
        if not out[k].strip():
            raise AppError(422, f"field {k!r} must not be empty")
    return out
