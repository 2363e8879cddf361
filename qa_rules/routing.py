"""Checklist routing: which checklist scores a call, or why it is not scored at all.

A routing file (YAML, versioned like a checklist; the bundled one is `qa_rules/routing.yaml`) maps call
attributes (direction, language and duration from the recording, any manifest column such as `queue` or
`campaign`) to a checklist, first matching route wins, else `default`. Before any route, `skip` sets aside what
should not be scored: voicemails (a voicemail phrase heard and the customer side otherwise nearly silent) and
calls with less speech than `min_speech_seconds`. The decision is a plain function of typed records
(`route(rules, attrs, transcript)`); pipelines store it and skip what it skips.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callqa.qa_rules.checklist import CHECKLIST_DIR, ChecklistError, _strip_lines, load_checklist, load_versioned_yaml
from callqa.qa_rules.timing import union_length

from callqa.records import Transcript

ROUTING_FILE = Path(__file__).resolve().parent / "routing.yaml"
BUILTIN_WHEN = {"direction", "language", "min_duration_s", "max_duration_s"}
SKIP_FIELDS = {"min_speech_seconds", "voicemail"}
VOICEMAIL_FIELDS = {"patterns", "max_customer_speech_seconds"}


@dataclass(frozen=True)
class CallAttributes:
    """What routing may look at: the manifest's fields (unknown columns in `metadata`) and the audio's duration."""

    direction: str | None = None
    language: str | None = None  # the manifest's, else the detected one
    duration_s: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """Where a call goes: `checklist` (a bundled name or a path), or None with `reason` (voicemail, short_call)."""

    checklist: str | None
    reason: str | None = None
    message: str = ""
    rule: int | None = None  # index of the route that matched (None: default or skipped)


@dataclass(frozen=True)
class RouteRule:
    when: dict[str, Any]
    checklist: str


@dataclass(frozen=True)
class Routing:
    id: str
    version: int
    routes: tuple[RouteRule, ...]
    default: str
    min_speech_seconds: float = 0.0
    voicemail_patterns: tuple[str, ...] = ()
    voicemail_max_customer_s: float = 3.0
    source: str = ""

    @property
    def checklists(self) -> list[str]:
        """Every checklist a call can be routed to, default first."""
        return list(dict.fromkeys([self.default, *(r.checklist for r in self.routes)]))


def _values(v: Any) -> list[str]:
    return [str(x) for x in (v if isinstance(v, list) else [v])]


def _matches(when: dict[str, Any], attrs: CallAttributes) -> bool:
    for key, want in when.items():
        if key == "min_duration_s":
            if attrs.duration_s is None or attrs.duration_s < float(want):
                return False
        elif key == "max_duration_s":
            if attrs.duration_s is None or attrs.duration_s > float(want):
                return False
        else:
            have = getattr(attrs, key) if key in ("direction", "language") else attrs.metadata.get(key)
            if have is None or str(have).lower() not in {w.lower() for w in _values(want)}:
                return False
    return True


def speech_seconds(transcript: Transcript, speaker: str = "any") -> float:
    """Seconds in which `speaker` (any: anybody) speaks, overlaps counted once."""
    return union_length((s.start, s.end) for s in transcript.segments
                        if s.end > s.start and s.text.strip() and speaker in ("any", s.speaker))


def route(rules: Routing, attrs: CallAttributes, transcript: Transcript) -> Route:
    """The checklist for one call, or why it is skipped (checked first: voicemail, then too little speech)."""
    if rules.voicemail_patterns:
        pats = [re.compile(p, re.IGNORECASE) for p in rules.voicemail_patterns]
        heard = [s for s in transcript.segments if any(p.search(s.text) for p in pats)]
        if heard:
            customer = union_length((s.start, s.end) for s in transcript.segments
                                    if s.speaker == "customer" and s not in heard and s.end > s.start)
            if customer <= rules.voicemail_max_customer_s:
                return Route(None, "voicemail", f'voicemail: "{heard[0].text.strip()[:80]}" at {heard[0].start:.1f}s, '
                                                f"customer speech {customer:.1f}s")
    speech = speech_seconds(transcript)
    if speech < rules.min_speech_seconds:
        return Route(None, "short_call", f"{speech:.1f}s of speech, under the {rules.min_speech_seconds:g}s minimum")
    for k, r in enumerate(rules.routes):
        if _matches(r.when, attrs):
            return Route(r.checklist, rule=k)
    return Route(rules.default)


def _resolve(name: str, base: Path) -> str:
    """A bundled checklist name as is; a YAML path relative to the routing file's folder made absolute."""
    p = Path(name)
    return name if not p.suffix or p.is_absolute() else str(base / p)


