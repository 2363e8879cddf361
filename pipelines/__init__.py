"""Prefect flows, the DuckDB store, reports and the `callqa` CLI."""

import os

# Prefect defaults that matter on small machines (see docs/operations.md); users' own settings win.
# The first temporary server in a new PREFECT_HOME runs migrations (~45 s) and overruns the 20 s default.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_CLIENT_ENABLE_METRICS", "false")
