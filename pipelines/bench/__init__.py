"""Benchmarks run from the CLI: `callqa asr-bench` (speech) and `callqa pipeline-bench` (a whole batch)."""
