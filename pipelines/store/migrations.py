"""Versioned schema migrations for the callqa DuckDB file.

The schema version of a database is the number of migrations applied to it (`schema_info`,
key `schema_version`). Opening a database for writing (`Store(path)`) applies every missing
migration in order, each in its own transaction together with its bookkeeping row, so a crash in
the middle leaves the database at the previous version, never half-upgraded.

Adding a table or a column (any engineer, any module):
  1. append one `Migration(version=<last + 1>, ...)` to `MIGRATIONS` below — never edit or reorder
     one that has shipped, a database somewhere is already at that version;
  2. write plain DuckDB DDL/DML; `ALTER TABLE ... ADD COLUMN` needs a default or NULLs for old rows;
  3. add a case to tests/test_migrations.py if it moves data (the test upgrades a v1 database).
Two people adding a migration at once: the second to merge renumbers theirs (the test fails on a
gap or a duplicate).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


_V1 = """
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

# Run audit trail and failure kinds. A v1 run with no finish time was cut off: it becomes 'interrupted'.
_V2 = """
CREATE TABLE schema_migrations (
    version     INTEGER PRIMARY KEY,
    description VARCHAR,
    applied_at  TIMESTAMPTZ DEFAULT current_timestamp
);
ALTER TABLE recordings ADD COLUMN failure_kind VARCHAR;   -- permanent | transient (NULL when not failed)
UPDATE recordings SET failure_kind = 'permanent' WHERE status IN ('failed', 'no_speech');
ALTER TABLE runs ADD COLUMN status VARCHAR;               -- running | finished | interrupted
ALTER TABLE runs ADD COLUMN host VARCHAR;
ALTER TABLE runs ADD COLUMN pid INTEGER;
ALTER TABLE runs ADD COLUMN workers INTEGER;
ALTER TABLE runs ADD COLUMN orchestrator VARCHAR;         -- none | prefect | prefect+dask
ALTER TABLE runs ADD COLUMN flow_run_id VARCHAR;
UPDATE runs SET status = CASE WHEN finished_at IS NULL THEN 'interrupted' ELSE 'finished' END;
CREATE TABLE run_failures (                               -- every failure of every run, for audits
    run_id       VARCHAR NOT NULL,
    recording_id VARCHAR,                                 -- NULL when the file could not be read at all
    file         VARCHAR NOT NULL,
    status       VARCHAR NOT NULL,                        -- failed | no_speech
    reason       VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,                        -- permanent | transient
    message      VARCHAR,
    failed_at    TIMESTAMPTZ DEFAULT current_timestamp
);
"""

# Transcripts made by scale-out workers arrive as Parquet partitions; the loader records each one it merged.
_V3 = """
CREATE TABLE loaded_partitions (
    partition    VARCHAR PRIMARY KEY,                     -- file name under the stage folder
    recording_id VARCHAR NOT NULL,
    outcome      VARCHAR NOT NULL,                        -- loaded | already_stored
    loaded_at    TIMESTAMPTZ DEFAULT current_timestamp
);
"""

# Human review overrides (created on demand by `callqa review` before this migration existed, hence
# IF NOT EXISTS) and the customer need tags found per call.
_V4 = """
CREATE TABLE IF NOT EXISTS verdict_reviews (
    review_id         BIGINT PRIMARY KEY,
    recording_id      VARCHAR NOT NULL,
    checklist_id      VARCHAR NOT NULL,
    checklist_version INTEGER NOT NULL,
    item_id           VARCHAR NOT NULL,
    verdict           VARCHAR NOT NULL,
    auto_verdict      VARCHAR,
    reviewer          VARCHAR NOT NULL,
    comment           VARCHAR,
    created_at        TIMESTAMPTZ DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS call_tags (
    recording_id VARCHAR NOT NULL,
    tag_id       VARCHAR NOT NULL,                         -- from qa_rules/tags/*.yaml
    title        JSON,
    confidence   DOUBLE,
    evidence     JSON,                                    -- [{segment, speaker, quote, start, end, score}]
    tagged_at    TIMESTAMPTZ DEFAULT current_timestamp,
    PRIMARY KEY (recording_id, tag_id)
);
"""

# The model manifest of every stored score: which ASR weights, sentence encoder, trained heads and checklist
# text produced it (one row per distinct manifest, referenced by its SHA-256).
_V5 = """
CREATE TABLE model_manifests (
    manifest_sha VARCHAR PRIMARY KEY,                     -- sha256 of the manifest JSON (sorted keys)
    manifest     JSON NOT NULL,                           -- {asr, encoder, heads, checklist}
    first_used   TIMESTAMPTZ DEFAULT current_timestamp
);
ALTER TABLE call_scores ADD COLUMN manifest_sha VARCHAR;  -- NULL for scores stored before v5
"""

