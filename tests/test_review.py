"""Human review: overrides kept as history, used by reports, agreement statistics (real DuckDB)."""

from __future__ import annotations

import duckdb
import pytest

from tests.reportdb import dev_db_copy


@pytest.fixture()
def db(tmp_path_factory, shared_data):
    return dev_db_copy(tmp_path_factory, "review")


def test_cohen_kappa_known_values():
    from callqa.pipelines.store.review import cohen_kappa

    # 20 pairs: 9 pass/pass, 6 fail/fail, 3 pass/fail, 2 fail/pass → po 0.75, pe 0.6*0.55+0.4*0.45 = 0.51
    pairs = [("pass", "pass")] * 9 + [("fail", "fail")] * 6 + [("pass", "fail")] * 3 + [("fail", "pass")] * 2
    assert cohen_kappa(pairs) == pytest.approx((0.75 - 0.51) / (1 - 0.51))
    assert cohen_kappa([("pass", "pass")] * 5) == 1.0
    assert cohen_kappa([("pass", "fail"), ("fail", "pass")]) == pytest.approx(-1.0)
    assert cohen_kappa([]) is None


def test_override_changes_the_report_and_keeps_history(db):
    from callqa.pipelines.reports.report_data import load_dataset, week_summary
    from callqa.pipelines.store.review import add_review, list_reviews

    with duckdb.connect(str(db)) as con:
        before = load_dataset(con)
        d021 = next(c for c in before.calls if c.call_id == "D021")
        machine = d021.verdicts["greeting"].verdict  # whatever the checklist decided; the reviewers say otherwise
        human = "fail" if machine == "pass" else "pass"
        a03 = next(a for a in week_summary(before, d021.week).agents if a.agent_id == "A03")
        add_review(con, "D021", "greeting", human, "lee", "listened to the opening")
        add_review(con, "D021", "greeting", human, "kim", "confirmed")
        after = load_dataset(con)
        v = next(c for c in after.calls if c.call_id == "D021").verdicts["greeting"]
        assert (v.verdict, v.auto_verdict, v.human_verdict, v.reviewer) == (human, machine, human, "kim")
        a03_after = next(a for a in week_summary(after, d021.week).agents if a.agent_id == "A03")
        step = 1 if human == "pass" else -1
        assert a03_after.passed["greeting"] == a03.passed["greeting"] + step
        assert (a03_after.score - a03.score) * step > 0
        history = list_reviews(con, "D021")
        assert [(r.reviewer, r.comment) for r in history] == [("kim", "confirmed"), ("lee", "listened to the opening")]
        assert len(list_reviews(con, "D021", current_only=True)) == 1
        # a later review back to the machine's verdict restores it
        add_review(con, "D021", "greeting", machine, "lee", "listened again")
        assert next(c for c in load_dataset(con).calls if c.call_id == "D021").verdicts["greeting"].verdict == machine


def test_bad_reviews_are_refused(db):
    from callqa.pipelines.store.review import add_review

    with duckdb.connect(str(db)) as con:
        with pytest.raises(ValueError, match="no call or recording"):
            add_review(con, "D999", "greeting", "pass", "lee")
        with pytest.raises(ValueError, match="no verdict for item"):
            add_review(con, "D001", "greting", "pass", "lee")
        with pytest.raises(ValueError, match="verdict must be"):
            add_review(con, "D001", "greeting", "ok", "lee")
        with pytest.raises(ValueError, match="reviewer"):
            add_review(con, "D001", "greeting", "pass", " ")


