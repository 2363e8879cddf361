"""Coaching examples: per item the week's best passing moments and clearest misses across the
team, and per agent the top three things to work on, each with an example and an audio clip.

A passing moment is a verdict's evidence (the segment that matched, ranked by match strength). A
miss of an item whose behaviour is forbidden (`polarity: absent`) is its evidence too: the quote
that broke the rule. A miss of a behaviour that never happened has no evidence, so the example is
the moment it should have happened (its `note` says which), as the checklist item says
(`Item.miss_context`, stored with the checklist): the agent's opening, the trigger item's evidence
and the agent's reply (an item with `applies_if`), the agent's first reply to the customer, or the
agent's longest turn. Nothing here names an item.

Clips are cut from the recording (`recordings.path`) with soundfile, or PyAV for containers
libsndfile cannot read, `pad` seconds either side of the moment, and written as 16-bit WAV.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
from callqa.pipelines.reports.report_data import Call, Dataset, WeekSummary

from callqa.records import Segment

log = logging.getLogger(__name__)

SegmentsOf = Callable[[str], list[Segment]]


@dataclass(frozen=True)
class Example:
    item_id: str
    kind: str  # best | miss
    agent_id: str
    call_id: str
    recording_id: str
    call_slug: str
    speaker: str
    quote: str
    start: float
    end: float
    strength: float  # match score of the evidence, or the verdict's confidence for a miss
    note: str  # "evidence" or why this moment was chosen
    reviewed: bool = False  # the verdict is a human override
    clip: str | None = None  # path of the audio clip, relative to the report folder
    # the verdict's evidence rests on low-confidence audio (why; callqa.models.confidence): maybe a mishearing
    audio_flag: str | None = None


def _context(call: Call, item: dict, segs: list[Segment]) -> tuple[Segment, str] | None:
    agent = [s for s in segs if s.speaker == "agent"]
    if not agent:
        return None
    where = item.get("miss_context") or ("after_trigger" if item.get("applies_if") else "longest_turn")
    if where == "opening":
        return agent[0], "the agent's opening"
    if where == "after_trigger" and item.get("applies_if"):
        trigger = call.verdicts.get(item["applies_if"])
        if trigger and trigger.evidence:
            e = trigger.evidence[0]
            later = [s for s in agent if s.start >= e.end]
            end = later[0].end if later else e.end
            return Segment(e.speaker, e.start, end, e.quote), f"the {item['applies_if']} and the agent's reply"
    if where == "first_reply":
        first_customer = next((s for s in segs if s.speaker == "customer"), None)
        later = [s for s in agent if first_customer and s.start >= first_customer.end]
        if later:
            return later[0], "the agent's first reply to the customer"
    return max(agent, key=lambda s: s.end - s.start), "the agent's longest turn"


def _best(call: Call, item_id: str) -> Example | None:
    v = call.verdicts.get(item_id)
    if v is None or v.verdict != "pass" or not v.evidence:
        return None
    e = max(v.evidence, key=lambda e: e.score)
    return Example(item_id, "best", call.agent_id, call.call_id, call.recording_id, call.slug, e.speaker, e.quote,
                   e.start, e.end, e.score, "evidence", v.human_verdict is not None, audio_flag=v.audio_flag)


def _miss(call: Call, item: dict, segs: list[Segment]) -> Example | None:
    item_id = item["id"]
    v = call.verdicts.get(item_id)
    if v is None or v.verdict != "fail":
        return None
    if v.evidence:
        e = max(v.evidence, key=lambda e: e.score)
        return Example(item_id, "miss", call.agent_id, call.call_id, call.recording_id, call.slug, e.speaker,
                       e.quote, e.start, e.end, max(e.score, v.confidence), "evidence", v.human_verdict is not None,
                       audio_flag=v.audio_flag)
    ctx = _context(call, item, segs)
    if ctx is None:
        return None
    s, note = ctx
    return Example(item_id, "miss", call.agent_id, call.call_id, call.recording_id, call.slug, s.speaker, s.text,
                   s.start, s.end, v.confidence, note, v.human_verdict is not None)


def _rank(examples: list[Example]) -> list[Example]:
    # human-confirmed first, then examples backed by evidence, then the strongest; evidence on low-confidence audio
    # that nobody reviewed goes last (a coach should not replay a mishearing as the agent's words)
    return sorted(examples, key=lambda x: (x.audio_flag is not None and not x.reviewed, not x.reviewed,
                                           x.note != "evidence", -x.strength, x.call_id, x.start))


def coaching_items(ds: Dataset) -> list[dict]:
    """The items worth coaching: the scored ones (weight > 0)."""
    return ds.scored_items


def item_examples(ds: Dataset, week: str, segments_of: SegmentsOf, per_item: int = 3
                  ) -> dict[str, dict[str, list[Example]]]:
    """For each scored item: the week's best passing moments and clearest misses across the team."""
    calls = ds.week_calls(week)
    out: dict[str, dict[str, list[Example]]] = {}
    for it in coaching_items(ds):
        best = _rank([x for c in calls if (x := _best(c, it["id"]))])
        miss = _rank([x for c in calls if (x := _miss(c, it, segments_of(c.recording_id)))])
        out[it["id"]] = {"best": _one_per_call(best)[:per_item], "miss": _one_per_call(miss)[:per_item]}
    return out


