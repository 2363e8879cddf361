"""The checklist test bench: run each item's `examples` (must-pass / must-fail snippets) and, optionally, one
dialogue through `ChecklistEngine` and show the verdicts before anything is stored.

Each example snippet becomes a one-turn transcript spoken by the item's speaker (the agent for `any`); the item's
verdict on it must equal the example's side. Nothing here touches a database.

`callqa rules test --checklist FILE [--dialogue FILE] [--json]` prints the same as the `/rules` page and exits 1
when an example comes out wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

from callqa.qa_rules.checklist import CHECKLIST_DIR, Checklist, ChecklistError, load_checklist
from callqa.qa_rules.engine import ChecklistEngine

from callqa.records import Transcript

_ENGINES: dict[tuple[str, int, str], ChecklistEngine] = {}


@dataclass(frozen=True)
class ExampleResult:
    item_id: str
    expected: str  # pass | fail
    text: str
    verdict: str
    confidence: float
    reason: str

    @property
    def ok(self) -> bool:
        return self.verdict == self.expected


def bundled_checklists() -> list[str]:
    return sorted(p.stem for p in CHECKLIST_DIR.glob("*.yaml"))


def engine_for(checklist: Checklist) -> ChecklistEngine:
    """One engine per checklist version and text (the sentence encoder is shared by the process)."""
    key = (checklist.id, checklist.version, checklist.source)
    if key not in _ENGINES:
        from callqa.models.text_encoder import get_encoder

        _ENGINES[key] = ChecklistEngine(checklist, get_encoder())
    return _ENGINES[key]


def snippet_transcript(text: str, speaker: str) -> Transcript:
    return Transcript.from_turns([{"speaker": "agent" if speaker == "any" else speaker, "text": text,
                                   "start": 0.0, "end": 5.0}])


def run_examples(checklist: Checklist, engine: ChecklistEngine | None = None) -> list[ExampleResult]:
    engine = engine or engine_for(checklist)
    cases = [(it, side, text) for it in checklist.items for side in ("pass", "fail")
             for text in it.examples.get(side, ())]
    if not cases:
        return []
    verdicts = engine.verdicts_many([snippet_transcript(text, it.speaker) for it, _, text in cases])
    out = []
    for (it, side, text), per_call in zip(cases, verdicts, strict=True):
        v = next(x for x in per_call if x.item_id == it.id)
        out.append(ExampleResult(it.id, side, text, v.verdict, round(float(v.confidence), 3), v.reason))
    return out


def parse_dialogue(text: str) -> Transcript:
    """A dialogue as JSON (a list of turns, or an object with `turns`: {speaker, text[, start, end]}) or as lines
    `agent: …` / `customer: …` (also 坐席/客服 and 客户/顾客)."""
    text = text.strip()
    if not text:
        raise ValueError("the dialogue is empty")
    if text[0] in "[{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"the dialogue is not valid JSON: {e}") from None
        turns = data.get("turns") if isinstance(data, dict) else data
        if not isinstance(turns, list) or not all(isinstance(t, dict) and isinstance(t.get("text"), str)
                                                  for t in turns):
            raise ValueError("a JSON dialogue is a list of {speaker, text} turns (or an object with 'turns')")
        return Transcript.from_turns([{**t, "speaker": _speaker(str(t.get("speaker", "agent")))} for t in turns])
    turns = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head, sep, rest = line.replace("：", ":", 1).partition(":")
        if not sep:
            raise ValueError(f"line {n}: write 'agent: …' or 'customer: …'")
        turns.append({"speaker": _speaker(head.strip()), "text": rest.strip(), "start": float(len(turns)),
                      "end": float(len(turns)) + 0.9})
    return Transcript.from_turns(turns)


def _speaker(name: str) -> str:
    n = name.strip().lower()
    if n in ("agent", "a", "坐席", "客服", "销售"):
        return "agent"
    if n in ("customer", "c", "客户", "顾客"):
        return "customer"
    raise ValueError(f"unknown speaker {name!r}: use agent or customer")


def run_dialogue(checklist: Checklist, transcript: Transcript,
                 engine: ChecklistEngine | None = None) -> list[dict[str, Any]]:
    engine = engine or engine_for(checklist)
    out = []
    for v in engine.verdicts(transcript):
        out.append({"item_id": v.item_id, "verdict": v.verdict, "confidence": round(float(v.confidence), 3),
                    "reason": v.reason, "evidence": [e.quote for e in v.evidence]})
    return out


def format_results(checklist: Checklist, examples: list[ExampleResult], dialogue: list[dict] | None) -> str:
    lines = [f"checklist {checklist.id} v{checklist.version}"]
    if not examples:
        lines.append("no item carries examples")
    by_item: dict[str, list[ExampleResult]] = {}
    for r in examples:
        by_item.setdefault(r.item_id, []).append(r)
    for item_id, rs in by_item.items():
        good = sum(r.ok for r in rs)
        lines.append(f"\n{item_id}: {good}/{len(rs)} examples right")
        for r in rs:
            mark = "ok " if r.ok else "BAD"
            lines.append(f"  {mark} must {r.expected:<4} got {r.verdict:<4} {r.confidence:.2f}  {r.text}")
    if dialogue is not None:
        lines.append("\ndialogue:")
        for d in dialogue:
            ev = f"  “{d['evidence'][0]}”" if d["evidence"] else ""
            lines.append(f"  {d['item_id']:<22} {d['verdict']:<4} {d['confidence']:.2f}{ev}")
    return "\n".join(lines)


# --- the command -------------------------------------------------------------------------------------


def cmd_rules(args: argparse.Namespace) -> int:
    try:
        cl = load_checklist(args.checklist)
        transcript = parse_dialogue(args.dialogue.read_text(encoding="utf-8")) if args.dialogue else None
    except (ChecklistError, ValueError, OSError) as e:
        print(f"callqa rules: {e}", file=sys.stderr)
        return 2
    examples = run_examples(cl)
    dialogue = run_dialogue(cl, transcript) if transcript is not None else None
    if args.json:
        print(json.dumps({"checklist": {"id": cl.id, "version": cl.version},
                          "examples": [{**asdict(r), "ok": r.ok} for r in examples], "dialogue": dialogue},
                         ensure_ascii=False, indent=2))
    else:
        print(format_results(cl, examples, dialogue))
    return 0 if all(r.ok for r in examples) else 1
