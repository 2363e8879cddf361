"""PII masking for transcripts, evidence and reports: phone numbers, national ID numbers, bank card
numbers (and e-mail addresses), in Chinese and English formats.

    mask_pii("我的手机是138 1234 5678")            → "我的手机是[PHONE]"
    mask_pii("card 4111-1111-1111-1111", PiiConfig(style="partial"))  → "card ************1111"
    mask_transcript(transcript)                     → the same Transcript with every segment masked

Detection works on digits as written ("138-1234-5678", "+86 138 1234 5678", "(555) 123-4567") and
on digits spoken as words, as ASR writes them ("一三八一二三四五六七八", "幺三八…",
"five five five one two three four"). Checks that keep false alarms down: Chinese mobiles start
1[3-9] and have 11 digits; an 18-digit ID must have a valid date and check digit (GB 11643);
a bank card is 13-19 digits passing the Luhn check (or a 16-19 digit UnionPay number, 62…).
Order numbers and other long digit runs that fail these checks are left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date

from callqa.records import Evidence, Transcript

KINDS = ("national_id", "bank_card", "phone", "email")


@dataclass(frozen=True)
class PiiConfig:
    """Which kinds to mask and how: `tag` → "[PHONE]"; `partial` → keep the last `keep_last` digits."""

    phone: bool = True
    national_id: bool = True
    bank_card: bool = True
    email: bool = True
    style: str = "tag"  # tag | partial
    keep_last: int = 4
    spoken_digits: bool = True  # also find numbers spoken digit by digit

    def enabled(self, kind: str) -> bool:
        return bool(getattr(self, kind))


DEFAULT = PiiConfig()
TAGS = {"phone": "[PHONE]", "national_id": "[ID]", "bank_card": "[CARD]", "email": "[EMAIL]"}

_ZH_DIGITS = {"零": "0", "〇": "0", "洞": "0", "一": "1", "幺": "1", "二": "2", "两": "2", "三": "3", "四": "4",
              "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}
_EN_DIGITS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
              "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_SEP = r"[\s\-.·_]"
# a run of digits with the separators people and ASR put inside numbers; (?<!\w) keeps "A1234" apart
_DIGIT_RUN = re.compile(r"(?<![A-Za-z0-9+])(\+?\(?\d[\d\s\-.·_()]*\d[xX]?)(?![A-Za-z0-9])")
# a bare 10-digit run right after these words is a reference number, not a phone
_REF_CONTEXT = re.compile(r"(order|tracking|invoice|ticket|id|no\.|订单|单号|编号|工单)\W{0,3}$", re.IGNORECASE)
_ZH_RUN = re.compile(rf"[{''.join(_ZH_DIGITS)}](?:{_SEP}?[{''.join(_ZH_DIGITS)}xX]){{6,}}")
_EN_RUN = re.compile(r"\b(?:(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine|double \w+|triple \w+)"
                     r"[\s,\-]*){7,}\b", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(\.[\w-]+)+\b")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def cn_id_ok(value: str) -> bool:
    """18-character PRC resident ID: region, a real birth date, sequence, ISO 7064 check character."""
    v = value.upper()
    if not re.fullmatch(r"[1-9]\d{16}[\dX]", v):
        return False
    try:
        born = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return False
    if not date(1900, 1, 1) <= born <= date.today():
        return False
    return _ID_CHECK[sum(int(c) * w for c, w in zip(v[:17], _ID_WEIGHTS, strict=True)) % 11] == v[17]


def classify(digits: str, had_plus: bool = False) -> str | None:
    """What a bare digit string is (None: not PII we know)."""
    n = len(digits)
    if n == 18 and cn_id_ok(digits):
        return "national_id"
    if digits[-1:] in "xX":
        return None
    if 13 <= n <= 19 and (luhn_ok(digits) or (digits.startswith("62") and n >= 16)):
        return "bank_card"
    if n == 9 and not had_plus:
        return None
    if re.fullmatch(r"(86)?1[3-9]\d{9}", digits):  # Chinese mobile, optionally with the country code
        return "phone"
    if re.fullmatch(r"0\d{9,11}", digits):  # Chinese / UK style landline with trunk prefix
        return "phone"
    if re.fullmatch(r"1?[2-9]\d{2}[2-9]\d{6}", digits):  # North American number
        return "phone"
    if had_plus and 8 <= n <= 15:
        return "phone"
    if n == 15 and re.fullmatch(r"[1-9]\d{14}", digits) and _old_id_date_ok(digits):
        return "national_id"
    return None


def _old_id_date_ok(d: str) -> bool:
    try:
        date(1900 + int(d[6:8]), int(d[8:10]), int(d[10:12]))
        return True
    except ValueError:
        return False


def _mask(kind: str, digits: str, cfg: PiiConfig) -> str:
    if cfg.style == "partial" and kind != "email" and cfg.keep_last > 0:
        return "*" * max(0, len(digits) - cfg.keep_last) + digits[-cfg.keep_last:]
    return TAGS[kind]


def _spoken_to_digits(text: str) -> str:
    out = []
    for tok in re.findall(r"[a-z]+", text.lower()):
        if tok in ("double", "triple"):
            out.append(tok)
        elif tok in _EN_DIGITS:
            d = _EN_DIGITS[tok]
            if out and out[-1] in ("double", "triple"):
                out[-1:] = [d] * (2 if out[-1] == "double" else 3)
            else:
                out.append(d)
    return "".join(x for x in out if x.isdigit())


def mask_pii(text: str, config: PiiConfig | None = None) -> str:
    """`text` with every phone number, national ID, bank card number (and e-mail) masked."""
    cfg = config or DEFAULT
    if not text:
        return text
    if cfg.email:
        text = _EMAIL.sub(lambda m: _mask("email", m.group(0), cfg), text)

    def digit_run(m: re.Match) -> str:
        raw = m.group(1)
        digits = re.sub(r"[^\dxX]", "", raw)
        kind = classify(digits, raw.lstrip("(").startswith("+"))
        if kind == "phone" and raw.isdigit() and len(raw) == 10 and _REF_CONTEXT.search(m.string[:m.start()]):
            kind = None
        return _mask(kind, digits, cfg) if kind and cfg.enabled(kind) else raw

    text = _DIGIT_RUN.sub(digit_run, text)
    if cfg.spoken_digits:
        def zh_run(m: re.Match) -> str:
            digits = "".join(_ZH_DIGITS.get(c, c) for c in m.group(0) if c in _ZH_DIGITS or c in "xX")
            kind = classify(digits)
            return _mask(kind, digits, cfg) if kind and cfg.enabled(kind) else m.group(0)

        def en_run(m: re.Match) -> str:
            digits = _spoken_to_digits(m.group(0))
            kind = classify(digits)
            trail = m.group(0)[len(m.group(0).rstrip(" ,-")):]
            return _mask(kind, digits, cfg) + trail if kind and cfg.enabled(kind) else m.group(0)

        text = _ZH_RUN.sub(zh_run, text)
        text = _EN_RUN.sub(en_run, text)
    return text


def mask_transcript(transcript: Transcript, config: PiiConfig | None = None) -> Transcript:
    """The transcript with every segment's text (and word list) masked; times and speakers unchanged.
    Word timings are dropped from segments whose text changed (they would spell the number out)."""
    segs = []
    for s in transcript.segments:
        masked = mask_pii(s.text, config)
        segs.append(s if masked == s.text else replace(s, text=masked, words=()))
    return replace(transcript, segments=tuple(segs))


def mask_evidence(evidence: Evidence, config: PiiConfig | None = None) -> Evidence:
    return replace(evidence, quote=mask_pii(evidence.quote, config))
