"""Shared, session-scoped fixtures: real weights, real audio, one temporary Prefect server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CALLQA_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEV = SHARED / "dev"
BAD = SHARED / "bad"
SAMPLES = ROOT / "samples"


def dev_calls() -> list[dict]:
    return [json.loads(line) for line in (DEV / "calls.jsonl").read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (DEV / "calls.jsonl").is_file():
        pytest.fail(f"shared test data not found at {SHARED} (set CALLQA_SHARED_DATA)")
    return SHARED


@pytest.fixture(scope="session")
def asr_options():
    from callqa.models.asr import AsrOptions

    return AsrOptions()


@pytest.fixture(scope="session")
def runtime(asr_options):
    from callqa.models.runtimes import get_runtime

    return get_runtime(asr_options)


@pytest.fixture(scope="session")
def encoder():
    from callqa.models.text_encoder import get_encoder

    return get_encoder()


@pytest.fixture(scope="session")
def checklist():
    from callqa.qa_rules.checklist import load_checklist

    return load_checklist("sales_core")


@pytest.fixture(scope="session")
def engine(checklist, encoder):
    from callqa.qa_rules.engine import ChecklistEngine

    return ChecklistEngine(checklist, encoder)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One temporary Prefect server (and database) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def rules_checklist():
    """sales_core_rules v11: the hand-grown rules the trained sales_core v12 replaced (kept as the baseline)."""
    from callqa.qa_rules.checklist import load_checklist

    return load_checklist("sales_core_rules")


@pytest.fixture(scope="session")
def rules_engine(rules_checklist, encoder):
    from callqa.qa_rules.engine import ChecklistEngine

    return ChecklistEngine(rules_checklist, encoder)


def on_the_rules_checklist():
    """Module-level `checklist` and `engine` fixtures bound to sales_core_rules, for tests that pin the hand-grown
    rules' behaviour (operators, thresholds, calibration): `checklist, engine = on_the_rules_checklist()`."""

    @pytest.fixture(scope="module")
    def checklist(rules_checklist):
        return rules_checklist

    @pytest.fixture(scope="module")
    def engine(rules_engine):
        return rules_engine

    return checklist, engine
