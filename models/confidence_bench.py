"""Whisper's confidence against transcription errors, to choose the low-confidence lines (issue 15, item 4).

    python -m callqa.models.confidence_bench --out /tmp/conf.jsonl \
        --manifest ../shared/data/dev/calls.jsonl --manifest ../shared/data/speech/manifest.jsonl \
        --noisy ../shared/data/dev/calls.jsonl --snr 0 --noisy-limit 6
    python -m callqa.models.confidence_bench --analyse /tmp/conf.jsonl [--by-language]

Each recording is transcribed with the default pipeline (`AsrOptions()`, faster-whisper unless `--runtime`);
each segment keeps its four numbers (word probability, avg log-prob, no-speech probability, compression ratio).
Errors are counted per reference turn: every segment goes to the reference turn of its speaker it overlaps
most in time (a clip with one `reference_text` is one turn); the turn's CER (zh) or WER (en) is the edit
distance between the reference and its segments' text, normalised as in `callqa.models.metrics`. A turn is
flagged by a rule when any of its segments is. `--noisy` adds white noise at each `--snr` (dB, against the
channel's mean power; seeded) to the first `--noisy-limit` calls of a manifest (zh and en alternating), so the
lines are tried on audio that is actually hard: the dev calls are clean TTS. Measurement only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from callqa.models import confidence as rule
from callqa.models.asr import AsrOptions, transcribe_audio
from callqa.models.audio import AudioError, DecodedAudio, load_audio
from callqa.models.metrics import align, tokens
from callqa.models.runtimes import get_runtime

from callqa.records import Segment, Transcript


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]


def _interleaved(rows: list[dict], limit: int | None) -> list[dict]:
    by_lang: dict[str, list[dict]] = {}
    for r in rows:
        by_lang.setdefault(r["language"], []).append(r)
    out = [r for pair in zip(*by_lang.values(), strict=False) for r in pair]
    return out[:limit] if limit else out


def add_noise(audio: DecodedAudio, snr_db: float, seed: int) -> DecodedAudio:
    """White noise at `snr_db` below each channel's mean power."""
    rng = np.random.default_rng(seed)
    x = audio.channels.astype(np.float64)
    power = np.mean(x**2, axis=1, keepdims=True)
    noise = rng.normal(0.0, 1.0, x.shape) * np.sqrt(power / 10 ** (snr_db / 10))
    return dataclasses.replace(audio, channels=np.ascontiguousarray(np.clip(x + noise, -1, 1), dtype=np.float32))


def _turns(row: dict, duration: float) -> list[dict]:
    if row.get("turns"):
        return row["turns"]
    return [{"speaker": "any", "text": row["reference_text"], "start": 0.0, "end": duration}]


def _assign(seg: Segment, turns: list[dict]) -> int:
    mine = [i for i, t in enumerate(turns) if t["speaker"] in ("any", seg.speaker)] or list(range(len(turns)))

    def key(i: int) -> tuple[float, float]:
        t = turns[i]
        overlap = min(seg.end, t["end"]) - max(seg.start, t["start"])
        return (overlap, -abs((seg.start + seg.end) / 2 - (t["start"] + t["end"]) / 2))

    return max(mine, key=key)


def segment_rows(row: dict, transcript: Transcript, condition: str) -> list[dict]:
    """One row per reference turn: its error counts and the numbers of the segments assigned to it."""
    lang = row["language"]
    turns = _turns(row, transcript.duration)
    assigned: dict[int, list[Segment]] = {}
    for seg in transcript.segments:
        assigned.setdefault(_assign(seg, turns), []).append(seg)
    out = []
    for i, t in enumerate(turns):
        segs = sorted(assigned.get(i, []), key=lambda s: s.start)
        ref = tokens(t["text"], lang)
        hyp = [tok for s in segs for tok in tokens(s.text, lang)]
        errors = sum(1 for a, b in align(ref, hyp) if a is None or b is None or ref[a] != hyp[b])
        out.append({
            "condition": condition, "call": row.get("call_id") or row.get("file"), "language": lang,
            "turn": i, "ref_tokens": len(ref), "errors": errors,
            "segments": [{"start": s.start, "end": s.end, "text": s.text, "confidence": s.confidence,
                          "avg_logprob": s.avg_logprob, "no_speech_prob": s.no_speech_prob,
                          "compression_ratio": s.compression_ratio} for s in segs],
        })
    return out


