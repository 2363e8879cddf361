"""Human review: QA leads override automatic verdicts; reports use the latest override.

Every override is a new row of `verdict_reviews` (who, when, why), so the history is kept; the
latest row for a (recording, checklist id, checklist version, item) is the human verdict. A
reviewer who agrees with the machine records the same verdict: that counts toward agreement.

Agreement between the automatic verdict and the latest human verdict is reported per item as
raw agreement and Cohen's kappa over the categories pass / fail / na.

The table is defined once, by migration v4 (`migrations.py`); `ensure_review_schema` upgrades a database
from before it. A review is a write like any other: callers hold the writer lock (`Store(path)`).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
from callqa.pipelines.store.database import WEEK_EXPR, latest_checklist_version
from callqa.pipelines.store.migrations import migrate
from callqa.pipelines.store.reader import Reader, connection
from callqa.qa_rules.checklist import DEFAULT_CHECKLIST

VERDICTS = ("pass", "fail", "na")

_EMPTY_REVIEWS = (
    "(SELECT NULL::BIGINT AS review_id, NULL::VARCHAR AS recording_id, NULL::VARCHAR AS checklist_id, "
    "NULL::INTEGER AS checklist_version, NULL::VARCHAR AS item_id, NULL::VARCHAR AS verdict, "
    "NULL::VARCHAR AS auto_verdict, NULL::VARCHAR AS reviewer, NULL::VARCHAR AS comment, "
    "NULL::TIMESTAMPTZ AS created_at LIMIT 0)"
)


def ensure_review_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Make sure `verdict_reviews` exists on a writable connection: it is defined once, by migration v4, so a
    database from before that is upgraded (as opening it with `Store` would)."""
    if not has_reviews_table(con):
        migrate(con)


def has_reviews_table(con: duckdb.DuckDBPyConnection) -> bool:
    return con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'verdict_reviews'"
    ).fetchone()[0] > 0


def reviews_relation(con: duckdb.DuckDBPyConnection) -> str:
    """SQL for the reviews table, or an empty relation of the same shape on a database that has none."""
    return "verdict_reviews" if has_reviews_table(con) else _EMPTY_REVIEWS


def _has_audio_flag(con: duckdb.DuckDBPyConnection) -> bool:
    return con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'item_verdicts' "
        "AND column_name = 'audio_flag'"
    ).fetchone()[0] > 0


def effective_verdicts_sql(con: duckdb.DuckDBPyConnection) -> str:
    """A SELECT of every stored verdict with the latest human override applied (`verdict`), next to
    the machine's (`auto_verdict`) and the human one (`human_verdict`, NULL when not reviewed), and
    `audio_flag` (why its evidence rests on low-confidence audio; NULL when it does not, and on a database
    older than schema v8, read without upgrading)."""
    flag = "v.audio_flag" if _has_audio_flag(con) else "NULL::VARCHAR AS audio_flag"
    return f"""
        WITH latest AS (
            SELECT * FROM {reviews_relation(con)}
            QUALIFY row_number() OVER (PARTITION BY recording_id, checklist_id, checklist_version, item_id
                                       ORDER BY review_id DESC) = 1
        )
        SELECT v.recording_id, v.checklist_id, v.checklist_version, v.item_id,
               coalesce(l.verdict, v.verdict) AS verdict, v.verdict AS auto_verdict, l.verdict AS human_verdict,
               l.reviewer, l.comment, l.created_at AS reviewed_at, v.confidence, v.evidence, v.reason, {flag}
        FROM item_verdicts v
        LEFT JOIN latest l ON l.recording_id = v.recording_id AND l.checklist_id = v.checklist_id
             AND l.checklist_version = v.checklist_version AND l.item_id = v.item_id
    """


def resolve_recording(db: Reader, call: str) -> str:
    """A recording id from a call id, a full recording id or a unique prefix (at least 8 characters)."""
    con = connection(db)
    rows = con.execute("SELECT recording_id FROM recordings WHERE call_id = ? OR recording_id = ?",
                       [call, call]).fetchall()
    if not rows and len(call) >= 8:
        rows = con.execute("SELECT recording_id FROM recordings WHERE starts_with(recording_id, ?)",
                           [call.lower()]).fetchall()
    ids = sorted({r[0] for r in rows})
    if not ids:
        raise ValueError(f"no call or recording {call!r} in the database")
    if len(ids) > 1:
        raise ValueError(f"{call!r} names {len(ids)} recordings; use the recording id")
    return ids[0]


