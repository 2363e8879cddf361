"""Follow-ups: the agent's promises in a call (restock alert, call back, send a quote or a link,
deliver or visit at a time, hold an item, refund), so each one gets a reminder.

Two detectors over the agent's segments: patterns (zh + en) that also name the kind of promise,
and, when an encoder is given, exemplar similarity that catches promises worded otherwise
(kind `other`), only in sentences with a first-person commitment ("我帮您", "I'll"). A promise's
due time is the first time expression in it ("明天", "周五", "next Monday", "within 48 hours"),
kept as said.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from callqa.records import Segment, TextEmbedder

# kind → patterns; the first kind whose pattern matches names the promise
PROMISE_PATTERNS: dict[str, list[str]] = {
    "restock_alert": [
        r"(到货|有货|补货).{0,8}(通知|告诉|提醒|联系)", r"(通知|提醒)您.{0,6}(到货|有货)", r"到货提醒",
        r"\b(restock|back in stock|back-in-stock|waitlist|wait list|waiting list|restock list)\b",
        r"\b(let you know|notify you|text you|email you)\b.{0,40}\b(in stock|arrives?|comes? in|available)\b",
    ],
    "call_back": [
        r"(给您|再给您|回头给您|稍后给您|晚点给您|我们会|我会)(回|打)(个)?电话", r"(回电|回拨)给您",
        r"\b(call you back|call you (tomorrow|later|again|when|once)|give you a call|we'll call you|i'll call you|"
        r"get back to you|follow up with you|ring you)\b",
    ],
    "send_quote": [
        r"(发|给)您.{0,6}(报价|报价单|方案|合同)", r"(报价|报价单).{0,6}(发给您|发您)",
        r"\b(send|email|text) you (a|the|an) (quote|quotation|estimate|proposal|invoice)\b",
    ],
    "send_info": [
        r"(链接|资料|照片|图片|说明书|详情|地址|截图|优惠券|券).{0,4}(发给您|发您)",
        r"(发给您|给您发|发您).{0,8}(链接|资料|照片|图片|说明|详情|地址|优惠券|券)",
        r"(发到|发在)您.{0,2}(手机|微信|邮箱)",
        r"\b(send|email|text) (you )?(the |a |an )?(\w+ )?(link|details|photos?|pictures?|brochure|"
        r"specs?|information|info|confirmation|tracking)\b", r"\byou'll get a (text|email|message|call)\b",
    ],
    "reserve": [
        r"(给|帮)您(留|预留|登记|保留)", r"\b(reserve|hold|set aside|put aside|keep) (one|it|a \w+) for you\b",
        r"\bput you on the\b",
    ],
    "refund": [r"(给|帮)您.{0,4}(退款|退钱|补差价)", r"\b(refund|credit) .{0,30}\b(today|to your card|account)\b"],
    "delivery": [
        r"(会|就能|马上|今天|明天|后天|周.|点|给您|帮您|我们).{0,6}(寄出|发出|发货|送过去|送到|上门)",
        r"安排(发货|配送|送货|师傅)", r"师傅.{0,8}过去",
        r"\b(ship (it|them|today|tomorrow)|deliver (it|them)|will (arrive|be delivered)|be ready for pickup|"
        r"send (it|them) out|technician will)\b",
    ],
}

DUE_PATTERNS = [
    r"(今天|明天|后天|今晚|明早|下午|上午|晚上)", r"(这|下|本)?(周|星期|礼拜)[一二三四五六日天末]",
    r"[0-9一二两三四五六七八九十]+\s*(小时|天|分钟)(内|之内|以内)?",
    r"[0-9一二三四五六七八九十]+点",
    r"\b(today|tonight|tomorrow( morning| afternoon)?|this (week|afternoon|evening))\b",
    r"\b(next )?(monday|tuesday|wednesday|thursday|friday|saturday|sunday|week)( morning| afternoon)?\b",
    r"\bwithin \w+ (hours?|days?|minutes?)\b", r"\b\d{1,2}(:\d\d)? ?(am|pm)\b",
]

# exemplar sentences of promises and of near misses, for the semantic detector
PROMISE_EXEMPLARS = [
    "到货了我第一时间通知您。", "我明天下午再给您回个电话。", "我把报价单整理好发给您。", "我帮您先预留一台。",
    "I'll call you back tomorrow with the details.", "I'll send you a quote by email this afternoon.",
    "As soon as it's back in stock I'll let you know.", "I'll put one aside for you until Saturday.",
]
NON_PROMISE_EXEMPLARS = [
    "您好，请问有什么可以帮您？", "这款是不锈钢内胆，容量五升。", "您家里几口人？", "不客气，再见。",
    "Hi, how can I help you today?", "It has a stainless steel drum and a five-year warranty.",
    "How many people are in your household?", "Thanks for calling, have a nice day.",
]

_COMPILED = {kind: [re.compile(p, re.IGNORECASE) for p in pats] for kind, pats in PROMISE_PATTERNS.items()}
# the semantic detector only reads sentences where the agent commits to doing something
_COMMIT = re.compile(r"(我|我们)(来|会|帮|给|把|再|马上|这就)|帮您|给您|\b(i'll|we'll|i will|we will|let me|i can)\b",
                     re.IGNORECASE)
_DUE = [re.compile(p, re.IGNORECASE) for p in DUE_PATTERNS]


@dataclass(frozen=True)
class Promise:
    segment: int
    kind: str
    quote: str
    start: float
    end: float
    due: str | None
    detector: str  # pattern | semantic
    score: float = 1.0


def promise_kind(text: str) -> str | None:
    for kind, pats in _COMPILED.items():
        if any(p.search(text) for p in pats):
            return kind
    return None


def due_hint(text: str) -> str | None:
    hits = [m for p in _DUE for m in p.finditer(text)]
    return min(hits, key=lambda m: m.start()).group(0).strip() if hits else None


class PromiseDetector:
    """Finds the agent's promises in a transcript; `encoder` adds the semantic detector."""

    def __init__(self, encoder: TextEmbedder | None = None, threshold: float = 0.915, margin: float = 0.02):
        self.encoder = encoder
        self.threshold, self.margin = threshold, margin
        if encoder is not None:
            self._pos = encoder.embed(PROMISE_EXEMPLARS)
            self._neg = encoder.embed(NON_PROMISE_EXEMPLARS)

    def find(self, segments: list[Segment]) -> list[Promise]:
        found: dict[int, Promise] = {}
        # the agent's opening turn introduces the call ("今天给您回个电话"): not a promise
        agent = [(i, s) for i, s in enumerate(segments) if s.speaker == "agent" and s.text.strip()][1:]
        for i, s in agent:
            hits = [(kind, sentence) for sentence in _sentences(s.text) if (kind := promise_kind(sentence))]
            if hits:  # the most specific kind said in the turn (PROMISE_PATTERNS order)
                kind, sentence = min(hits, key=lambda h: list(PROMISE_PATTERNS).index(h[0]))
                found[i] = Promise(i, kind, s.text, s.start, s.end, due_hint(sentence), "pattern")
        rest = [(i, s) for i, s in agent if i not in found]
        if self.encoder is not None and rest:
            sents = [(i, s, sent) for i, s in rest for sent in _sentences(s.text) if _COMMIT.search(sent)]
            if not sents:
                return [found[i] for i in sorted(found)]
            emb = self.encoder.embed([sent for _, _, sent in sents])
            pos, neg = (emb @ self._pos.T).max(axis=1), (emb @ self._neg.T).max(axis=1)
            for (i, s, sent), p, n in zip(sents, pos, neg, strict=True):
                if p >= self.threshold and p - n >= self.margin and i not in found:
                    found[i] = Promise(i, "other", s.text, s.start, s.end, due_hint(sent), "semantic",
                                       round(float(p), 3))
        return [found[i] for i in sorted(found)]


def _sentences(text: str) -> list[str]:
    parts = [p.strip() for p in re.split(r"(?<=[。！？!?；;])\s*|(?<=[.])\s+", text) if p.strip()]
    return parts or [text]


def similarity_matrix(encoder: TextEmbedder, texts: list[str]) -> np.ndarray:
    """Cosine similarity of texts to the promise exemplars (for tuning the threshold)."""
    return encoder.embed(texts) @ encoder.embed(PROMISE_EXEMPLARS).T