def measure(manifests: list[Path], noisy: list[Path], snrs: list[float], noisy_limit: int | None,
            opts: AsrOptions, out_path: Path | None = None) -> list[dict]:
    """Per-turn rows of every recording; with `out_path` (JSON lines) each recording's rows are appended as it
    finishes, and recordings already there are not transcribed again (a cut-off run resumes)."""
    done: list[dict] = []
    if out_path is not None and out_path.exists():
        done = [json.loads(line) for line in out_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    have = {(r["condition"], r["call"]) for r in done}
    runtime = None
    jobs: list[tuple[Path, dict, str, float | None]] = []
    for m in manifests:
        jobs += [(m, r, f"{m.parent.name}", None) for r in _rows(m)]
    for m in noisy:
        for snr in snrs:
            jobs += [(m, r, f"{m.parent.name} +noise {snr:g} dB", snr) for r in _interleaved(_rows(m), noisy_limit)]
    out: list[dict] = list(done)
    for k, (m, r, cond, snr) in enumerate(jobs):
        if (cond, r.get("call_id") or r.get("file")) in have:
            continue
        runtime = runtime or get_runtime(opts)
        audio = load_audio(m.parent / r["file"])
        if snr is not None:
            audio = add_noise(audio, snr, seed=k)
        try:
            tr = transcribe_audio(audio, runtime, opts, 1 if r.get("agent_channel") == "right" else 0)
        except AudioError as e:
            print(f"{cond} {r.get('call_id') or r['file']}: {e}")
            continue
        rows = segment_rows(r, tr, cond)
        out += rows
        if out_path is not None:
            with out_path.open("a", encoding="utf-8") as f:
                f.writelines(json.dumps(x, ensure_ascii=False) + "\n" for x in rows)
        print(f"[{k + 1}/{len(jobs)}] {cond} {r.get('call_id') or r['file']}: {len(tr.segments)} segments",
              flush=True)
    return out


def _seg(d: dict) -> Segment:
    return Segment("agent", d["start"], d["end"], d["text"], d["confidence"], (), d["avg_logprob"],
                   d["no_speech_prob"], d["compression_ratio"])


RULES: dict[str, Callable[[Segment], bool]] = {
    "the rule (callqa.models.confidence)": rule.is_low_confidence,
    "avg_logprob < -1.0": lambda s: s.avg_logprob is not None and s.avg_logprob < -1.0,
    "avg_logprob < -0.8": lambda s: s.avg_logprob is not None and s.avg_logprob < -0.8,
    "avg_logprob < -0.6": lambda s: s.avg_logprob is not None and s.avg_logprob < -0.6,
    "no_speech_prob > 0.6": lambda s: s.no_speech_prob is not None and s.no_speech_prob > 0.6,
    "no_speech_prob > 0.4": lambda s: s.no_speech_prob is not None and s.no_speech_prob > 0.4,
    "compression_ratio > 2.4": lambda s: s.compression_ratio is not None and s.compression_ratio > 2.4,
    "word prob < 0.4": lambda s: s.confidence < 0.4,
    "word prob < 0.5": lambda s: s.confidence < 0.5,
    "word prob < 0.6": lambda s: s.confidence < 0.6,
    "word prob < 0.7": lambda s: s.confidence < 0.7,
    "no_speech_prob > 0.6 and word prob < 0.7": lambda s: (s.no_speech_prob or 0) > 0.6 and s.confidence < 0.7,
    "avg_logprob < -0.8 or word prob < 0.6": lambda s: (s.avg_logprob or 0) < -0.8 or s.confidence < 0.6,
}


def analyse(rows: list[dict], by_language: bool = False) -> dict[str, dict[str, dict]]:
    """Per condition and rule: segments flagged (of all), and the pooled error rate of flagged vs unflagged turns.
    Turns with no segment at all (speech Whisper or VAD missed: all deletions) are left out of both rates, since
    no segment rule can flag them; `missed_turns` counts them."""
    out: dict[str, dict[str, dict]] = {}
    if by_language:
        rows = [r | {"condition": f"{r['condition']} ({r['language']})"} for r in rows]
    for cond in dict.fromkeys(r["condition"] for r in rows):
        every = [r for r in rows if r["condition"] == cond]
        mine = [r for r in every if r["segments"]]
        n_seg = sum(len(r["segments"]) for r in mine)
        res: dict[str, dict] = {}
        for name, fn in RULES.items():
            flagged_seg = sum(fn(_seg(s)) for r in mine for s in r["segments"])
            f = [r for r in mine if any(fn(_seg(s)) for s in r["segments"])]
            u = [r for r in mine if r not in f]

            def rate(rs: list[dict]) -> float | None:
                n = sum(r["ref_tokens"] for r in rs)
                return round(sum(r["errors"] for r in rs) / n, 4) if n else None

            res[name] = {"segments": n_seg, "flagged_segments": flagged_seg, "turns": len(mine),
                         "missed_turns": len(every) - len(mine),
                         "flagged_turns": len(f), "error_flagged": rate(f), "error_unflagged": rate(u)}
        out[cond] = res
    return out


def format_analysis(result: dict[str, dict[str, dict]]) -> str:
    lines = []
    for cond, res in result.items():
        first = next(iter(res.values()))
        lines += [f"\n{cond}: {first['segments']} segments in {first['turns']} reference turns "
                  f"({first['missed_turns']} more turns got no segment at all)",
                  "| rule | segments flagged | turns flagged | error, flagged turns | error, other turns |",
                  "|---|---|---|---|---|"]
        for name, r in res.items():
            lines.append(f"| {name} | {r['flagged_segments']} | {r['flagged_turns']} | {r['error_flagged']} | "
                         f"{r['error_unflagged']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, action="append", default=[])
    ap.add_argument("--noisy", type=Path, action="append", default=[])
    ap.add_argument("--snr", type=float, action="append", default=[])
    ap.add_argument("--noisy-limit", type=int, default=None)
    ap.add_argument("--runtime", default="faster-whisper")
    ap.add_argument("--out", type=Path, help="append the per-turn measurements here (JSON lines); resumes")
    ap.add_argument("--analyse", type=Path, help="only analyse measurements written before with --out")
    ap.add_argument("--by-language", action="store_true", help="zh (CER) and en (WER) apart")
    a = ap.parse_args(argv)
    if a.analyse:
        rows = [json.loads(line) for line in a.analyse.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        rows = measure(a.manifest, a.noisy, a.snr, a.noisy_limit, AsrOptions(runtime=a.runtime), a.out)
    print(format_analysis(analyse(rows, a.by_language)))


if __name__ == "__main__":
    main()