def _checklist_version(con: duckdb.DuckDBPyConnection, recording_id: str, checklist_id: str,
                       version: int | None) -> int:
    if version is not None:
        return version
    row = con.execute("SELECT max(checklist_version) FROM item_verdicts WHERE recording_id = ? AND checklist_id = ?",
                      [recording_id, checklist_id]).fetchone()
    if row[0] is None:
        raise ValueError(f"recording {recording_id[:12]} has no verdicts under checklist {checklist_id!r}")
    return int(row[0])


@dataclass(frozen=True)
class Review:
    review_id: int
    recording_id: str
    call_id: str | None
    agent_id: str | None
    checklist_id: str
    checklist_version: int
    item_id: str
    verdict: str
    auto_verdict: str | None
    reviewer: str
    comment: str | None
    created_at: object


def add_review(db: Reader, call: str, item_id: str, verdict: str, reviewer: str,
               comment: str = "", checklist_id: str = DEFAULT_CHECKLIST, version: int | None = None) -> Review:
    """Record a human verdict for one item of one call (a new history row; the latest one counts). `db`: a writing
    `Store` (it holds the writer lock), or the web app's writer connection."""
    con = connection(db)
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    if not reviewer.strip():
        raise ValueError("a review needs a reviewer name")
    ensure_review_schema(con)
    rid = resolve_recording(con, call)
    version = _checklist_version(con, rid, checklist_id, version)
    auto = con.execute(
        "SELECT verdict FROM item_verdicts WHERE recording_id = ? AND checklist_id = ? AND checklist_version = ? "
        "AND item_id = ?", [rid, checklist_id, version, item_id],
    ).fetchone()
    if auto is None:
        items = [r[0] for r in con.execute(
            "SELECT item_id FROM item_verdicts WHERE recording_id = ? AND checklist_id = ? AND checklist_version = ? "
            "ORDER BY item_id", [rid, checklist_id, version]).fetchall()]
        raise ValueError(f"no verdict for item {item_id!r} on this call; items: {', '.join(items)}")
    next_id = con.execute("SELECT coalesce(max(review_id), 0) + 1 FROM verdict_reviews").fetchone()[0]
    con.execute(
        "INSERT INTO verdict_reviews (review_id, recording_id, checklist_id, checklist_version, item_id, verdict, "
        "auto_verdict, reviewer, comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [next_id, rid, checklist_id, version, item_id, verdict, auto[0], reviewer.strip(), comment or None],
    )
    return list_reviews(con, review_id=next_id)[0]


def list_reviews(db: Reader, call: str | None = None, item_id: str | None = None,
                 current_only: bool = False, review_id: int | None = None) -> list[Review]:
    """Reviews, newest first; `current_only` keeps the latest per verdict key (the ones reports use)."""
    con = connection(db)
    where, params = [], []
    if call:
        where.append("r.recording_id = ?")
        params.append(resolve_recording(con, call))
    if item_id:
        where.append("r.item_id = ?")
        params.append(item_id)
    if review_id is not None:
        where.append("r.review_id = ?")
        params.append(review_id)
    qualify = ("QUALIFY row_number() OVER (PARTITION BY r.recording_id, r.checklist_id, r.checklist_version, "
               "r.item_id ORDER BY r.review_id DESC) = 1") if current_only else ""
    rows = con.execute(
        f"SELECT r.review_id, r.recording_id, rec.call_id, rec.agent_id, r.checklist_id, r.checklist_version, "
        f"r.item_id, r.verdict, r.auto_verdict, r.reviewer, r.comment, r.created_at "
        f"FROM {reviews_relation(con)} r LEFT JOIN recordings rec ON rec.recording_id = r.recording_id "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} {qualify} ORDER BY r.review_id DESC", params,
    ).fetchall()
    return [Review(*r) for r in rows]


def cohen_kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Cohen's kappa of (rater A, rater B) pairs; None with no pairs; 1.0 when both agree on one category."""
    n = len(pairs)
    if not n:
        return None
    observed = sum(a == b for a, b in pairs) / n
    ca, cb = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    if expected >= 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


def gwet_ac1(pairs: list[tuple[str, str]]) -> float | None:
    """Gwet's AC1 of (rater A, rater B) pairs: like kappa, but chance agreement from how spread the categories
    are, so one rare category (most verdicts pass) does not sink it; None with no pairs."""
    n = len(pairs)
    if not n:
        return None
    observed = sum(a == b for a, b in pairs) / n
    cats = Counter(a for a, _ in pairs) + Counter(b for _, b in pairs)
    if len(cats) < 2:
        return 1.0 if observed == 1.0 else 0.0
    expected = sum((c / (2 * n)) * (1 - c / (2 * n)) for c in cats.values()) / (len(cats) - 1)
    return (observed - expected) / (1.0 - expected)


