"""The `callqa` command line: run batches, print scorecards, evaluate against labels.

Built on click. The options several commands share, the help layout and the one error handler (exit codes) are
in `options.py`; `report`/`review` are in `report.py`, `app`/`rules` in `workstation.py`. A new command is a
function here (or in its own module, added with `cli.add_command`) decorated with `@cli.command(...)`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click
from callqa.pipelines.cli.options import (
    CONTEXT_SETTINGS,
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CallqaGroup,
    Failed,
    PathType,
    Settings,
    asr_options,
    checklist_id_option,
    checklist_option,
    db_option,
    json_option,
    labels_option,
    manifest_option,
    max_attempts_option,
    pass_settings,
    routing_option,
    split_list,
    vocab_file_option,
    vocabulary_option,
    week_option,
)

log = logging.getLogger("callqa")

EPILOG = f"""\b
examples:
  callqa run samples --manifest samples/manifest.jsonl         score the bundled sample calls
  callqa run /data/inbox --db /data/callqa.duckdb              score every new file in a folder
  callqa scorecard --week 2026-W46                             one ISO week, per agent
  callqa eval --manifest ../shared/data/dev/calls.jsonl --text compare verdicts with labels
  callqa status --db /data/callqa.duckdb                       recent runs, failures and reasons
  callqa serve /data/inbox --db /data/callqa.duckdb            nightly scoring + weekly scorecard (Prefect)

