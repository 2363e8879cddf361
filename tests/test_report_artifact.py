"""The weekly flow's hook: the report summary lands in Prefect as a markdown artifact."""

from __future__ import annotations

import duckdb

from tests.reportdb import dev_db


def test_publish_artifact_inside_a_flow(prefect_server, tmp_path_factory, shared_data):
    from callqa.pipelines.reports.report import build_week_report, publish_artifact
    from prefect import flow
    from prefect.client.orchestration import get_client

    db = dev_db(tmp_path_factory)

    @flow(name="weekly-report-test")
    def weekly():
        with duckdb.connect(str(db), read_only=True) as con:
            report = build_week_report(con, "2026-W46")
        return publish_artifact(report, link="file:///reports/2026-W46/index.html")

    artifact_id = weekly()
    assert artifact_id
    with get_client(sync_client=True) as client:
        # the REST endpoint directly: this client/server pair sends nulls the server rejects (422)
        resp = client.request("POST", "/artifacts/filter",
                              json={"artifacts": {"key": {"any_": ["qa-report-2026-w46"]}}, "limit": 5})
    arts = resp.json()
    assert arts and arts[0]["type"] == "markdown" and arts[0]["id"] == str(artifact_id)
    md = arts[0]["data"]
    assert "# Weekly QA report 2026-W46" in md and "| A05 |" in md and "file:///reports/2026-W46/index.html" in md
    assert arts[0]["flow_run_id"] is not None