def bootstrap_interval(pairs: list[tuple[str, str]], stat=cohen_kappa, resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float] | None:
    """A percentile bootstrap interval of `stat` over the pairs (seeded: the same pairs give the same interval);
    None with fewer than 5 pairs, where it means nothing."""
    import random

    if len(pairs) < 5:
        return None
    rng = random.Random(seed)
    values = sorted(v for _ in range(resamples)
                    if (v := stat([pairs[rng.randrange(len(pairs))] for _ in pairs])) is not None)
    last = len(values) - 1
    lo, hi = values[int((1 - level) / 2 * last)], values[int((1 + level) / 2 * last)]
    return round(lo, 3), round(hi, 3)


def bootstrap_intervals(pairs: list[tuple[str, str]], resamples: int = 1000, seed: int = 0,
                        level: float = 0.95) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """The 95% bootstrap intervals of kappa and of AC1 that `bootstrap_interval(pairs, stat)` gives, with the
    same seeded resamples, in milliseconds instead of seconds (it re-counts every resample in Python: ~4 s for
    1,000 reviewed verdicts and both statistics, on every change, too slow for a page).

    Same draws: `random.Random(seed).randrange(n)` takes `n.bit_length()` top bits of each 32-bit Mersenne Twister
    output and rejects values >= n; numpy's MT19937, set to that generator's state, yields the same outputs, so
    the same indices come out, resample by resample. Each resample is then a 3x3 table of (machine, human)
    counts, and kappa and AC1 are computed from the tables exactly as `cohen_kappa` and `gwet_ac1` do (tests
    compare both functions on real and skewed data)."""
    n = len(pairs)
    if n < 5:
        return None, None
    cats = sorted({c for p in pairs for c in p})
    k = len(cats)
    code = np.array([cats.index(a) * k + cats.index(h) for a, h in pairs], dtype=np.int64)
    state = random.Random(seed).getstate()[1]
    bits = np.random.MT19937()
    bits.state = {"bit_generator": "MT19937", "state": {"key": np.array(state[:624], dtype=np.uint32),
                                                       "pos": state[624]}}
    shift = 32 - n.bit_length()
    need = n * resamples
    picks: list[np.ndarray] = []
    have = 0
    while have < need:
        raw = bits.random_raw(int((need - have) * 2.2) + 64) >> shift
        ok = raw[raw < n]
        picks.append(ok)
        have += len(ok)
    idx = np.concatenate(picks)[:need].reshape(resamples, n)
    cells = code[idx] + (np.arange(resamples) * k * k)[:, None]
    tables = np.bincount(cells.ravel(), minlength=resamples * k * k).reshape(resamples, k, k)
    agreed = np.trace(tables, axis1=1, axis2=2)
    observed = agreed / n
    rows, cols = tables.sum(axis=2), tables.sum(axis=1)  # machine's and human's counts per category
    expected = (rows * cols).sum(axis=1) / (n * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(expected >= 1.0, np.where(observed == 1.0, 1.0, 0.0),
                         (observed - expected) / (1.0 - expected))
        both = rows + cols
        present = (both > 0).sum(axis=1)
        share = both / (2 * n)
        chance = (share * (1 - share)).sum(axis=1) / np.maximum(present - 1, 1)
        ac1 = np.where(present < 2, np.where(observed == 1.0, 1.0, 0.0), (observed - chance) / (1.0 - chance))
    last = resamples - 1

    def interval(values: np.ndarray) -> tuple[float, float]:
        v = np.sort(values)
        return round(float(v[int((1 - level) / 2 * last)]), 3), round(float(v[int((1 + level) / 2 * last)]), 3)

    return interval(kappa), interval(ac1)


@dataclass(frozen=True)
class ItemAgreement:
    item_id: str
    reviewed: int
    agreed: int
    raw_agreement: float | None
    kappa: float | None
    confusion: dict[str, int]  # "auto->human": count
    ac1: float | None = None  # Gwet's AC1
    kappa_interval: tuple[float, float] | None = None  # 95% bootstrap interval of kappa (5+ reviewed verdicts)


def agreement(db: Reader, checklist_id: str = DEFAULT_CHECKLIST, version: int | None = None,
              week: str | None = None) -> list[ItemAgreement]:
    """Per item: how often the automatic verdict equals the current human one, and Cohen's kappa (`db`: a Store
    or a bare connection)."""
    con = connection(db)
    version = version or latest_checklist_version(con, checklist_id)
    items = _item_ids(con, checklist_id, version)
    params: list = [checklist_id, version]
    week_filter = ""
    if week:
        week_filter = f"AND {WEEK_EXPR} = ?"
        params.append(week)
    rows = con.execute(
        f"SELECT e.item_id, e.auto_verdict, e.human_verdict FROM ({effective_verdicts_sql(con)}) e "
        f"JOIN recordings r ON r.recording_id = e.recording_id "
        f"WHERE e.checklist_id = ? AND e.checklist_version = ? AND e.human_verdict IS NOT NULL {week_filter}", params,
    ).fetchall()
    by_item: dict[str, list[tuple[str, str]]] = {}
    for item, auto, human in rows:
        by_item.setdefault(item, []).append((auto, human))
    out = []
    for item in items:
        pairs = by_item.get(item, [])
        agreed = sum(a == h for a, h in pairs)
        k, ac1 = cohen_kappa(pairs), gwet_ac1(pairs)
        out.append(ItemAgreement(item, len(pairs), agreed, round(agreed / len(pairs), 3) if pairs else None,
                                 None if k is None else round(k, 3), dict(Counter(f"{a}->{h}" for a, h in pairs)),
                                 None if ac1 is None else round(ac1, 3), bootstrap_intervals(pairs)[0]))
    return out


def _item_ids(con: duckdb.DuckDBPyConnection, checklist_id: str, version: int | None) -> list[str]:
    row = con.execute("SELECT items FROM checklists WHERE checklist_id = ? AND version = ?",
                      [checklist_id, version]).fetchone()
    return [it["id"] for it in json.loads(row[0])] if row else []


def format_agreement(stats: list[ItemAgreement]) -> str:
    lines = [f"{'item':<20} {'reviewed':>8} {'agreed':>6} {'raw':>6} {'kappa':>6} {'95% CI':>13} {'AC1':>6}  "
             "confusion (auto->human)"]
    for s in stats:
        raw = "-" if s.raw_agreement is None else f"{s.raw_agreement:.2f}"
        kappa = "-" if s.kappa is None else f"{s.kappa:.2f}"
        ci = "-" if s.kappa_interval is None else f"{s.kappa_interval[0]:.2f}..{s.kappa_interval[1]:.2f}"
        ac1 = "-" if s.ac1 is None else f"{s.ac1:.2f}"
        conf = ", ".join(f"{k}:{v}" for k, v in sorted(s.confusion.items()))
        lines.append(f"{s.item_id:<20} {s.reviewed:>8} {s.agreed:>6} {raw:>6} {kappa:>6} {ci:>13} {ac1:>6}  {conf}")
    return "\n".join(lines)


def label_to_verdict(polarity: str, label: bool | None) -> str:
    """A manifest label as the verdict a reviewer gives (inverse of evaluate.predicted_label)."""
    if label is None:
        return "na"
    return ("pass" if label else "fail") if polarity == "present" else ("fail" if label else "pass")


def import_labels(db: Reader, rows: Iterable[Mapping[str, Any]], reviewer: str = "labels",
                  checklist_id: str = DEFAULT_CHECKLIST, version: int | None = None,
                  source: str = "the manifest") -> int:
    """Record the `labels` of a labelled manifest's rows (`run.batch.read_manifest`) as human reviews, matched by
    call_id, each commented "label from <source>"; returns how many (`db`: a writing `Store`)."""
    if isinstance(rows, str | Path):
        raise TypeError("import_labels takes the manifest's rows: import_labels(store, read_manifest(path), ...)")
    con = connection(db)
    ensure_review_schema(con)
    n = 0
    for row in rows:
        labels, call_id = row.get("labels"), row.get("call_id")
        if not labels or not call_id:
            continue
        try:
            rid = resolve_recording(con, str(call_id))
            ver = _checklist_version(con, rid, checklist_id, version)
        except ValueError:
            continue
        items = con.execute("SELECT items FROM checklists WHERE checklist_id = ? AND version = ?",
                            [checklist_id, ver]).fetchone()
        polarity = {it["id"]: it.get("polarity", "present") for it in json.loads(items[0])} if items else {}
        for item_id, label in labels.items():
            if item_id in polarity:
                add_review(con, rid, item_id, label_to_verdict(polarity[item_id], label), reviewer,
                           f"label from {source}", checklist_id, ver)
                n += 1
    return n
