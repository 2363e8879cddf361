"""PII never stored unmasked: plant a phone, a national ID and a bank card in a call, run it through the
pipeline the way a scale-out worker hands it over (a Parquet partition on the stage folder), score it, write the
weekly report (HTML, CSV, Parquet, clips) and the scheduled artifacts' markdown, then search every file written,
inside DuckDB and Parquet files too, for the numbers in any spelling."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
from callqa.pipelines.reports.report import build_week_report, make_report, markdown_summary
from callqa.pipelines.run.batch import file_sha256
from callqa.pipelines.run.deploy import weekly_report_markdown
from callqa.pipelines.run.flows import _mask_pii, process_batch
from callqa.pipelines.run.scale import write_partition

from callqa.records import Segment, Transcript
from tests.conftest import SAMPLES

PHONE, CN_ID, CARD = "13812345678", "11010519491231002X", "4111 1111 1111 1111"
# what must not appear anywhere: the digits of each, however they are spaced or dashed
DIGITS = [re.sub(r"\D", "", PHONE), "11010519491231002", re.sub(r"\D", "", CARD)]


def _digits_in(text: str) -> list[str]:
    flat = re.sub(r"[\s\-.]", "", text)
    return [d for d in DIGITS if d in flat]


def _strings_of(path: Path) -> str:
    """All text a file holds: every cell of every table for DuckDB and Parquet files, else its bytes."""
    if path.suffix == ".duckdb":
        con = duckdb.connect(str(path), read_only=True)
        try:
            out = []
            for (table,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
                for row in con.execute(f'SELECT * FROM "{table}"').fetchall():
                    out.append(" ".join(str(c) for c in row))
            return "\n".join(out)
        finally:
            con.close()
    if path.suffix == ".parquet":
        with duckdb.connect() as con:
            return "\n".join(" ".join(str(c) for c in row)
                             for row in con.execute(f"SELECT * FROM read_parquet('{path}')").fetchall())
    return path.read_bytes().decode("utf-8", errors="ignore")


def test_planted_pii_is_in_no_file_the_pipeline_writes(tmp_path):
    batch, stage, out = tmp_path / "batch", tmp_path / "stage", tmp_path / "report"
    batch.mkdir()
    audio = batch / "S02_20261117T0940_demo.opus"
    shutil.copy(SAMPLES / "calls" / "S-004.opus", audio)
    rid = file_sha256(audio)
    transcript = Transcript((
        Segment("agent", 0.0, 4.0, "您好，我是小李，这里是家电旗舰店。"),
        Segment("customer", 4.5, 8.0, f"我的手机号是{PHONE}，身份证号{CN_ID}。"),
        Segment("agent", 8.5, 12.0, "好的，请问平时主要是谁在用？这款一分钟就能加热好。"),
        Segment("customer", 12.5, 16.0, f"卡号是{CARD}，太贵了。"),
        Segment("agent", 16.5, 20.0, f"明白，我明天上午十点打{PHONE}给您，再给您申请优惠。"),
    ), "zh", 20.0, "faster-whisper", "base")
    # what transcribe_job leaves on the stage folder for this call (the worker masks before writing)
    write_partition(stage, rid, audio, transcript, {"duration_s": 20.0, "channels": 1}, mask=_mask_pii)
    db = tmp_path / "calls.duckdb"
    summary = process_batch(batch, db=db, stage_dir=stage, progress=False)
    assert summary.counts["scored"] == 1, summary.counts
    _, files = make_report(db, None, out, clips=True, semantic=False)
    with duckdb.connect(str(db), read_only=True) as con:
        report = build_week_report(con, None)
    (tmp_path / "artifact_report.md").write_text(markdown_summary(report), encoding="utf-8")
    (tmp_path / "artifact_scorecard.md").write_text(weekly_report_markdown(db), encoding="utf-8")

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.suffix for p in written} >= {".duckdb", ".parquet", ".csv", ".html", ".md"}
    with duckdb.connect(str(db), read_only=True) as con:
        stored = " ".join(r[0] for r in con.execute("SELECT text FROM segments").fetchall())
    assert "[PHONE]" in stored and "[ID]" in stored and "[CARD]" in stored  # masked, not dropped
    leaks = {str(p.relative_to(tmp_path)): found for p in written
             if (found := _digits_in(_strings_of(p)) + _digits_in(p.name))}
    assert leaks == {}