def _one_per_call(examples: list[Example]) -> list[Example]:
    seen: set[str] = set()
    out = []
    for x in examples:
        if x.call_id not in seen:
            seen.add(x.call_id)
            out.append(x)
    return out


@dataclass(frozen=True)
class Focus:
    item_id: str
    failed: int
    applicable: int
    pass_rate: float
    team_pass_rate: float | None
    example: Example | None
    model: Example | None  # a teammate's best passing moment for the same item


def agent_focus(ds: Dataset, summary: WeekSummary, segments_of: SegmentsOf,
                examples: dict[str, dict[str, list[Example]]], top: int = 3) -> dict[str, list[Focus]]:
    """Per agent: up to `top` items to work on (critical items first, then most points lost, then
    the largest gap to the team), each with the agent's clearest miss and a teammate's best moment."""
    out: dict[str, list[Focus]] = {}
    items = {it["id"]: it for it in coaching_items(ds)}
    for a in summary.agents:
        ranked = []
        for item_id, it in items.items():
            n = a.applicable.get(item_id, 0)
            failed = n - a.passed.get(item_id, 0)
            if not n or not failed:
                continue
            rate = a.passed.get(item_id, 0) / n
            team = summary.team_pass_rate.get(item_id)
            gap = (team or 0.0) - rate
            ranked.append((not it.get("critical"), -failed * it.get("weight", 1), -gap, item_id, failed, n, rate, team))
        ranked.sort()
        focus = []
        for *_, item_id, failed, n, rate, team in ranked[:top]:
            misses = _rank([x for c in ds.week_calls(summary.week, a.agent_id)
                            if (x := _miss(c, items[item_id], segments_of(c.recording_id)))])
            model = next((x for x in examples.get(item_id, {}).get("best", []) if x.agent_id != a.agent_id), None)
            focus.append(Focus(item_id, failed, n, round(rate, 3), team, misses[0] if misses else None, model))
        out[a.agent_id] = focus
    return out


def read_span(path: str | Path, start: float, end: float) -> tuple[np.ndarray, int]:
    """Samples (frames × channels, float32) between two times of an audio file, and its sample rate."""
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            f.seek(max(0, int(start * sr)))
            data = f.read(max(0, int((end - start) * sr)), dtype="float32", always_2d=True)
            return data, sr
    except (sf.LibsndfileError, RuntimeError):
        return _read_span_av(path, start, end)


def _read_span_av(path: str | Path, start: float, end: float) -> tuple[np.ndarray, int]:
    import av

    chunks, sr = [], 16000
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        sr = stream.rate or sr
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=sr)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                t0 = float(out.pts * out.time_base) if out.pts is not None else 0.0
                if t0 > end:
                    break
                arr = out.to_ndarray().T  # frames × channels
                lo, hi = max(0, int((start - t0) * sr)), min(len(arr), int((end - t0) * sr))
                if hi > lo:
                    chunks.append(arr[lo:hi])
    data = np.concatenate(chunks) if chunks else np.zeros((0, 1), dtype=np.float32)
    return data.astype(np.float32), sr


def cut_clip(path: str | Path, start: float, end: float, out_path: Path, pad: float = 2.0) -> Path:
    """Write the moment plus `pad` seconds either side as a 16-bit WAV; raises if nothing was read."""
    data, sr = read_span(path, max(0.0, start - pad), end + pad)
    if not len(data):
        raise ValueError(f"no audio between {start:.1f}s and {end:.1f}s in {path}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out_path), data, sr, subtype="PCM_16")
    return out_path


def with_clips(examples: list[Example], paths: dict[str, str], out_dir: Path, pad: float = 2.0,
               cache: dict[tuple, str | None] | None = None) -> list[Example]:
    """The examples with `clip` set (relative to out_dir); a recording that cannot be read gets none."""
    cache = {} if cache is None else cache
    out = []
    for x in examples:
        key = (x.recording_id, round(x.start, 2), round(x.end, 2))
        if key not in cache:
            rel = f"clips/{x.call_slug}_{x.start:07.2f}-{x.end:07.2f}.wav"
            try:
                cut_clip(paths[x.recording_id], x.start, x.end, out_dir / rel, pad)
                cache[key] = rel
            except Exception as e:  # an unreadable recording costs its clip, never the report
                log.warning("no clip for %s at %.1fs: %s", x.call_id, x.start, e)
                cache[key] = None
        out.append(replace(x, clip=cache[key]))
    return out