def _checklist_exists(name: str) -> bool:
    return (CHECKLIST_DIR / f"{name}.yaml").is_file() if not Path(name).suffix else Path(name).is_file()


def parse_routing(text: str, source: str = "<string>", base: Path | None = None) -> Routing:
    """Parse and validate a routing file; errors name the file, line and field (`ChecklistError`)."""
    raw, v = load_versioned_yaml(text, source, "routing", "routes", {"default", "skip", "description"})
    base = base or CHECKLIST_DIR
    if "default" not in raw or not isinstance(raw["default"], str):
        v.fail(raw, "default", "must name the checklist for calls no route matches")
    if not isinstance(raw["routes"], list):
        v.fail(raw, "routes", "must be a list of {when: {...}, checklist: NAME}")
    rules = []
    for i, node in enumerate(raw["routes"]):
        where = f"routes[{i}]"
        if not isinstance(node, dict):
            v.fail(raw, where, "must be a mapping with when and checklist")
        v.keys(node, where, {"when", "checklist"}, set())
        when = node["when"]
        if not isinstance(when, dict) or not set(when) - {"__line__"}:
            v.fail(node, f"{where}.when", "must be a non-empty mapping of attribute → value or list of values")
        for key in ("min_duration_s", "max_duration_s"):
            if key in when and (not isinstance(when[key], int | float) or isinstance(when[key], bool)
                                or when[key] < 0):
                v.fail(when, f"{where}.when.{key}", "must be a non-negative number of seconds")
        rules.append(RouteRule(_strip_lines(when), _resolve(str(node["checklist"]), base)))
        if not _checklist_exists(rules[-1].checklist):
            v.fail(node, f"{where}.checklist", f"no checklist {node['checklist']!r} (a bundled name or a YAML path)")
    default = _resolve(raw["default"], base)
    if not _checklist_exists(default):
        v.fail(raw, "default", f"no checklist {raw['default']!r} (a bundled name or a YAML path)")
    skip = raw.get("skip", {})
    if not isinstance(skip, dict):
        v.fail(raw, "skip", "must be a mapping")
    v.keys(skip, "skip", set(), SKIP_FIELDS)
    min_speech = skip.get("min_speech_seconds", 0)
    if not isinstance(min_speech, int | float) or isinstance(min_speech, bool) or min_speech < 0:
        v.fail(skip, "skip.min_speech_seconds", "must be a non-negative number of seconds")
    vm = skip.get("voicemail", {})
    if not isinstance(vm, dict):
        v.fail(skip, "skip.voicemail", "must be a mapping with patterns")
    v.keys(vm, "skip.voicemail", {"patterns"} if vm else set(), VOICEMAIL_FIELDS)
    for p in vm.get("patterns", []):
        try:
            re.compile(str(p))
        except re.error as e:
            v.fail(vm, "skip.voicemail.patterns", f"bad regular expression {p!r}: {e}")
    return Routing(str(raw["id"]), int(raw["version"]), tuple(rules), default, float(min_speech),
                   tuple(str(p) for p in vm.get("patterns", [])), float(vm.get("max_customer_speech_seconds", 3.0)),
                   text)


def load_routing(path: str | Path | None = None) -> Routing:
    """The bundled routing file (`qa_rules/routing.yaml`), or one at `path`."""
    p = Path(path) if path not in (None, "", "default") else ROUTING_FILE
    if not p.is_file():
        raise ChecklistError(f"{p}: no such routing file")
    return parse_routing(p.read_text(encoding="utf-8"), str(p), base=p.parent)


def load_routed_checklists(rules: Routing) -> dict[str, Any]:
    """name → loaded Checklist for every checklist the routing can pick."""
    return {name: load_checklist(name) for name in rules.checklists}
