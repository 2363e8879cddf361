"""The DuckDB store: schema, idempotent writes, and the queries reports use.

One process writes a database file at a time (DuckDB's rule); flows compute in tasks and persist
through one `Store`. Identity of a recording is the SHA-256 of its bytes; verdicts are keyed by
(recording, checklist id, checklist version, item), so re-scoring with a new checklist version adds
rows and never overwrites history.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from callqa.qa_rules.checklist import Checklist

from callqa.records import CallScore, Transcript

log = logging.getLogger(__name__)

DEFAULT_DB = "callqa.duckdb"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_info (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS recordings (
    recording_id   VARCHAR PRIMARY KEY,          -- sha256 of the file bytes
    path           VARCHAR NOT NULL,             -- where it was last seen
    file_name      VARCHAR NOT NULL,
    size_bytes     BIGINT,
    call_id        VARCHAR,
    agent_id       VARCHAR,
    customer_id    VARCHAR,
    started_at     TIMESTAMPTZ,
    started_local  TIMESTAMP,                    -- wall-clock time of the call, used for ISO weeks
    language       VARCHAR,
    direction      VARCHAR,
    agent_channel  INTEGER,
    metadata       JSON,                         -- every manifest field, unknown ones included
    status         VARCHAR NOT NULL,             -- new | transcribed | scored | failed | no_speech
    error_reason   VARCHAR,                      -- short code: empty, not_audio, corrupt, ...
    error          VARCHAR,                      -- human-readable message
    attempts       INTEGER DEFAULT 0,
    duration_s     DOUBLE,
    channels       INTEGER,
    sample_rate    INTEGER,
    container      VARCHAR,
    truncated      BOOLEAN,
    asr_runtime    VARCHAR,
    asr_model      VARCHAR,
    detected_language VARCHAR,
    first_seen     TIMESTAMPTZ DEFAULT current_timestamp,
    updated_at     TIMESTAMPTZ DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS segments (
    recording_id VARCHAR NOT NULL,
    seg_idx      INTEGER NOT NULL,
    speaker      VARCHAR NOT NULL,
    start_s      DOUBLE NOT NULL,
    end_s        DOUBLE NOT NULL,
    text         VARCHAR NOT NULL,
    confidence   DOUBLE,
    PRIMARY KEY (recording_id, seg_idx)
);
CREATE TABLE IF NOT EXISTS checklists (
    checklist_id VARCHAR NOT NULL,
    version      INTEGER NOT NULL,
    title        JSON,
    items        JSON,                           -- [{id, title, weight, critical, ...}] in checklist order
    source       VARCHAR,                        -- the YAML text this version was made from
    loaded_at    TIMESTAMPTZ DEFAULT current_timestamp,
    PRIMARY KEY (checklist_id, version)
);
CREATE TABLE IF NOT EXISTS item_verdicts (
    recording_id      VARCHAR NOT NULL,
    checklist_id      VARCHAR NOT NULL,
    checklist_version INTEGER NOT NULL,
    item_id           VARCHAR NOT NULL,
    verdict           VARCHAR NOT NULL,          -- pass | fail | na
    confidence        DOUBLE,
    evidence          JSON,                      -- [{segment, speaker, quote, start, end, score}]
    reason            VARCHAR,
    scored_at         TIMESTAMPTZ DEFAULT current_timestamp,
    PRIMARY KEY (recording_id, checklist_id, checklist_version, item_id)
);
CREATE TABLE IF NOT EXISTS call_scores (
    recording_id      VARCHAR NOT NULL,
    checklist_id      VARCHAR NOT NULL,
    checklist_version INTEGER NOT NULL,
    score             DOUBLE NOT NULL,
    points            DOUBLE,
    max_points        DOUBLE,
    critical_fail     BOOLEAN,
    scored_at         TIMESTAMPTZ DEFAULT current_timestamp,
    PRIMARY KEY (recording_id, checklist_id, checklist_version)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id       VARCHAR PRIMARY KEY,
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    source_dir   VARCHAR,
    checklist_id VARCHAR,
    checklist_version INTEGER,
    n_found      INTEGER,
    n_scored     INTEGER,
    n_skipped    INTEGER,
    n_failed     INTEGER,
    n_no_speech  INTEGER
);
"""