def test_agreement_against_the_labels_matches_eval(db, shared_data, checklist):
    """Labels imported as reviews: raw agreement per item equals what `callqa eval` counts."""
    from callqa.pipelines.learn.evaluate import predicted_label
    from callqa.pipelines.run.batch import read_manifest
    from callqa.pipelines.store.review import agreement, import_labels

    from tests.conftest import dev_calls

    with duckdb.connect(str(db)) as con:
        assert import_labels(con, read_manifest(shared_data / "dev" / "calls.jsonl")) == 180
        stats = {s.item_id: s for s in agreement(con)}
        from callqa.records import ItemVerdict

        rows = con.execute("SELECT r.call_id, v.item_id, v.verdict FROM item_verdicts v "
                           "JOIN recordings r USING (recording_id)").fetchall()
    auto = {(c, i): v for c, i, v in rows}
    for item in ("greeting", "usage_scenario", "forbidden_phrase", "objection_resolved"):
        agree = sum(predicted_label(checklist, ItemVerdict(item, auto[(r["call_id"], item)], 1.0))
                    == r["labels"][item] for r in dev_calls())
        assert stats[item].reviewed == 30 and stats[item].agreed == agree
        assert stats[item].kappa is not None and -1.0 <= stats[item].kappa <= 1.0
    assert stats["forbidden_phrase"].kappa == pytest.approx(1.0)


