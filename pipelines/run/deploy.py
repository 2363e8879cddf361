"""Scheduled deployments: `callqa serve` scores an inbox folder on a cron schedule and publishes the weekly
scorecard every week, both as Prefect deployments served by one long-running process.

Needs a Prefect server that outlives the process (`prefect server start`, then
`export PREFECT_API_URL=http://127.0.0.1:4200/api`); runs, logs and artifacts show in its UI.
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
                      every: float | None = None, routing: str | None = None) -> list:
    """The two deployments `callqa serve` runs: scoring of `inbox` on `cron` (or every `every` seconds when given,
    for an inbox that should be scored within seconds of a file landing), the scorecard on `report_cron`."""
    from datetime import timedelta

    from callqa.pipelines.run.flows import score_recordings
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    tz = timezone or os.environ.get("TZ") or "UTC"
    inbox, db = str(Path(inbox).resolve()), str(Path(db).resolve())
    if every is not None and every <= 0:
        raise ValueError(f"every must be a positive number of seconds, not {every}")
    schedule = (IntervalSchedule(interval=timedelta(seconds=every), timezone=tz) if every
                else CronSchedule(cron=cron, timezone=tz))
    score = score_recordings.to_deployment(
        name=SCORE_DEPLOYMENT, schedule=schedule,
        parameters={"source_dir": inbox, "manifest": manifest, "db": db, "checklist": checklist,
                    "max_attempts": max_attempts, "progress": False, "workers": workers, "wait": 3600,
                    "routing": routing},
        description=f"score new recordings in {inbox} into {db}", tags=["callqa"],
        concurrency_limit=1,  # a slow night never overlaps the next one
    )
    report = weekly_report.to_deployment(
        name=REPORT_DEPLOYMENT, schedule=CronSchedule(cron=report_cron, timezone=tz),
        parameters={"db": db, "checklist": checklist}, description=f"weekly scorecard of {db}", tags=["callqa"],
    )
    return [score, report]


def serve(inbox: str | Path, **kwargs) -> None:
    """Register both deployments and run them on schedule until interrupted (Ctrl-C)."""
    from prefect import serve as prefect_serve

    if not os.environ.get("PREFECT_API_URL"):
        log.warning("PREFECT_API_URL is not set: schedules live only as long as this process's temporary "
                    "server. Start `prefect server start` and export PREFECT_API_URL=http://127.0.0.1:4200/api")
    prefect_serve(*build_deployments(inbox, **kwargs))


def _dask_runner_from_env():
    from callqa.pipelines.run.scale import dask_task_runner

    return dask_task_runner(os.environ.get("CALLQA_DASK_ADDRESS"), int(os.environ.get("CALLQA_DASK_WORKERS", "2")))


def _score_on_dask():
    from callqa.pipelines.run.flows import score_recordings

    return score_recordings.with_options(name="score-recordings-dask", task_runner=_dask_runner_from_env())


def __getattr__(name: str):  # `pipelines/run/deploy.py:score_recordings_dask`, the work-pool entrypoint, built lazily
    if name == "score_recordings_dask":
        return _score_on_dask()
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