{EXIT_CODES_HELP}
"""


@click.group(cls=CallqaGroup, context_settings=CONTEXT_SETTINGS, epilog=EPILOG,
             help="Offline quality analysis of recorded sales calls (Mandarin and English).")
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
@click.option("-q", "--quiet", is_flag=True, help="no progress bars")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    ctx.obj = Settings(verbose=verbose, quiet=quiet)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("faster_whisper", "httpx", "numba", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# --- run -----------------------------------------------------------------------------------------------------


@cli.command("run", short_help="transcribe, classify and store every new recording of a folder",
             help="Score a batch: discover recordings (manifest or folder scan), transcribe new ones, apply the "
             "checklist, store everything in DuckDB, then print the scorecards. Re-running skips calls already "
             "scored under the same checklist version.")
@click.argument("dir", help="batch folder holding the recordings", type=PathType)
@manifest_option("CSV or JSONL with file, agent_id, started_at (+ optional fields)")
@db_option()
@checklist_option()
@routing_option("pick each call's checklist by its attributes (direction, language, duration, manifest columns) "
                "from a routing file ('default': qa_rules/routing.yaml); voicemails and calls with too little "
                "speech are stored as skipped, not scored")
@max_attempts_option("give up on a failing file after this many runs")
@click.option("--no-prefect", is_flag=True,
              help="run the same steps without Prefect (no server start; no run history in the UI)")
@click.option("--no-pii-mask", is_flag=True,
              help="store transcripts and evidence as heard; by default phone, ID and bank card numbers are masked "
              "before anything is written (scoring always sees the raw text)")
@click.option("--workers", type=int, default=1, metavar="N",
              help="transcription worker processes (default 1; the cores are split between them)")
@click.option("--wait", type=float, default=0, metavar="SECONDS",
              help="if another run is writing the database, wait up to this long instead of exiting (exit 3)")
@click.option("--dask", is_flag=True, help="transcribe on a local Dask cluster of --workers processes (prefect-dask)")
@click.option("--dask-address", metavar="tcp://HOST:8786", help="transcribe on an existing Dask scheduler")
@click.option("--stage-dir", type=PathType, metavar="DIR",
              help="shared folder where workers leave transcripts as Parquet partitions, merged by this run (and by "
              "the next one after a crash)")
@asr_options
@pass_settings
def cmd_run(settings: Settings, dir: Path, manifest: Path | None, db: Path, checklist: str, routing: str | None,  # noqa: A002
            max_attempts: int, no_prefect: bool, no_pii_mask: bool, workers: int, wait: float, dask: bool,
            dask_address: str | None, stage_dir: Path | None, asr) -> int:
    from callqa.pipelines.run.flows import RunConfig

    config = RunConfig(db=str(db), checklist=checklist, asr=asr, max_attempts=max_attempts,
                       progress=not settings.quiet, workers=workers, wait=wait,
                       stage_dir=str(stage_dir) if stage_dir else None, mask_pii=not no_pii_mask, routing=routing)
    manifest_path = str(manifest) if manifest else None
    if no_prefect:
        if dask or dask_address:
            raise click.UsageError("--dask needs Prefect (drop --no-prefect)")
        from callqa.pipelines.run.flows import process_batch

        summary = process_batch(str(dir), manifest_path, config)
    else:
        if not os.environ.get("PREFECT_API_URL"):
            log.info("no Prefect server configured (PREFECT_API_URL): starting a temporary one for this run "
                     "(about 20 s; use `prefect server start` for scheduled runs, or --no-prefect)")
        from callqa.pipelines.run.flows import run_scoring_flow

        summary = run_scoring_flow(str(dir), manifest=manifest_path, dask=dask, dask_address=dask_address,
                                   **config.flow_parameters())
    for line in summary.lines():
        print(line)
    from callqa.pipelines.reports.report_data import weekly_scorecard, weeks
    from callqa.pipelines.reports.scorecard import format_scorecard
    from callqa.pipelines.store.database import Store
    from callqa.qa_rules.checklist import load_checklist

    if routing:  # one scorecard per checklist the routing can pick
        from callqa.qa_rules.routing import load_routed_checklists, load_routing

        ids = [c.id for c in load_routed_checklists(load_routing(routing)).values()]
    else:
        ids = [load_checklist(checklist).id]
    with Store.open_readonly(db) as store:
        for cid in dict.fromkeys(ids):
            try:
                for wk in weeks(store, cid):
                    print()
                    print(format_scorecard(weekly_scorecard(store, wk, cid)))
            except LookupError as e:
                print(f"no scorecard: {e}")
    print(f"\ndatabase: {Path(db).resolve()}")
    return 0


# --- scorecard, eval, calibrate, status ---------------------------------------------------------------------


@cli.command("scorecard", short_help="weekly per-agent scorecard",
             help="Per agent for one ISO week: calls, mean score, critical fails and the pass rate of every checklist "
             "item (share of calls where the item applied and passed).")
@week_option()
@db_option()
@checklist_id_option()
@json_option("print JSON instead of a table")
def cmd_scorecard(week: str | None, db: Path, checklist: str, as_json: bool) -> int:
    from callqa.pipelines.reports.report_data import weekly_scorecard
    from callqa.pipelines.reports.scorecard import format_scorecard
    from callqa.pipelines.store.database import Store

    with Store.open_readonly(db) as store:
        card = weekly_scorecard(store, week, checklist)
    print(json.dumps(card.to_dict(), ensure_ascii=False, indent=2) if as_json else format_scorecard(card))
    return 0


@cli.command("eval", short_help="compare verdicts with the labels of a manifest",
             help="Per-item precision, recall, F1 and macro-F1 against the manifest's `labels`; --text classifies "
             "the reference `turns`, otherwise the audio is transcribed first.")
@manifest_option("JSONL/CSV manifest with labels (and turns)", required=True)
@click.option("--text", is_flag=True, help="classify the reference transcripts instead of audio")
@labels_option("JSONL of {call_id or source_id, labels} joined onto the manifest's rows: labels kept apart from a "
               "corpus whose text may not be copied (tests/data/heldout/real_labels.jsonl)")
@json_option()
@db_option("callqa-eval.duckdb", "DuckDB file for the audio run (default: ./callqa-eval.duckdb)")
@checklist_option()
@click.option("--items", metavar="A,B", help="comma-separated item ids to score (default: the six product labels plus "
              "any other item of the checklist that the manifest labels)")
@asr_options
@pass_settings
def cmd_eval(settings: Settings, manifest: Path, text: bool, labels: Path | None, as_json: bool, db: Path,
             checklist: str, items: str | None, asr) -> int:
    from callqa.pipelines.learn.evaluate import LABELS, attach_labels, classify_text, evaluate_calls, format_eval
    from callqa.pipelines.run.batch import read_manifest
    from callqa.pipelines.run.flows import make_engine
    from callqa.qa_rules.checklist import load_checklist

    cl = load_checklist(checklist)
    rows = read_manifest(manifest, require_file=not text)
    if labels:
        try:
            rows = attach_labels(rows, read_manifest(labels, require_file=False))
        except ValueError as e:
            raise Failed(f"{labels}: {e}") from e
    rows = [r for r in rows if r.get("labels")]
    if not rows:
        raise Failed(f"{manifest} has no rows with 'labels'")
    engine = make_engine(cl)
    if text:
        results = classify_text(engine, rows)
    else:
        results = _eval_from_audio(manifest, db, checklist, asr, cl, rows, quiet=settings.quiet)
    if items:
        ids = split_list(items)
    else:  # the product's six labels, plus any item of this checklist the manifest labels (a team's own)
        ids = LABELS + tuple(i for i in cl.item_ids if i not in LABELS and any(i in r["labels"] for r in rows))
    result = evaluate_calls(cl, results, ids)
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) if as_json else format_eval(result))
    return 0


def _eval_from_audio(manifest: Path, db: Path, checklist_arg: str, asr, checklist, rows: list[dict],
                     quiet: bool) -> list:
    from callqa.pipelines.run.batch import file_sha256
    from callqa.pipelines.run.flows import RunConfig, process_batch
    from callqa.pipelines.store.database import Store

    from callqa.records import ItemVerdict

    manifest = Path(manifest)
    summary = process_batch(manifest.parent, manifest, RunConfig(db, checklist_arg, asr, progress=not quiet))
    for line in summary.lines():
        print(line, file=sys.stderr)
    results = []
    with Store.open_readonly(db) as store:
        for r in rows:
            rid = file_sha256(manifest.parent / r["file"])
            verdicts = store.item_verdicts(rid, checklist.id, checklist.version)
            if not verdicts:  # not scored (failed or no speech): every item counts as not detected
                verdicts = [ItemVerdict(i, "fail", 0.0, (), "call not scored") for i in checklist.item_ids]
            results.append((str(r.get("call_id") or r["file"]), r["labels"], verdicts))
    return results


@cli.command("calibrate", short_help="fit checklist thresholds and confidences on labelled calls",
             help="Fit each item's semantic threshold shift (best F1, ties to no change) and a logistic confidence "
             "curve on the manifest's labelled reference transcripts, report train and K-fold cross-validated F1, "
             "and write the checklist as version N+1 with a `calibration:` section.")
@manifest_option("JSONL/CSV manifest with labels and turns; repeat to fit on several sets together", required=True,
                 multiple=True)
@labels_option("JSONL of {call_id or source_id, labels} joined onto the manifests' rows (as in eval)")
@click.option("--out", type=PathType, default=None, metavar="PATH",
              help="new version file (default: ./<id>.v<N+1>.yaml)")
@checklist_option("bundled checklist name or YAML path to start from")
@click.option("--folds", type=int, default=5, metavar="K", help="cross-validation folds (default 5)")
@json_option()
def cmd_calibrate(manifest: tuple[Path, ...], labels: Path | None, out: Path | None, checklist: str, folds: int,
                  as_json: bool) -> int:
    from callqa.pipelines.learn.calibrate import format_calibration, result_dict, run_calibration
    from callqa.pipelines.run.flows import make_engine
    from callqa.qa_rules.checklist import load_checklist

    cl = load_checklist(checklist)
    result, written, _ = run_calibration(cl, list(manifest), make_engine(cl).embedder, out, folds, labels=labels)
    print(json.dumps(result_dict(result, written), indent=2) if as_json
          else f"{format_calibration(result)}\nwrote {written}")
    return 0


@cli.command("status", short_help="recent runs, failures and their reasons",
             help="Recent runs (counts; 'interrupted' when cut off), every recording that failed with its reason and "
             "whether it will be retried, and the run writing now, if any.")
@db_option()
@click.option("--limit", type=int, default=10, metavar="N", help="how many recent runs (default 10)")
@json_option()
def cmd_status(db: Path, limit: int, as_json: bool) -> int:
    from callqa.pipelines.run.status import format_status, run_status

    st = run_status(db, limit)
    print(json.dumps(st, ensure_ascii=False, indent=2, default=str) if as_json else format_status(st))
    return 0


# --- serve ---------------------------------------------------------------------------------------------------


@cli.command("serve", short_help="score an inbox folder on a schedule, publish the weekly scorecard",
             help="Register two Prefect deployments and run them on schedule until Ctrl-C: "
             "'score-recordings/inbox-nightly' scores new files of DIR (cron --cron), "
             "'weekly-scorecard/scorecard-weekly' publishes the scorecard (cron --report-cron). "
             "Start a Prefect server first (prefect server start) and set PREFECT_API_URL.")
@click.argument("dir", help="inbox folder where new recordings arrive", type=PathType)
@db_option()
@click.option("--manifest", metavar="FILE", help="manifest to use on every run (default: folder scan)")
@click.option("--cron", default="0 2 * * *", metavar="CRON",
              help="scoring schedule (default: '0 2 * * *', 02:00 daily)")
@click.option("--every", type=float, metavar="SECONDS",
              help="score every SECONDS instead of on --cron (an interval schedule; e.g. 30 for a live inbox)")
@click.option("--report-cron", default="0 7 * * 1", metavar="CRON", help="scorecard schedule (default: Mondays 07:00)")
@click.option("--timezone", metavar="TZ", help="time zone of the schedules (default: $TZ or UTC)")
@checklist_option()
@routing_option("route each call to a checklist (see callqa run)")
@max_attempts_option("give up on a transient failure after this many runs")
@click.option("--workers", type=int, default=1, metavar="N", help="transcription worker processes per run")
@click.option("--dask", is_flag=True, help="start a local Dask cluster of --workers `dask worker` processes with "
              "serve (kept up between runs, stopped on exit) and transcribe every scheduled run on it")
@click.option("--dask-address", metavar="tcp://HOST:8786", help="transcribe on an existing Dask scheduler "
              "(--workers: how many worker processes it has)")
@click.option("--stage-dir", type=PathType, metavar="DIR", help="shared folder where Dask workers leave transcripts "
              "as Parquet partitions (default with --dask: beside the database)")
def cmd_serve(dir: Path, db: Path, manifest: str | None, cron: str, every: float | None, report_cron: str,  # noqa: A002
              timezone: str | None, checklist: str, routing: str | None, max_attempts: int, workers: int,
              dask: bool, dask_address: str | None, stage_dir: Path | None) -> int:
    from callqa.pipelines.run.deploy import serve

    if dask and dask_address:
        raise click.UsageError("--dask starts a local cluster, --dask-address uses an existing one: pick one")
    serve(dir, db=db, cron=cron, report_cron=report_cron, manifest=manifest, checklist=checklist,
          max_attempts=max_attempts, workers=workers, timezone=timezone, every=every, routing=routing,
          dask=dask, dask_address=dask_address, stage_dir=stage_dir)
    return 0


# --- benches -------------------------------------------------------------------------------------------------


@cli.command("pipeline-bench", short_help="time N calls through the pipeline with 1 and 2 workers",
             help="Scores the same N recordings into fresh databases once per worker count and prints the time per "
             "call by stage (decode, ASR, checklist, storage, orchestration) and the throughput, side by side. "
             "--scorecard-rows also times the weekly scorecard query on a generated database of that many verdict "
             "rows.")
@click.option("--calls", type=int, default=8, metavar="N", help="how many calls (default 8; 0: skip the pipeline part)")
@click.option("--workers", default="1,2", metavar="A,B", help="worker counts to compare (default 1,2)")
@click.option("--source", type=PathType, multiple=True, metavar="DIR",
              help="folder(s) of recordings to draw from, repeatable (default: the bundled samples)")
@click.option("--prefect", is_flag=True, help="run through the Prefect flow (task runs) instead of plain functions")
@click.option("--dask", is_flag=True, help="through the Prefect flow on fresh `dask worker` processes, one set per "
              "worker count, with each worker's start-up, model load and memory (e.g. --workers 1,2,4)")
@click.option("--scorecard-rows", type=int, default=0, metavar="N",
              help="also time the scorecard query on this many generated verdict rows (e.g. 1000000)")
@click.option("--landing", is_flag=True, help="instead: time from a file landing in the inbox to its score stored, "
              "under a running `callqa serve --every 5` (a Prefect server started for each setting); --calls N "
              "land one at a time, then a burst; worker count 1 is the plain served flow, N > 1 serve --dask (all "
              "Dask with --dask)")
@json_option()
def cmd_pipeline_bench(calls: int, workers: str, source: tuple[Path, ...], prefect: bool, dask: bool,
                       scorecard_rows: int, landing: bool, as_json: bool) -> int:
    counts = tuple(int(w) for w in split_list(workers))
    if landing:
        from callqa.pipelines.bench.landing_bench import main_landing

        print(main_landing(counts, calls, dask, as_json, list(source) or None))
        return 0
    from callqa.pipelines.bench.pipeline_bench import main_bench

    print(main_bench(calls, counts, prefect, as_json, scorecard_rows, list(source) or None, dask=dask))
    return 0


@cli.command("asr-bench", short_help="speed, CER/WER and speaker attribution of the Whisper runtimes",
             help="For each runtime on the manifest's calls: whole-call real-time factor (both channels), CER (zh) "
             "and WER (en) against the reference turns, speaker attribution on the stereo files and on the mono "
             "copies (audio.mono_8k_telephone), peak RSS. Runtimes take turns call by call in their own processes, "
             "so the ratios between them are fair. A worker that dies ends the command with exit 1, naming the file.")
@manifest_option("JSONL manifest with reference `turns`", required=True)
@click.option("--runtime", multiple=True, metavar="R",
              help="runtime to measure, repeatable; options after a colon compare settings in one run, e.g. "
              "faster-whisper:beam_size=1 (default: faster-whisper)")
@click.option("--limit", type=int, default=None, metavar="N", help="only the first N calls, languages in turn")
@json_option("print one JSON object {runtime: {metric: value}}")
@click.option("--verdicts", is_flag=True,
              help="also compare the checklist verdicts of the runtimes (with each other and the labels)")
@click.option("--threads", type=int, default=0, metavar="N", help="CPU threads per model (0: all cores)")
@click.option("--beam-size", type=int, default=None, metavar="N", help="beam search width (default: AsrOptions's)")
@click.option("--model", default=None, metavar="NAME|PATH",
              help="Whisper model: 'base' (bundled), a Whisper name or a local path")
@vocabulary_option()
@vocab_file_option()
@pass_settings
def cmd_asr_bench(settings: Settings, manifest: Path, runtime: tuple[str, ...], limit: int | None, as_json: bool,
                  verdicts: bool, threads: int, beam_size: int | None, model: str | None,
                  vocabulary: str | None, vocab_file: Path | None) -> int:
    from callqa.models.asr import AsrOptions
    from callqa.models.hints import run_vocabulary
    from callqa.pipelines.bench.asr_bench import WorkerDied, format_bench, run_bench

    opts = AsrOptions(cpu_threads=threads, beam_size=beam_size or AsrOptions().beam_size, model=model,
                      vocabulary=run_vocabulary(split_list(vocabulary), vocab_file))
    try:
        result = run_bench(manifest, list(runtime) or ["faster-whisper"], limit, opts, verdicts,
                           progress=not settings.quiet)
    except WorkerDied as e:
        raise Failed(str(e)) from e
    print(json.dumps(result, ensure_ascii=False, indent=2) if as_json else format_bench(result))
    return 0


# --- train ---------------------------------------------------------------------------------------------------

TRAIN_EPOCHS = 60


@cli.command("train", short_help="train the checklist's judgement heads on labelled calls",
             help="Embed every labelled call's sentences and turns with the bundled e5 encoder, train the heads that "
             "the checklist's `model`/`model_answer` items read (usage scenario, selling point, objection, greeting, "
             "forbidden phrase, and the concern/reply pair head), calibrate each on out-of-fold predictions (folds "
             "by writer), and write a heads file plus a JSON report. Seeded: the same corpus and seed give the same "
             "file. About 10-15 minutes for 1,500 calls on 2 cores.\n\n"
             "With --checklist, a team's own items are fitted from the pass/fail examples written in the checklist "
             "(seconds).\n\n"
             "With --finetune, the e5 encoder itself is fine-tuned instead (LoRA adapters, peft) as a cross-encoder "
             "that reads a turn with its context: is this customer turn a concern, does this reply answer it, is "
             "this agent turn dismissive (the `cross`/`cross_answer` items). Writes sales_core.cross.safetensors "
             "and a JSON report; about 30 minutes for 1,600 calls and 2 epochs on 2 cores.",
             epilog="\b\nexamples:\n"
             "  callqa train --manifest corpus/ --out qa_rules/checklists/\n"
             "  callqa train --checklist my_team.yaml --out my_team/\n"
             "  callqa train --finetune --manifest corpus/ --exclude-writer W10 --out /tmp/cross/")
@manifest_option("labelled JSONL manifest, or a folder of them (each file or folder one writer); repeatable",
                 multiple=True)
@click.option("--checklist", metavar="FILE",
              help="a checklist whose items carry `examples` (pass/fail snippets) and a `model` head: fit those heads "
              "from the examples (seconds), keep the checklist's other heads, write <id>.heads.npz and the "
              "checklist pointing at it into --out")
@click.option("--out", type=PathType, required=True, metavar="DIR",
              help="folder for the heads file (sales_core.heads.npz; <id>.heads.npz with --checklist)")
@click.option("--seed", type=int, default=13, metavar="N", help="random seed (default 13)")
@click.option("--epochs", type=int, default=None, metavar="N",
              help=f"full-batch passes per head (default {TRAIN_EPOCHS}; fewer for a quick trial); with --finetune, "
              "passes over the pairs (default 2)")
@click.option("--finetune", is_flag=True,
              help="fine-tune the encoder (LoRA cross-encoder) on the --manifest calls instead of fitting heads")
@click.option("--max-steps", type=int, default=None, metavar="N", help="with --finetune: stop after N batches")
@click.option("--exclude-writer", multiple=True, metavar="W", help="leave this writer's calls out (repeatable)")
def cmd_train(manifest: tuple[Path, ...], checklist: str | None, out: Path, seed: int, epochs: int | None,
              finetune: bool, max_steps: int | None, exclude_writer: tuple[str, ...]) -> int:
    from callqa.pipelines.learn.train import TrainConfig, run_training

    if not manifest and not checklist:
        raise click.UsageError("give --manifest (labelled calls) and/or --checklist (items with examples)")
    if finetune:
        if checklist or not manifest:
            raise click.UsageError("--finetune trains on --manifest calls and takes no --checklist")
        return _train_cross(list(manifest), out, seed, epochs, max_steps, exclude_writer)
    heads = None
    if manifest:
        path, heads = run_training(list(manifest), out, TrainConfig(seed=seed, epochs=epochs or TRAIN_EPOCHS),
                                   exclude_writers=exclude_writer)
        print(f"wrote {path}\nsha256: {heads.sha256}\ncalls: {heads.meta['calls']} from "
              f"{len(heads.meta['writers'])} writers\nreference it from a checklist: "
              f"model: {{heads: {path.name}, sha256: {heads.sha256}}}")
    if checklist:
        from callqa.pipelines.learn.train_items import run_item_training

        try:
            yaml_path, heads_path, fitted = run_item_training(checklist, out, base=heads)
        except (ValueError, FileNotFoundError) as e:
            raise Failed(f"{checklist}: {e}") from e
        for name, rep in fitted.meta["example_heads"]["heads"].items():
            print(f"fitted {name} from {rep['pass']} pass / {rep['fail']} fail examples + {rep['bank']} background "
                  f"sentences: held-out pass examples found {rep['loo_pass_recall']:.0%}, held-out fail examples "
                  f"rejected {rep['loo_fail_rejected']:.0%}, background flagged {rep['bank_flagged']:.1%}")
        print(f"wrote {heads_path} (sha256 {fitted.sha256})\nwrote {yaml_path}")
    return 0


def _train_cross(manifest: list[Path], out: Path, seed: int, epochs: int | None, max_steps: int | None,
                 exclude_writer: tuple[str, ...]) -> int:
    from callqa.pipelines.learn.finetune import FinetuneConfig, finetune
    from callqa.pipelines.learn.train import read_manifests
    from tqdm import tqdm

    rows = [r for r in read_manifests(manifest) if r.get("writer") not in set(exclude_writer)]
    if not rows:
        raise Failed("no labelled calls left to train on")
    cfg = FinetuneConfig(seed=seed, epochs=epochs or FinetuneConfig.epochs, max_steps=max_steps)
    settings = click.get_current_context().obj
    bar = None if settings.quiet else tqdm(total=0, unit="batch", desc="fine-tuning")

    def progress(step: int, total: int, loss: float) -> None:
        if bar is not None:
            bar.total = total
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{loss:.3f}")

    try:
        path, digest, report = finetune(rows, out, cfg, progress, sources=[str(m) for m in manifest])
    except ValueError as e:
        raise Failed(str(e)) from e
    finally:
        if bar is not None:
            bar.close()
    t = report["training"]
    print(f"wrote {path}\nsha256: {digest}\ncalls: {t['calls']} from {len(t['writers'])} writers, {t['steps']} "
          f"batches in {t['seconds']} s\nreference it from a checklist: "
          f"model: {{cross: {path.name}, cross_sha256: {digest}}}")
    return 0


# --- the other modules' commands -----------------------------------------------------------------------------


def _add_module_commands() -> None:
    from callqa.pipelines.cli.report import report, review
    from callqa.pipelines.cli.workstation import app, rules

    for command in (report, review, app, rules):
        cli.add_command(command)


_add_module_commands()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (see `options.py` for the table) instead of exiting."""
    try:
        rv = cli.main(args=argv, prog_name="callqa", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:
        click.echo("callqa: interrupted", err=True)
        return EXIT_INTERRUPTED
    return rv if isinstance(rv, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
