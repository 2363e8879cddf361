"""Where a run's time goes, recorded by its own object instead of `perf_counter` calls spread through the flow.

`StageClock` holds one call's (or one worker job's) seconds per stage: `with clock.stage("checklist"): ...`
records that block's wall time under "checklist" (optionally its CPU time under a second key); figures
measured elsewhere (a worker process, a model's own breakdown) are merged with `clock.add(...)`. `RunClock`
is the run's: its start, the planning time, and each finished call's record with its share of the run's wall
time ("wall": time since the previous call finished, or since the plan was made, waits included).
`RunClock.summary()` is what `RunSummary.timings` carries and what `callqa pipeline-bench` reads
(`stage_totals`); `callqa asr-bench`'s worker times its transcriptions with a `StageClock` too.

Keys of a call's record (seconds unless said): `file` (name), `decode`, `model_load`, `speech` (everything
models/ did after decoding: VAD, diarization, language id, Whisper) and the model's own breakdown, `job` (the
whole worker job), `engine_load`, `checklist`, `storage`, `wall`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any


class StageClock:
    """Seconds per named stage of one unit of work (a call, a worker job). `times` is a plain dict (it travels
    between processes, into JSON and Parquet facts); `file` and other non-time fields may sit beside the stages."""

    def __init__(self, **fields: Any) -> None:
        self.times: dict[str, Any] = dict(fields)
        self._t0 = time.perf_counter()

    @contextmanager
    def stage(self, name: str, *, cpu: str | None = None, add: bool = False) -> Iterator[None]:
        """Time the block: its wall seconds under `name` (added to what is there with `add=True`), its process
        CPU seconds under `cpu` when given. Recorded even when the block raises (the time was spent)."""
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            wall = time.perf_counter() - t0
            self.times[name] = (self.times.get(name, 0.0) if add else 0.0) + wall
            if cpu:
                self.times[cpu] = (self.times.get(cpu, 0.0) if add else 0.0) + time.process_time() - c0

    def set(self, name: str, seconds: float) -> None:
        """A figure known without timing a block here (e.g. a share of a chunk's time)."""
        self.times[name] = seconds

    def add(self, reported: Mapping[str, Any], *, skip: Iterable[str] = ()) -> None:
        """Merge figures measured elsewhere (a worker's, a model's own), leaving out `skip` keys."""
        left_out = set(skip)
        self.times.update({k: v for k, v in reported.items() if k not in left_out})

    def since_start(self) -> float:
        """Seconds since this clock was made."""
        return time.perf_counter() - self._t0

    def __getitem__(self, name: str) -> Any:
        return self.times[name]

    def __contains__(self, name: object) -> bool:
        return name in self.times

    def get(self, name: str, default: Any = None) -> Any:
        return self.times.get(name, default)


class RunClock:
    """A run's clock: started when made, `planned()` once the plan is made, `finish(call)` as each call is stored
    (its "wall" is the time since the previous call finished), `summary()` at the end."""

    def __init__(self) -> None:
        self.t_start = time.perf_counter()
        self._prev = self.t_start
        self.plan_s: float | None = None
        self.calls: list[dict[str, Any]] = []

    def planned(self) -> float:
        """The plan is made: its time is the run's so far, and the first call's wall starts now."""
        self._prev = time.perf_counter()
        self.plan_s = self._prev - self.t_start
        return self.plan_s

    def call(self, file: str, reported: Mapping[str, Any] | None = None) -> StageClock:
        """A new call's clock, seeded with what a worker reported for it."""
        clock = StageClock(file=file)
        if reported:
            clock.add(reported)
        return clock

    def since_last(self) -> float:
        """Seconds since the last call finished (or the run started)."""
        return time.perf_counter() - self._prev

    def charge(self, seconds: float) -> None:
        """Let the next finished call's wall time begin `seconds` ago: the way a chunk of calls scored together
        hands each call its share of the chunk's time (`charge(spent / len(chunk))` before each)."""
        self._prev = time.perf_counter() - seconds

    def finish(self, clock: StageClock) -> dict[str, Any]:
        now = time.perf_counter()
        clock.set("wall", now - self._prev)  # this call's share of the run (waits included)
        self._prev = now
        self.calls.append(clock.times)
        return clock.times

    def summary(self, workers: int) -> dict[str, Any]:
        """What `RunSummary.timings` holds: plan_s, total_s, calls (one record each), workers."""
        return {"plan_s": self.plan_s if self.plan_s is not None else 0.0,
                "total_s": time.perf_counter() - self.t_start, "calls": self.calls, "workers": workers}


def stage_totals(calls: Iterable[Mapping[str, Any]], keys: Iterable[str]) -> dict[str, float]:
    """Sum of each stage over the calls' records (a call without a stage counts 0 for it)."""
    records = list(calls)
    return {k: sum(float(c.get(k, 0.0)) for c in records) for k in keys}