# Appeals: an agent disputes one verdict with a reason; a reviewer closes it as upheld or overturned (an
# overturned appeal also writes a verdict_reviews row, referenced by review_id). Rows are closed, never deleted.
_V6 = """
CREATE TABLE verdict_appeals (
    appeal_id         BIGINT PRIMARY KEY,
    recording_id      VARCHAR NOT NULL,
    checklist_id      VARCHAR NOT NULL,
    checklist_version INTEGER NOT NULL,
    item_id           VARCHAR NOT NULL,
    disputed_verdict  VARCHAR NOT NULL,                   -- the effective verdict when the appeal was opened
    appellant         VARCHAR NOT NULL,                   -- who disputes it (usually the agent)
    reason            VARCHAR NOT NULL,
    created_at        TIMESTAMPTZ DEFAULT current_timestamp,
    status            VARCHAR NOT NULL DEFAULT 'open',    -- open | upheld | overturned
    resolver          VARCHAR,                            -- the reviewer who closed it
    resolution        VARCHAR,                            -- their reasoning
    final_verdict     VARCHAR,                            -- pass | fail | na after the judgment
    review_id         BIGINT,                             -- the verdict_reviews row an overturn wrote
    resolved_at       TIMESTAMPTZ
);
"""

# Routing (qa_rules/routing.py): per recording and routing file version, the checklist it went to or why it was
# set aside (voicemail, short_call) and not scored. The scorecard counts routed and skipped calls per agent.
_V7 = """
CREATE TABLE call_routes (
    recording_id      VARCHAR NOT NULL,
    routing_id        VARCHAR NOT NULL,
    routing_version   INTEGER NOT NULL,
    checklist_id      VARCHAR,                            -- NULL when skipped
    checklist_version INTEGER,
    skip_reason       VARCHAR,                            -- voicemail | short_call; NULL when routed
    message           VARCHAR,
    route_rule        INTEGER,                            -- index of the matching route; NULL: default or skipped
    decided_at        TIMESTAMPTZ DEFAULT current_timestamp,
    PRIMARY KEY (recording_id, routing_id, routing_version)
);
"""

# Whisper's confidence per segment (NULL for text that never was audio, and for segments stored before v8), and
# the low-confidence-audio flag per verdict (callqa.models.confidence): NULL for verdicts stored before v8, which
# were never assessed; their segments carry no Whisper numbers, so re-scoring them cannot flag either. IF NOT EXISTS:
# a database rolled back to an older version by hand (tests/test_app.py makes a "v5" one that way) keeps the columns.
_V8 = """
ALTER TABLE segments ADD COLUMN IF NOT EXISTS avg_logprob DOUBLE;        -- decoding window's mean token log-prob
ALTER TABLE segments ADD COLUMN IF NOT EXISTS no_speech_prob DOUBLE;     -- its no-speech probability
ALTER TABLE segments ADD COLUMN IF NOT EXISTS compression_ratio DOUBLE;  -- gzip compression ratio of its text
ALTER TABLE item_verdicts ADD COLUMN IF NOT EXISTS low_confidence_audio BOOLEAN;  -- evidence on doubtful audio
ALTER TABLE item_verdicts ADD COLUMN IF NOT EXISTS audio_flag VARCHAR;   -- why (segments, lines); NULL if not
"""

# One ordered list. Append only (see the module docstring).
MIGRATIONS: list[Migration] = [
    Migration(1, "initial schema: recordings, segments, checklists, item_verdicts, call_scores, runs", _V1),
    Migration(2, "run audit trail (runs.status/host/pid/workers, run_failures), recordings.failure_kind", _V2),
    Migration(3, "loaded_partitions: Parquet partitions merged from scale-out workers", _V3),
    Migration(4, "verdict_reviews (human overrides) and call_tags (customer need tags)", _V4),
    Migration(5, "model_manifests: ASR weights, encoder, heads and checklist behind every stored score", _V5),
    Migration(6, "verdict_appeals: agents dispute verdicts, reviewers uphold or overturn them", _V6),
    Migration(7, "call_routes: the checklist each call was routed to, or why routing skipped it", _V7),
    Migration(8, "Whisper confidence per segment, low-confidence-audio flag per verdict", _V8),
]

LATEST = MIGRATIONS[-1].version


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version of an open database (0 for an empty one)."""
    has_info = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_info'"
    ).fetchone()[0]
    if not has_info:
        return 0
    row = con.execute("SELECT value FROM schema_info WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(con: duckdb.DuckDBPyConnection, target: int | None = None) -> list[int]:
    """Apply the missing migrations in order; returns the versions applied (empty when up to date)."""
    _check_list()
    target = LATEST if target is None else target
    have = current_version(con)
    if have > LATEST:
        raise RuntimeError(f"database schema v{have} is newer than this callqa (v{LATEST}): upgrade callqa")
    applied = []
    for m in MIGRATIONS:
        if m.version <= have or m.version > target:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(m.sql)
            con.execute("INSERT OR REPLACE INTO schema_info VALUES ('schema_version', ?)", [str(m.version)])
            if m.version >= 2:  # schema_migrations itself arrives with v2
                con.execute("INSERT OR REPLACE INTO schema_migrations (version, description) VALUES (?, ?)",
                            [m.version, m.description])
                if m.version == 2:
                    con.execute("INSERT INTO schema_migrations (version, description) VALUES (1, ?)",
                                [MIGRATIONS[0].description])
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        applied.append(m.version)
    if applied and have:
        log.info("database schema upgraded from v%d to v%d", have, applied[-1])
    return applied


def _check_list() -> None:
    versions = [m.version for m in MIGRATIONS]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"MIGRATIONS must be numbered 1..n without gaps or duplicates, got {versions}")