class Store:
    """A DuckDB file holding calls, transcripts, verdicts and scores."""

    def __init__(self, path: str | Path = DEFAULT_DB, read_only: bool = False):
        self.path = Path(path)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise FileNotFoundError(f"no database at {self.path}; run `callqa run` first")
        self.con = duckdb.connect(str(self.path), read_only=read_only)
        if not read_only:
            self.con.execute(_SCHEMA)
            self.con.execute(
                "INSERT OR REPLACE INTO schema_info VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
            )

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # --- writes ------------------------------------------------------------------------------

    def save_checklist(self, checklist: Checklist) -> None:
        items = [
            {"id": it.id, "title": it.title, "description": it.description, "speaker": it.speaker,
             "weight": it.weight, "critical": it.critical, "polarity": it.polarity, "applies_if": it.applies_if}
            for it in checklist.items
        ]
        existing = self.con.execute(
            "SELECT source FROM checklists WHERE checklist_id = ? AND version = ?", [checklist.id, checklist.version]
        ).fetchone()
        if existing is not None:
            if existing[0] != checklist.source:
                log.warning("checklist %s v%d differs from the stored copy; bump its version to keep history",
                            checklist.id, checklist.version)
            return
        self.con.execute(
            "INSERT INTO checklists (checklist_id, version, title, items, source) VALUES (?, ?, ?, ?, ?)",
            [checklist.id, checklist.version, json.dumps(checklist.title, ensure_ascii=False),
             json.dumps(items, ensure_ascii=False), checklist.source],
        )

    def upsert_recording(self, recording_id: str, **fields: Any) -> None:
        """Insert a recording or update the given fields (metadata is JSON-encoded)."""
        if "metadata" in fields and not isinstance(fields["metadata"], str | None):
            fields["metadata"] = json.dumps(fields["metadata"], ensure_ascii=False, default=str)
        exists = self.con.execute("SELECT 1 FROM recordings WHERE recording_id = ?", [recording_id]).fetchone()
        if exists:
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                self.con.execute(
                    f"UPDATE recordings SET {sets}, updated_at = current_timestamp WHERE recording_id = ?",
                    [*fields.values(), recording_id],
                )
        else:
            cols = ["recording_id", *fields]
            self.con.execute(
                f"INSERT INTO recordings ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                [recording_id, *fields.values()],
            )

    def save_transcript(self, recording_id: str, transcript: Transcript) -> None:
        """Replace a recording's segments (one transaction) and mark it transcribed."""
        with self.transaction() as con:
            con.execute("DELETE FROM segments WHERE recording_id = ?", [recording_id])
            rows = [(recording_id, i, s.speaker, s.start, s.end, s.text, s.confidence)
                    for i, s in enumerate(transcript.segments)]
            if rows:
                con.executemany("INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            con.execute(
                "UPDATE recordings SET status = 'transcribed', asr_runtime = ?, asr_model = ?, "
                "detected_language = ?, error = NULL, error_reason = NULL, updated_at = current_timestamp "
                "WHERE recording_id = ?",
                [transcript.runtime, transcript.model, transcript.language, recording_id],
            )

    def save_score(self, recording_id: str, score: CallScore) -> None:
        """Store a call's verdicts and score for one checklist version (idempotent)."""
        key = [recording_id, score.checklist_id, score.checklist_version]
        with self.transaction() as con:
            con.execute(
                "DELETE FROM item_verdicts WHERE recording_id = ? AND checklist_id = ? AND checklist_version = ?", key
            )
            con.execute(
                "DELETE FROM call_scores WHERE recording_id = ? AND checklist_id = ? AND checklist_version = ?", key
            )
            con.executemany(
                "INSERT INTO item_verdicts (recording_id, checklist_id, checklist_version, item_id, verdict, "
                "confidence, evidence, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [[*key, v.item_id, v.verdict, v.confidence,
                  json.dumps([asdict(e) for e in v.evidence], ensure_ascii=False), v.reason]
                 for v in score.verdicts],
            )
            con.execute(
                "INSERT INTO call_scores (recording_id, checklist_id, checklist_version, score, points, max_points, "
                "critical_fail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [*key, score.score, score.points, score.max_points, score.critical_fail],
            )
            con.execute(
                "UPDATE recordings SET status = 'scored', updated_at = current_timestamp WHERE recording_id = ?",
                [recording_id],
            )

    def record_failure(self, recording_id: str, status: str, reason: str, message: str) -> None:
        self.con.execute(
            "UPDATE recordings SET status = ?, error_reason = ?, error = ?, attempts = coalesce(attempts, 0) + 1, "
            "updated_at = current_timestamp WHERE recording_id = ?",
            [status, reason, message, recording_id],
        )

    def start_run(self, run_id: str, source_dir: str, checklist: Checklist) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO runs (run_id, started_at, source_dir, checklist_id, checklist_version) "
            "VALUES (?, current_timestamp, ?, ?, ?)",
            [run_id, source_dir, checklist.id, checklist.version],
        )

    def finish_run(self, run_id: str, counts: dict[str, int]) -> None:
        self.con.execute(
            "UPDATE runs SET finished_at = current_timestamp, n_found = ?, n_scored = ?, n_skipped = ?, "
            "n_failed = ?, n_no_speech = ? WHERE run_id = ?",
            [counts.get("found", 0), counts.get("scored", 0), counts.get("skipped", 0), counts.get("failed", 0),
             counts.get("no_speech", 0), run_id],
        )

    # --- reads -------------------------------------------------------------------------------

    def recording_status(self, recording_id: str) -> str | None:
        row = self.con.execute("SELECT status FROM recordings WHERE recording_id = ?", [recording_id]).fetchone()
        return row[0] if row else None

    def is_scored(self, recording_id: str, checklist: Checklist) -> bool:
        return self.con.execute(
            "SELECT 1 FROM call_scores WHERE recording_id = ? AND checklist_id = ? AND checklist_version = ?",
            [recording_id, checklist.id, checklist.version],
        ).fetchone() is not None

    def load_transcript(self, recording_id: str) -> Transcript | None:
        from callqa.records import Segment

        row = self.con.execute(
            "SELECT status, detected_language, duration_s, asr_runtime, asr_model FROM recordings "
            "WHERE recording_id = ?", [recording_id],
        ).fetchone()
        if row is None or row[0] not in ("transcribed", "scored"):
            return None
        segs = self.con.execute(
            "SELECT speaker, start_s, end_s, text, confidence FROM segments WHERE recording_id = ? ORDER BY seg_idx",
            [recording_id],
        ).fetchall()
        return Transcript(tuple(Segment(*s) for s in segs), row[1], row[2] or 0.0, row[3] or "", row[4] or "")

    def counts(self) -> dict[str, int]:
        return {t: self.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("recordings", "segments", "item_verdicts", "call_scores")}


def parse_started_at(value: str | None) -> tuple[datetime | None, datetime | None]:
    """(aware timestamp, local wall-clock) from an ISO 8601 string; the wall clock decides the ISO week."""
    if not value:
        return None, None
    dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return dt, dt.replace(tzinfo=None)