def test_cli_review_set_list_stats(db, capsys):
    from callqa.pipelines.cli.main import main

    assert main(["review", "set", "--db", str(db), "--call", "D030", "--item", "usage_scenario", "--verdict",
                 "pass", "--reviewer", "lee", "--comment", "asks who uses it"]) == 0
    assert "D030 usage_scenario" in capsys.readouterr().out
    assert main(["review", "list", "--db", str(db)]) == 0
    assert "lee: asks who uses it" in capsys.readouterr().out
    assert main(["review", "stats", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "usage_scenario" in out and "kappa" in out
    assert main(["review", "set", "--db", str(db), "--call", "D030"]) == 2


def test_every_view_of_a_week_agrees_once_reviews_exist(db, tmp_path, capsys):
    """One read model: with human overrides stored, `callqa scorecard` (JSON and table), the scheduled
    artifact's markdown, the report's HTML and its CSV and Parquet exports show the same calls, score,
    critical fails and pass rates per agent, and the overrides moved the numbers."""
    import json

    from callqa.pipelines.cli.main import main
    from callqa.pipelines.reports.report import make_report
    from callqa.pipelines.reports.report_data import load_dataset, weekly_scorecard
    from callqa.pipelines.run.deploy import weekly_report_markdown
    from callqa.pipelines.store.review import add_review

    with duckdb.connect(str(db)) as con:
        ds = load_dataset(con)
        week = max(ds.weeks, key=lambda w: len(ds.week_calls(w)))
        before = {a.agent_id: a.score for a in weekly_scorecard(con, week).agents}
        critical = next(it["id"] for it in ds.items if it.get("critical"))
        # the week's best call fails its critical item; every call's first passed item fails, every failed one passes
        best = max(ds.week_calls(week), key=lambda c: c.score)
        add_review(con, best.call_id, critical, "fail", "lee", "said it at 01:10")
        for c in ds.week_calls(week):
            flip = next((v for v in c.verdicts.values()
                         if v.verdict in ("pass", "fail") and v.item_id != critical), None)
            if flip is not None:
                add_review(con, c.call_id, flip.item_id, "fail" if flip.verdict == "pass" else "pass", "kim")
        machine = dict(con.execute(
            "SELECT r.agent_id, round(avg(s.score), 1) FROM call_scores s JOIN recordings r USING (recording_id) "
            "WHERE r.call_id IN (SELECT unnest(?)) GROUP BY 1", [[c.call_id for c in ds.week_calls(week)]]).fetchall())
    assert machine == before  # before any review, the read model is the machine's score

    assert main(["scorecard", "--db", str(db), "--week", week, "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    scored = [it["id"] for it in card["items"] if it["weight"] > 0]
    cli = {a["agent_id"]: (a["calls"], a["score"], a["critical_fails"], tuple(a["pass_rate"][i] for i in scored))
           for a in card["agents"]}
    assert {a: v[1] for a, v in cli.items()} != before
    assert cli[best.agent_id][2] >= 1

    def rate(text: str) -> float | None:
        return None if text == "-" else round(float(text.rstrip("%")) / 100, 2)

    def rounded(row: tuple) -> tuple:
        return row[:3] + (tuple(None if r is None else round(r, 2) for r in row[3]),)

    assert main(["scorecard", "--db", str(db), "--week", week]) == 0
    table = capsys.readouterr().out.splitlines()
    text = {cells[0]: (int(cells[1]), float(cells[2]), int(cells[3]), tuple(rate(x) for x in cells[4:]))
            for cells in (line.split() for line in table[3:-1])}
    assert text == {a: rounded(v) for a, v in cli.items()}

    md = weekly_report_markdown(db, week).splitlines()
    assert [line.split()[:3] for line in md if line.split()[:1] and line.split()[0] in cli] == \
        [[a, str(v[0]), f"{v[1]:.1f}"] for a, v in cli.items()]

    _, files = make_report(db, week, tmp_path / "report", clips=False, semantic=False)
    with duckdb.connect() as con:
        for ext in ("csv", "parquet"):
            path = next(p for p in files.exports if p.name == f"scorecard_{week}.{ext}")
            cols = ", ".join(f"pass_rate_{i}" for i in scored)
            rows = con.execute(f"SELECT agent_id, calls, score, critical_fails, {cols} FROM '{path}' ORDER BY rank")
            export = {r[0]: (r[1], r[2], r[3], tuple(r[4:])) for r in rows.fetchall()}
            assert export == cli, ext
            assert list(export) == list(cli)  # same ranking
    html = files.index.read_text(encoding="utf-8")
    for agent, (_, score, _, _) in cli.items():
        assert f"{score:.1f}" in html, agent


def test_a_review_set_during_a_batch_waits_for_the_writer_lock_and_is_stored(db, capsys):
    """`callqa review set` is a write like a batch's: it takes the writer lock, so while a run holds it the review
    waits (up to 30 s) instead of racing the batch, and is stored once the run lets go."""
    import threading
    import time

    from callqa.pipelines.cli.main import main
    from callqa.pipelines.store.database import WriterLock
    from callqa.pipelines.store.review import list_reviews

    lock = WriterLock(db, what="callqa run (test)").acquire()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(main(["review", "set", "--db", str(db), "--call", "D003",
                                                              "--item", "greeting", "--verdict", "na",
                                                              "--reviewer", "lee", "--comment", "during a run"])))
    t.start()
    time.sleep(1.5)
    assert t.is_alive() and not result  # waiting for the batch
    lock.release()
    t.join(timeout=60)
    assert result == [0]
    with duckdb.connect(str(db), read_only=True) as con:
        assert [(r.reviewer, r.comment) for r in list_reviews(con, "D003")] == [("lee", "during a run")]


def test_gwet_ac1_and_the_bootstrap_interval():
    """AC1 by hand: 20 pairs, 15 agree (po 0.75); pass share (12 + 11) / 40 = 0.575, so
    pe = 0.575 * 0.425 + 0.425 * 0.575 = 0.48875 over (q - 1) = 1 → AC1 = (0.75 - 0.48875) / 0.51125.
    A skewed table (almost all pass) keeps a high AC1 where kappa collapses; the interval is seeded and holds kappa."""
    from callqa.pipelines.store.review import bootstrap_interval, cohen_kappa, gwet_ac1

    pairs = [("pass", "pass")] * 9 + [("fail", "fail")] * 6 + [("pass", "fail")] * 3 + [("fail", "pass")] * 2
    assert gwet_ac1(pairs) == pytest.approx((0.75 - 0.48875) / 0.51125)
    skewed = [("pass", "pass")] * 18 + [("pass", "fail")] + [("fail", "pass")]
    assert cohen_kappa(skewed) < 0 and gwet_ac1(skewed) > 0.85
    lo, hi = bootstrap_interval(pairs)
    assert lo < cohen_kappa(pairs) < hi and bootstrap_interval(pairs) == (lo, hi)
    assert bootstrap_interval(pairs[:4]) is None and gwet_ac1([]) is None
