"""The `callqa` command line: run batches, print scorecards, evaluate against labels."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from callqa.pipelines.store.database import DEFAULT_DB, DatabaseBusy
from callqa.qa_rules.checklist import DEFAULT_CHECKLIST

log = logging.getLogger("callqa")

EPILOG = """examples:
  callqa run samples --manifest samples/manifest.jsonl         score the bundled sample calls
  callqa run /data/inbox --db /data/callqa.duckdb              score every new file in a folder
  callqa scorecard --week 2026-W46                             one ISO week, per agent
  callqa eval --manifest ../shared/data/dev/calls.jsonl --text compare verdicts with labels
  callqa status --db /data/callqa.duckdb                       recent runs, failures and reasons
  callqa serve /data/inbox --db /data/callqa.duckdb            nightly scoring + weekly scorecard (Prefect)
"""


def _asr_options(args: argparse.Namespace):
    from callqa.models.asr import AsrOptions

    return AsrOptions(
        runtime=args.runtime, model=args.model, compute_type=args.compute_type, device=args.device,
        cpu_threads=args.threads, beam_size=args.beam_size, language=args.language,
        vocabulary=tuple(v.strip() for v in (args.vocabulary or "").split(",") if v.strip()),
    )


def _add_asr_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speech recognition")
    g.add_argument("--runtime", default="faster-whisper", choices=["faster-whisper", "openai-whisper"],
                   help="Whisper runtime (default: faster-whisper, CTranslate2 int8)")
    g.add_argument("--model", default=None,
                   help="Whisper model: 'base' (bundled, default), another Whisper name, or a local folder/file")
    g.add_argument("--compute-type", default="int8", help="faster-whisper compute type (int8, float16, float32)")
    g.add_argument("--device", default="cpu", help="cpu or cuda")
    g.add_argument("--threads", type=int, default=0, help="CPU threads for the model (0: all cores)")
    g.add_argument("--beam-size", type=int, default=5, help="beam search width (default 5)")
    g.add_argument("--language", default=None, help="force a language (zh, en); default: detect per call")
    g.add_argument("--vocabulary", default=None, help="comma-separated product/store names to prime the decoder")


def cmd_run(args: argparse.Namespace) -> int:
    from callqa.pipelines.run.flows import RunConfig

    config = RunConfig(db=str(args.db), checklist=args.checklist, asr=_asr_options(args),
                       max_attempts=args.max_attempts, progress=not args.quiet, workers=args.workers, wait=args.wait,
                       stage_dir=str(args.stage_dir) if args.stage_dir else None, mask_pii=not args.no_pii_mask,
                       routing=args.routing)
    manifest = str(args.manifest) if args.manifest else None
    if args.no_prefect:
        if args.dask or args.dask_address:
            print("callqa run: --dask needs Prefect (drop --no-prefect)", file=sys.stderr)
            return 2
        from callqa.pipelines.run.flows import process_batch

        summary = process_batch(str(args.dir), manifest, config)
    else:
        if not os.environ.get("PREFECT_API_URL"):
            log.info("no Prefect server configured (PREFECT_API_URL): starting a temporary one for this run "
                     "(about 20 s; use `prefect server start` for scheduled runs, or --no-prefect)")
        from callqa.pipelines.run.flows import run_scoring_flow

        summary = run_scoring_flow(str(args.dir), manifest=manifest, dask=args.dask, dask_address=args.dask_address,
                                   **config.flow_parameters())
    for line in summary.lines():
        print(line)
    from callqa.pipelines.reports.report_data import weekly_scorecard, weeks
    from callqa.pipelines.reports.scorecard import format_scorecard
    from callqa.pipelines.store.database import Store
    from callqa.qa_rules.checklist import load_checklist

    if args.routing:  # one scorecard per checklist the routing can pick
        from callqa.qa_rules.routing import load_routed_checklists, load_routing

        ids = [c.id for c in load_routed_checklists(load_routing(args.routing)).values()]
    else:
        ids = [load_checklist(args.checklist).id]
    with Store(args.db, read_only=True) as store:
        for cid in dict.fromkeys(ids):
            try:
                for wk in weeks(store.con, cid):
                    print()
                    print(format_scorecard(weekly_scorecard(store.con, wk, cid)))
            except LookupError as e:
                print(f"no scorecard: {e}")
    print(f"\ndatabase: {Path(args.db).resolve()}")
    return 0


def cmd_scorecard(args: argparse.Namespace) -> int:
    from callqa.pipelines.reports.report_data import weekly_scorecard
    from callqa.pipelines.reports.scorecard import format_scorecard
    from callqa.pipelines.store.database import Store

    with Store(args.db, read_only=True) as store:
        try:
            card = weekly_scorecard(store.con, args.week, args.checklist)
        except LookupError as e:
            print(f"callqa scorecard: {e}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(card.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_scorecard(card))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from callqa.pipelines.run.status import format_status, run_status

    st = run_status(args.db, args.limit)
    print(json.dumps(st, ensure_ascii=False, indent=2, default=str) if args.json else format_status(st))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from callqa.pipelines.run.deploy import serve

    serve(args.dir, db=args.db, cron=args.cron, report_cron=args.report_cron, manifest=args.manifest,
          checklist=args.checklist, max_attempts=args.max_attempts, workers=args.workers, timezone=args.timezone,
          every=args.every, routing=args.routing)
    return 0


def cmd_pipeline_bench(args: argparse.Namespace) -> int:
    from callqa.pipelines.bench.pipeline_bench import main_bench

    workers = tuple(int(w) for w in args.workers.split(",") if w.strip())
    print(main_bench(args.calls, workers, args.prefect, args.json, args.scorecard_rows, args.source))
    return 0


def cmd_asr_bench(args: argparse.Namespace) -> int:
    from callqa.models.asr import AsrOptions
    from callqa.pipelines.bench.asr_bench import WorkerDied, format_bench, run_bench

    opts = AsrOptions(cpu_threads=args.threads, beam_size=args.beam_size or AsrOptions().beam_size, model=args.model,
                      vocabulary=tuple(v.strip() for v in (args.vocabulary or "").split(",") if v.strip()))
    try:
        result = run_bench(args.manifest, args.runtime or ["faster-whisper"], args.limit, opts, args.verdicts,
                           progress=not args.quiet)
    except WorkerDied as e:
        print(f"callqa asr-bench: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else format_bench(result))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from callqa.pipelines.learn.evaluate import LABELS, attach_labels, classify_text, evaluate_calls, format_eval
    from callqa.pipelines.run.batch import read_manifest
    from callqa.pipelines.run.flows import make_engine
    from callqa.qa_rules.checklist import load_checklist

    checklist = load_checklist(args.checklist)
    rows = read_manifest(args.manifest, require_file=not args.text)
    if args.labels:
        try:
            rows = attach_labels(rows, read_manifest(args.labels, require_file=False))
        except ValueError as e:
            print(f"callqa eval: {args.labels}: {e}", file=sys.stderr)
            return 1
    rows = [r for r in rows if r.get("labels")]
    if not rows:
        print(f"callqa eval: {args.manifest} has no rows with 'labels'", file=sys.stderr)
        return 1
    engine = make_engine(checklist)
    results = []
    if args.text:
        results = classify_text(engine, rows)
    else:
        results = _eval_from_audio(args, checklist, rows)
    if args.items:
        labels = tuple(i.strip() for i in args.items.split(",") if i.strip())
    else:  # the product's six labels, plus any item of this checklist the manifest labels (a team's own)
        labels = LABELS + tuple(i for i in checklist.item_ids
                                if i not in LABELS and any(i in r["labels"] for r in rows))
    result = evaluate_calls(checklist, results, labels)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_eval(result))
    return 0


def _eval_from_audio(args: argparse.Namespace, checklist, rows: list[dict]) -> list:
    from callqa.pipelines.run.batch import file_sha256
    from callqa.pipelines.run.flows import RunConfig, process_batch
    from callqa.pipelines.store.database import Store

    from callqa.records import Evidence, ItemVerdict

    manifest = Path(args.manifest)
    summary = process_batch(manifest.parent, manifest, RunConfig(args.db, args.checklist, _asr_options(args),
                                                                  progress=not args.quiet))
    for line in summary.lines():
        print(line, file=sys.stderr)
    results = []
    with Store(args.db, read_only=True) as store:
        for r in rows:
            rid = file_sha256(manifest.parent / r["file"])
            got = store.con.execute(
                "SELECT item_id, verdict, confidence, evidence, reason FROM item_verdicts WHERE recording_id = ? "
                "AND checklist_id = ? AND checklist_version = ?", [rid, checklist.id, checklist.version],
            ).fetchall()
            verdicts = [ItemVerdict(i, v, c, tuple(Evidence(**e) for e in json.loads(ev or "[]")), reason or "")
                        for i, v, c, ev, reason in got]
            if not verdicts:  # not scored (failed or no speech): every item counts as not detected
                verdicts = [ItemVerdict(i, "fail", 0.0, (), "call not scored") for i in checklist.item_ids]
            results.append((str(r.get("call_id") or r["file"]), r["labels"], verdicts))
    return results


def cmd_calibrate(args: argparse.Namespace) -> int:
    from callqa.pipelines.learn.calibrate import format_calibration, result_dict, run_calibration
    from callqa.pipelines.run.flows import make_engine
    from callqa.qa_rules.checklist import load_checklist

    checklist = load_checklist(args.checklist)
    result, out, _ = run_calibration(checklist, args.manifest, make_engine(checklist).embedder, args.out, args.folds,
                                     labels=args.labels)
    print(json.dumps(result_dict(result, out), indent=2) if args.json else f"{format_calibration(result)}\nwrote {out}")
    return 0


TRAIN_EPOCHS = 60


def cmd_train(args: argparse.Namespace) -> int:
    from callqa.pipelines.learn.train import TrainConfig, run_training

    if not args.manifest and not args.checklist:
        print("callqa train: give --manifest (labelled calls) and/or --checklist (items with examples)",
              file=sys.stderr)
        return 2
    heads = None
    if args.manifest:
        path, heads = run_training(args.manifest, args.out, TrainConfig(seed=args.seed, epochs=args.epochs),
                                   exclude_writers=tuple(args.exclude_writer or ()))
        print(f"wrote {path}\nsha256: {heads.sha256}\ncalls: {heads.meta['calls']} from "
              f"{len(heads.meta['writers'])} writers\nreference it from a checklist: "
              f"model: {{heads: {path.name}, sha256: {heads.sha256}}}")
    if args.checklist:
        from callqa.pipelines.learn.train_items import run_item_training

        try:
            yaml_path, heads_path, fitted = run_item_training(args.checklist, args.out, base=heads)
        except (ValueError, FileNotFoundError) as e:
            print(f"callqa train: {args.checklist}: {e}", file=sys.stderr)
            return 1
        for name, rep in fitted.meta["example_heads"]["heads"].items():
            print(f"fitted {name} from {rep['pass']} pass / {rep['fail']} fail examples + {rep['bank']} background "
                  f"sentences: held-out pass examples found {rep['loo_pass_recall']:.0%}, held-out fail examples "
                  f"rejected {rep['loo_fail_rejected']:.0%}, background flagged {rep['bank_flagged']:.1%}")
        print(f"wrote {heads_path} (sha256 {fitted.sha256})\nwrote {yaml_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="callqa", description="Offline quality analysis of recorded sales calls (Mandarin and English).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="transcribe, classify and store every new recording of a folder",
                       description="Score a batch: discover recordings (manifest or folder scan), transcribe "
                       "new ones, apply the checklist, store everything in DuckDB, then print the scorecards. "
                       "Re-running skips calls already scored under the same checklist version.")
    r.add_argument("dir", type=Path, help="batch folder holding the recordings")
    r.add_argument("--manifest", type=Path, help="CSV or JSONL with file, agent_id, started_at (+ optional fields)")
    r.add_argument("--db", type=Path, default=Path(DEFAULT_DB), help=f"DuckDB file (default: ./{DEFAULT_DB})")
    r.add_argument("--checklist", default=DEFAULT_CHECKLIST, help="bundled checklist name or YAML path")
    r.add_argument("--routing", metavar="FILE|default",
                   help="pick each call's checklist by its attributes (direction, language, duration, manifest "
                   "columns) from a routing file ('default': qa_rules/routing.yaml); voicemails and calls with too "
                   "little speech are stored as skipped, not scored")
    r.add_argument("--max-attempts", type=int, default=3, help="give up on a failing file after this many runs")
    r.add_argument("--no-prefect", action="store_true",
                   help="run the same steps without Prefect (no server start; no run history in the UI)")
    r.add_argument("--no-pii-mask", action="store_true",
                   help="store transcripts and evidence as heard; by default phone, ID and bank card numbers "
                   "are masked before anything is written (scoring always sees the raw text)")
    r.add_argument("--workers", type=int, default=1,
                   help="transcription worker processes (default 1; the cores are split between them)")
    r.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="if another run is writing the database, wait up to this long instead of exiting")
    r.add_argument("--dask", action="store_true", help="transcribe on a local Dask cluster of --workers processes "
                   "(prefect-dask)")
    r.add_argument("--dask-address", metavar="tcp://HOST:8786", help="transcribe on an existing Dask scheduler")
    r.add_argument("--stage-dir", type=Path, help="shared folder where workers leave transcripts as Parquet "
                   "partitions, merged by this run (and by the next one after a crash)")
    _add_asr_args(r)
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("scorecard", help="weekly per-agent scorecard",
                       description="Per agent for one ISO week: calls, mean score, critical fails and the pass "
                       "rate of every checklist item (share of calls where the item applied and passed).")
    s.add_argument("--week", help="ISO week YYYY-Www (default: the latest week with calls)")
    s.add_argument("--db", type=Path, default=Path(DEFAULT_DB), help=f"DuckDB file (default: ./{DEFAULT_DB})")
    s.add_argument("--checklist", default=DEFAULT_CHECKLIST, help=f"checklist id (default: {DEFAULT_CHECKLIST})")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=cmd_scorecard)

    e = sub.add_parser("eval", help="compare verdicts with the labels of a manifest",
                       description="Per-item precision, recall, F1 and macro-F1 against the manifest's `labels`; "
                       "--text classifies the reference `turns`, otherwise the audio is transcribed first.")
    e.add_argument("--manifest", type=Path, required=True, help="JSONL/CSV manifest with labels (and turns)")
    e.add_argument("--text", action="store_true", help="classify the reference transcripts instead of audio")
    e.add_argument("--labels", type=Path, default=None,
                   help="JSONL of {call_id or source_id, labels} joined onto the manifest's rows: labels kept "
                   "apart from a corpus whose text may not be copied (tests/data/heldout/real_labels.jsonl)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--db", type=Path, default=Path("callqa-eval.duckdb"),
                   help="DuckDB file for the audio run (default: ./callqa-eval.duckdb)")
    e.add_argument("--checklist", default=DEFAULT_CHECKLIST, help="bundled checklist name or YAML path")
    e.add_argument("--items", help="comma-separated item ids to score (default: the six product labels plus any "
                   "other item of the checklist that the manifest labels)")
    _add_asr_args(e)
    e.set_defaults(func=cmd_eval)

    c = sub.add_parser("calibrate", help="fit checklist thresholds and confidences on labelled calls",
                       description="Fit each item's semantic threshold shift (best F1, ties to no change) and a "
                       "logistic confidence curve on the manifest's labelled reference transcripts, report "
                       "train and K-fold cross-validated F1, and write the checklist as version N+1 with a "
                       "`calibration:` section.")
    c.add_argument("--manifest", type=Path, required=True, action="append",
                   help="JSONL/CSV manifest with labels and turns; repeat to fit on several sets together")
    c.add_argument("--labels", type=Path, default=None,
                   help="JSONL of {call_id or source_id, labels} joined onto the manifests' rows (as in eval)")
    c.add_argument("--out", type=Path, default=None, help="new version file (default: ./<id>.v<N+1>.yaml)")
    c.add_argument("--checklist", default=DEFAULT_CHECKLIST, help="bundled checklist name or YAML path to start from")
    c.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=cmd_calibrate)

    st = sub.add_parser("status", help="recent runs, failures and their reasons",
                        description="Recent runs (counts; 'interrupted' when cut off), every recording that "
                        "failed with its reason and whether it will be retried, and the run writing now, if any.")
    st.add_argument("--db", type=Path, default=Path(DEFAULT_DB), help=f"DuckDB file (default: ./{DEFAULT_DB})")
    st.add_argument("--limit", type=int, default=10, help="how many recent runs (default 10)")
    st.add_argument("--json", action="store_true", help="print one JSON object")
    st.set_defaults(func=cmd_status)

    sv = sub.add_parser("serve", help="score an inbox folder on a schedule, publish the weekly scorecard",
                        description="Register two Prefect deployments and run them on schedule until Ctrl-C: "
                        "'score-recordings/inbox-nightly' scores new files of DIR (cron --cron), "
                        "'weekly-scorecard/scorecard-weekly' publishes the scorecard (cron --report-cron). "
                        "Start a Prefect server first (prefect server start) and set PREFECT_API_URL.")
    sv.add_argument("dir", type=Path, help="inbox folder where new recordings arrive")
    sv.add_argument("--db", type=Path, default=Path(DEFAULT_DB), help=f"DuckDB file (default: ./{DEFAULT_DB})")
    sv.add_argument("--manifest", help="manifest to use on every run (default: folder scan)")
    sv.add_argument("--cron", default="0 2 * * *", help="scoring schedule (default: '0 2 * * *', 02:00 daily)")
    sv.add_argument("--every", type=float, metavar="SECONDS",
                    help="score every SECONDS instead of on --cron (an interval schedule; e.g. 30 for a live inbox)")
    sv.add_argument("--report-cron", default="0 7 * * 1", help="scorecard schedule (default: Mondays 07:00)")
    sv.add_argument("--timezone", help="time zone of the schedules (default: $TZ or UTC)")
    sv.add_argument("--checklist", default=DEFAULT_CHECKLIST, help="bundled checklist name or YAML path")
    sv.add_argument("--routing", metavar="FILE|default", help="route each call to a checklist (see callqa run)")
    sv.add_argument("--max-attempts", type=int, default=3, help="give up on a transient failure after this many runs")
    sv.add_argument("--workers", type=int, default=1, help="transcription worker processes per run")
    sv.set_defaults(func=cmd_serve)

    pb = sub.add_parser("pipeline-bench", help="time N calls through the pipeline with 1 and 2 workers",
                        description="Scores the same N recordings into fresh databases once per worker count and "
                        "prints the time per call by stage (decode, ASR, checklist, storage, orchestration) and the "
                        "throughput, side by side. --scorecard-rows also times the weekly scorecard query on a "
                        "generated database of that many verdict rows.")
    pb.add_argument("--calls", type=int, default=8, help="how many calls (default 8; 0: skip the pipeline part)")
    pb.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    pb.add_argument("--source", type=Path, action="append",
                    help="folder(s) of recordings to draw from (default: the bundled samples)")
    pb.add_argument("--prefect", action="store_true", help="run through the Prefect flow (task runs) instead of "
                    "plain functions")
    pb.add_argument("--scorecard-rows", type=int, default=0, help="also time the scorecard query on this many "
                    "generated verdict rows (e.g. 1000000)")
    pb.add_argument("--json", action="store_true", help="print one JSON object")
    pb.set_defaults(func=cmd_pipeline_bench)
    ab = sub.add_parser("asr-bench", help="speed, CER/WER and speaker attribution of the Whisper runtimes",
                        description="For each runtime on the manifest's calls: whole-call real-time factor (both "
                        "channels), CER (zh) and WER (en) against the reference turns, speaker attribution on the "
                        "stereo files and on the mono copies (audio.mono_8k_telephone), peak RSS. Runtimes take "
                        "turns call by call in their own processes, so the ratios between them are fair.")
    ab.add_argument("--manifest", type=Path, required=True, help="JSONL manifest with reference `turns`")
    ab.add_argument("--runtime", action="append", metavar="R",
                    help="runtime to measure, repeatable; options after a colon compare settings in one run, e.g. "
                    "faster-whisper:beam_size=1 (default: faster-whisper)")
    ab.add_argument("--limit", type=int, default=None, help="only the first N calls, languages in turn")
    ab.add_argument("--json", action="store_true", help="print one JSON object {runtime: {metric: value}}")
    ab.add_argument("--verdicts", action="store_true",
                    help="also compare the checklist verdicts of the runtimes (with each other and the labels)")
    ab.add_argument("--threads", type=int, default=0, help="CPU threads per model (0: all cores)")
    ab.add_argument("--beam-size", type=int, default=None, help="beam search width (default: AsrOptions's)")
    ab.add_argument("--model", default=None, help="Whisper model: 'base' (bundled), a Whisper name or a local path")
    ab.add_argument("--vocabulary", default=None, help="comma-separated product/store names to prime the decoder")
    ab.set_defaults(func=cmd_asr_bench)
    tr = sub.add_parser("train", help="train the checklist's judgement heads on labelled calls",
                        description="Embed every labelled call's sentences and turns with the bundled e5 encoder, "
                        "train the heads that the checklist's `model`/`model_answer` items read (usage scenario, "
                        "selling point, objection, greeting, forbidden phrase, and the concern/reply pair head), "
                        "calibrate each on out-of-fold predictions (folds by writer), and write a heads file plus a "
                        "JSON report. Seeded: the same corpus and seed give the same file. About 10-15 minutes for "
                        "1,500 calls on 2 cores. Example: callqa train --manifest corpus/ --out qa_rules/checklists/. "
                        "With --checklist, a team's own items are fitted from the pass/fail examples written in the "
                        "checklist (seconds): callqa train --checklist my_team.yaml --out my_team/")
    tr.add_argument("--manifest", type=Path, action="append",
                    help="labelled JSONL manifest, or a folder of them (each file or folder one writer); repeatable")
    tr.add_argument("--checklist", help="a checklist whose items carry `examples` (pass/fail snippets) and a "
                    "`model` head: fit those heads from the examples (seconds), keep the checklist's other heads, "
                    "write <id>.heads.npz and the checklist pointing at it into --out")
    tr.add_argument("--out", type=Path, required=True,
                    help="folder for the heads file (sales_core.heads.npz; <id>.heads.npz with --checklist)")
    tr.add_argument("--seed", type=int, default=13, help="random seed (default 13)")
    tr.add_argument("--epochs", type=int, default=TRAIN_EPOCHS,
                    help=f"full-batch passes per head (default {TRAIN_EPOCHS}; fewer for a quick trial)")
    tr.add_argument("--exclude-writer", action="append", help="leave this writer's calls out (repeatable)")
    tr.set_defaults(func=cmd_train)

    from callqa.pipelines.cli.report import add_report_commands

    add_report_commands(sub)
    from callqa.pipelines.app import add_app_command

    add_app_command(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("faster_whisper", "httpx", "numba", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"callqa {args.command}: {e}", file=sys.stderr)
        return 2
    except DatabaseBusy as e:
        print(f"callqa {args.command}: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
