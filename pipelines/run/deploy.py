"""Scheduled deployments: `callqa serve` scores an inbox folder on a cron schedule and publishes the weekly
scorecard every week, both as Prefect deployments served by one long-running process.

Needs a Prefect server that outlives the process (`prefect server start`, then
`export PREFECT_API_URL=http://127.0.0.1:4200/api`); runs, logs and artifacts show in its UI.

Transcription in each scheduled run goes where `callqa run` would send it (`flows.task_runner_for`): one thread,
a process pool (`workers > 1`), or Dask: `dask=True` starts a scheduler and `workers` real `dask worker`
processes with the serve process (`workers.LocalWorkers`, stopped when it stops; they stay up between runs, so
each worker loads its models once, not once per run), `dask_address` uses an existing cluster.
Multi-host: see docs/operations.md (work pool + workers on shared storage).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from callqa.pipelines.store.database import DEFAULT_DB, Store
from callqa.qa_rules.checklist import DEFAULT_CHECKLIST
from prefect import flow, get_run_logger

log = logging.getLogger(__name__)

SCORE_DEPLOYMENT = "inbox-nightly"
REPORT_DEPLOYMENT = "scorecard-weekly"
# A served deployment's run is a new process that loads its flow from the entrypoint, so the task runner cannot
# travel with the flow object: with several workers or Dask the deployment's entrypoint is this attribute, which
# builds `score-recordings` with the runner named by the serve process's environment (`served_env`).
SERVED_ENTRYPOINT = "callqa.pipelines.run.deploy.score_recordings_served"


def weekly_report_markdown(db: str | Path, week: str | None = None, checklist: str = DEFAULT_CHECKLIST) -> str:
    """The weekly report as markdown. The reports module may replace this function (same signature)."""
    from callqa.pipelines.reports.report_data import weekly_scorecard
    from callqa.pipelines.reports.scorecard import format_scorecard

    with Store.open_readonly(db, wait=120) as store:
        try:
            card = weekly_scorecard(store, week, checklist)
        except LookupError as e:
            return f"# Weekly scorecard\n\nNo scorecard: {e}\n"
    return f"# Weekly scorecard {card.week}\n\n```\n{format_scorecard(card)}\n```\n"


@flow(name="weekly-scorecard", flow_run_name="scorecard {week}", log_prints=True)
def weekly_report(db: str = DEFAULT_DB, week: str | None = None, checklist: str = DEFAULT_CHECKLIST) -> str:
    """Build the weekly per-agent scorecard and publish it as the markdown artifact `callqa-weekly-scorecard`."""
    from prefect.artifacts import create_markdown_artifact

    md = weekly_report_markdown(db, week, checklist)
    create_markdown_artifact(key="callqa-weekly-scorecard", markdown=md, description="weekly per-agent scorecard")
    get_run_logger().info("published the weekly scorecard of %s", db)
    return md


def build_deployments(inbox: str | Path, db: str | Path = DEFAULT_DB, cron: str = "0 2 * * *",
                      report_cron: str = "0 7 * * 1", manifest: str | None = None, checklist: str = DEFAULT_CHECKLIST,
                      max_attempts: int = 3, workers: int = 1, timezone: str | None = None,
                      every: float | None = None, routing: str | None = None, dask_address: str | None = None,
                      stage_dir: str | Path | None = None) -> list:
    """The two deployments `callqa serve` runs: scoring of `inbox` on `cron` (or every `every` seconds when given,
    for an inbox that should be scored within seconds of a file landing), the scorecard on `report_cron`.
    Transcription runs on `workers` processes (a process pool), or on the Dask scheduler at `dask_address`
    (`workers`: how many worker processes it has, to split each host's cores between them), workers leaving
    transcripts on `stage_dir` when given."""
    from datetime import timedelta

    from callqa.pipelines.run.flows import scoring_flow_for
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    tz = timezone or os.environ.get("TZ") or "UTC"
    inbox, db = str(Path(inbox).resolve()), str(Path(db).resolve())
    if every is not None and every <= 0:
        raise ValueError(f"every must be a positive number of seconds, not {every}")
    schedule = (IntervalSchedule(interval=timedelta(seconds=every), timezone=tz) if every
                else CronSchedule(cron=cron, timezone=tz))
    from prefect.types.entrypoint import EntrypointType

    score_flow, orchestrator = scoring_flow_for(workers, dask_address=dask_address)
    plain = workers <= 1 and not dask_address
    score = score_flow.to_deployment(
        name=SCORE_DEPLOYMENT, schedule=schedule,
        entrypoint_type=EntrypointType.FILE_PATH if plain else EntrypointType.MODULE_PATH,
        parameters={"source_dir": inbox, "manifest": manifest, "db": db, "checklist": checklist,
                    "max_attempts": max_attempts, "progress": False, "workers": workers, "wait": 3600,
                    "routing": routing, "orchestrator": orchestrator,
                    "stage_dir": str(Path(stage_dir).resolve()) if stage_dir else None},
        description=f"score new recordings in {inbox} into {db}", tags=["callqa"],
        concurrency_limit=1,  # a slow night never overlaps the next one
    )
    if not plain:
        score.entrypoint = SERVED_ENTRYPOINT
    report = weekly_report.to_deployment(
        name=REPORT_DEPLOYMENT, schedule=CronSchedule(cron=report_cron, timezone=tz),
        parameters={"db": db, "checklist": checklist}, description=f"weekly scorecard of {db}", tags=["callqa"],
    )
    return [score, report]


def default_dask_dir(db: str | Path) -> Path:
    """Where `serve --dask` keeps its cluster's scheduler file and one log per process: beside the database."""
    db = Path(db).resolve()
    return db.with_name(f"{db.stem}.dask")


def default_stage_dir(db: str | Path) -> Path:
    """Where `serve --dask`'s workers leave transcript partitions unless told: beside the database."""
    db = Path(db).resolve()
    return db.with_name(f"{db.stem}.stage")


def serve(inbox: str | Path, *, dask: bool = False, dask_address: str | None = None,
          stage_dir: str | Path | None = None, dask_dir: str | Path | None = None, **kwargs) -> None:
    """Register both deployments and run them on schedule until interrupted (Ctrl-C, SIGTERM).
    `dask`: start a local Dask cluster of `workers` processes first (in `dask_dir`, default beside the database),
    keep it up while serving, stop it on the way out; `dask_address`: an existing cluster."""
    from prefect import serve as prefect_serve

    if dask and dask_address:
        raise ValueError("dask (a local cluster) and dask_address (an existing one) exclude each other")
    if not os.environ.get("PREFECT_API_URL"):
        log.warning("PREFECT_API_URL is not set: schedules live only as long as this process's temporary "
                    "server. Start `prefect server start` and export PREFECT_API_URL=http://127.0.0.1:4200/api")
    n = int(kwargs.get("workers", 1))
    if not dask:
        os.environ.update(served_env(n, dask_address))
        prefect_serve(*build_deployments(inbox, dask_address=dask_address, stage_dir=stage_dir, **kwargs))
        return
    from callqa.pipelines.run.workers import LocalWorkers

    db = kwargs.get("db", DEFAULT_DB)
    stage = Path(stage_dir) if stage_dir else default_stage_dir(db)
    with LocalWorkers(n, Path(dask_dir) if dask_dir else default_dask_dir(db)) as cluster, cluster.kept_alive():
        log.info("Dask scheduler %s with %d worker process(es) %s (logs in %s); transcripts staged in %s",
                 cluster.address, n, ", ".join(f"{w.name} pid {w.proc.pid} up in {w.ready_s or 0:.1f} s"
                                               for w in cluster.workers), cluster.root, stage)
        os.environ.update(served_env(n, cluster.address))
        prefect_serve(*build_deployments(inbox, dask_address=cluster.address, stage_dir=stage, **kwargs))
    log.info("stopped the Dask scheduler and its %d worker(s)", n)


def served_env(workers: int, dask_address: str | None) -> dict[str, str]:
    """What the serve process's environment must say for its flow-run processes (which inherit it) to build
    `score_recordings_served` with the same task runner as `build_deployments` chose."""
    return {"CALLQA_SERVE_WORKERS": str(workers), "CALLQA_DASK_ADDRESS": dask_address or ""}


def _served_flow():
    from callqa.pipelines.run.flows import scoring_flow_for

    flow_, _ = scoring_flow_for(int(os.environ.get("CALLQA_SERVE_WORKERS") or 1),
                                dask_address=os.environ.get("CALLQA_DASK_ADDRESS") or None)
    return flow_


def _dask_runner_from_env():
    from callqa.pipelines.run.scale import dask_task_runner

    return dask_task_runner(os.environ.get("CALLQA_DASK_ADDRESS"), int(os.environ.get("CALLQA_DASK_WORKERS", "2")))


def _score_on_dask():
    from callqa.pipelines.run.flows import score_recordings

    return score_recordings.with_options(name="score-recordings-dask", task_runner=_dask_runner_from_env())


def __getattr__(name: str):  # the entrypoints below are built lazily, from the environment of the process
    if name == "score_recordings_dask":  # `pipelines/run/deploy.py:score_recordings_dask`: the work-pool one
        return _score_on_dask()
    if name == "score_recordings_served":  # SERVED_ENTRYPOINT: what `callqa serve` runs with workers or Dask
        return _served_flow()
    raise AttributeError(name)


def deploy_to_pool(pool: str, inbox: str, db: str, stage_dir: str, dask_address: str, cron: str = "0 2 * * *",
                   source: str | Path | None = None, name: str = "inbox-cluster"):
    """Register `score-recordings-dask` in a work pool: a Prefect worker of `pool` runs the flow (the single
    DuckDB writer), transcription tasks go to the Dask scheduler at `dask_address`, transcripts to the shared
    `stage_dir`. Every path must be the same on every host. Returns the deployment id."""
    src = str(source or Path(__file__).resolve().parents[2])
    flow_ = _score_on_dask().from_source(src, "pipelines/run/deploy.py:score_recordings_dask")
    # to_deployment + apply rather than .deploy(): the latter's online-worker check fails on prefect 3.8.8 (422)
    dep = flow_.to_deployment(
        name, work_pool_name=pool, cron=cron, concurrency_limit=1,
        parameters={"source_dir": inbox, "db": db, "stage_dir": stage_dir, "progress": False, "wait": 3600,
                    "orchestrator": "prefect+dask"},
        job_variables={"env": {"CALLQA_DASK_ADDRESS": dask_address}},
    )
    return dep.apply(work_pool_name=pool)
