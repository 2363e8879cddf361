"""Benchmarks of the mono-call speaker layer, without ASR: speaker encoders side by side, and agent identification.

`python -m callqa.models.diarize_bench voices`: diarizes mono versions of the stereo dev calls with each
speaker encoder and scores who-speaks-when against the reference turns' times (the stereo channels are
the truth). Mono versions: the manifest's 8 kHz telephone copies where there are some (`mono_8k_telephone`),
and for every call the two channels mixed and passed through 8 kHz (`--mix`). Per call and overall:

- `voice_acc`: share of 0.1 s ticks inside reference turns whose diarized voice maps to the right role,
  under the better of the two voice→role mappings (diarization alone);
- `role_acc`: the same with the mapping `agent_label` picks from the reference turns' texts, each turn
  given the voice that holds most of its ticks (diarization plus agent identification, no ASR errors).

`python -m callqa.models.diarize_bench pairs --manifest ../shared/data/speech/manifest.jsonl`: two real
voices in one mono channel, taking turns: the pieces of two same-language human clips interleaved (`bench_pairs`).

`python -m callqa.models.diarize_bench mono-asr --manifest ../shared/data/dev/calls.jsonl`: the whole speech
pipeline (faster-whisper, default options) on the mono copies, once per encoder; speaker attribution as
`callqa asr-bench` reports it (`speaker_acc_mono`).

`python -m callqa.models.diarize_bench roles FILE...`: agent identification on text dialogues (rows with
`turns` of `speaker`/`text`): a dialogue counts as right when `agent_label` finds the agent with either
voice label for it. Prints counts only (never the dialogues' text).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from callqa.models.audio import SAMPLE_RATE, load_audio
from callqa.models.diarize import SpeakerTurn, agent_label, diarize, label_at
from callqa.models.speaker_encoder import ENCODERS

_TICK_S = 0.1


def telephone_mix(channels: np.ndarray) -> np.ndarray:
    """Both channels of a stereo call mixed to one, passed through 8 kHz (the band of a phone line)."""
    from scipy.signal import resample_poly

    mono = channels.mean(axis=0) if channels.ndim == 2 else channels
    return resample_poly(resample_poly(mono, 1, 2), 2, 1).astype(np.float32)[: mono.shape[-1]]


def _ticks(turns: list[dict]) -> list[tuple[int, float]]:
    out = []
    for i, t in enumerate(turns):
        for x in np.arange(t["start"] + _TICK_S / 2, t["end"], _TICK_S):
            out.append((i, float(x)))
    return out


def score_voices(ref_turns: list[dict], hyp: list[SpeakerTurn]) -> dict[str, float]:
    """`voice_acc` and `role_acc` (see the module doc) of one call's diarization."""
    ticks = _ticks(ref_turns)
    labels = [label_at(hyp, t) for _, t in ticks]
    is_agent = [ref_turns[i]["speaker"] == "agent" for i, _ in ticks]
    hits = {v: sum((lab == v) == a for lab, a in zip(labels, is_agent, strict=True)) for v in (0, 1)}
    n = max(1, len(ticks))
    # each reference turn's voice: the one holding most of its ticks
    votes: dict[int, list[int]] = {}
    for (i, _), lab in zip(ticks, labels, strict=True):
        votes.setdefault(i, []).append(0 if lab is None else lab)
    texts = [(max((0, 1), key=votes[i].count), t["text"]) for i, t in enumerate(ref_turns) if i in votes]
    picked = agent_label(texts) if len({v for v, _ in texts}) == 2 else max(hits, key=lambda v: hits[v])
    return {"voice_acc": max(hits.values()) / n, "role_acc": hits[picked] / n, "ticks": float(len(ticks))}


def bench_voices(manifest: Path, encoders: list[str], mix: bool, limit: int | None) -> dict:
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:limit] if limit else rows
    base = manifest.parent
    result: dict = {"calls": {}, "overall": {}, "seconds": {e: 0.0 for e in encoders}, "audio_s": {}}
    for row in rows:
        audio = row.get("audio") or {}
        versions: list[tuple[str, np.ndarray]] = []
        if audio.get("mono_8k_telephone") and (base / audio["mono_8k_telephone"]).is_file():
            versions.append(("8k", load_audio(base / audio["mono_8k_telephone"]).channels[0]))
        if mix:
            stereo = load_audio(base / (audio.get("stereo_16k") or row["file"]))
            versions.append(("mix", telephone_mix(stereo.channels)))
        for kind, wav in versions:
            key = f"{row['call_id']} {kind}"
            result["audio_s"][kind] = result["audio_s"].get(kind, 0.0) + wav.size / SAMPLE_RATE
            for enc in encoders:
                t0 = time.perf_counter()
                hyp = diarize(wav, encoder=enc)
                result["seconds"][enc] += time.perf_counter() - t0
                result["calls"].setdefault(key, {})[enc] = score_voices(row["turns"], hyp)
            print(key, {e: round(result["calls"][key][e]["role_acc"], 3) for e in encoders}, file=sys.stderr)
    for kind in sorted(result["audio_s"]):
        for enc in encoders:
            scores = [c[enc] for k, c in result["calls"].items() if k.endswith(" " + kind)]
            total = sum(s["ticks"] for s in scores)
            result["overall"][f"{kind} {enc}"] = {
                m: round(sum(s[m] * s["ticks"] for s in scores) / total, 4) for m in ("voice_acc", "role_acc")
            } | {"calls": len(scores), "calls_below_0.9": sum(s["role_acc"] < 0.9 for s in scores)}
    return result


def _chunks(wav: np.ndarray, min_s: float = 1.5) -> list[np.ndarray]:
    """A clip cut at its fine-VAD pauses into pieces of at least `min_s` (the last may be shorter)."""
    from callqa.models.diarize import DIARIZATION_VAD
    from callqa.models.vad import speech_spans

    out: list[np.ndarray] = []
    start = None
    for sp in speech_spans(wav, DIARIZATION_VAD):
        start = sp.start if start is None else start
        if sp.end - start >= min_s:
            out.append(wav[int(start * SAMPLE_RATE) : int(sp.end * SAMPLE_RATE)])
            start = None
    if start is not None:
        out.append(wav[int(start * SAMPLE_RATE) :])
    return out


def bench_pairs(manifest: Path, encoders: list[str], gap_s: float = 0.4, only: tuple[str, ...] = ()) -> dict:
    """Two real voices in one mono channel: for each pair of same-language clips, their pieces taken in turn
    (A B A B ..., `gap_s` apart, through 8 kHz), diarized; `voice_acc` as in `score_voices`. `only`: just the
    pairs of these files."""
    from itertools import combinations

    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    clips = {r["file"]: (r["language"], _chunks(load_audio(manifest.parent / r["file"]).channels.mean(axis=0)))
             for r in rows}
    result: dict = {"pairs": {}, "overall": {}}
    for a, b in combinations(sorted(clips), 2):
        if clips[a][0] != clips[b][0] or (only and not {a, b} <= set(only)):
            continue
        parts: list[np.ndarray] = []
        turns: list[dict] = []
        t = 0.0
        pa, pb = clips[a][1], clips[b][1]
        for k in range(max(len(pa), len(pb))):
            for who, pieces in (("agent", pa), ("customer", pb)):
                if k < len(pieces):
                    parts += [pieces[k], np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.float32)]
                    turns.append({"speaker": who, "start": t, "end": t + pieces[k].size / SAMPLE_RATE, "text": ""})
                    t += pieces[k].size / SAMPLE_RATE + gap_s
        wav = telephone_mix(np.concatenate(parts))
        key = f"{a} + {b}"
        result["pairs"][key] = {enc: round(score_voices(turns, diarize(wav, encoder=enc))["voice_acc"], 4)
                                for enc in encoders} | {"turns": len(turns), "seconds": round(t, 1)}
        print(key, result["pairs"][key], file=sys.stderr)
    for enc in encoders:
        accs = [p[enc] for p in result["pairs"].values()]
        result["overall"][enc] = {"mean_voice_acc": round(float(np.mean(accs)), 4),
                                  "pairs_below_0.9": sum(x < 0.9 for x in accs), "pairs": len(accs)}
    return result


def bench_mono_asr(manifest: Path, encoders: list[str], limit: int | None) -> dict:
    """The whole speech pipeline on the manifest's mono copies, once per speaker encoder: speaker attribution
    of the transcript's words (`callqa.models.metrics`, as `callqa asr-bench` scores it) and diarization time."""
    from dataclasses import replace

    from callqa.models.asr import AsrOptions, transcribe_audio
    from callqa.models.metrics import corpus_speaker_accuracy, score_call
    from callqa.models.runtimes import get_runtime

    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if (r.get("audio") or {}).get("mono_8k_telephone")][:limit]
    base_opts = AsrOptions()
    runtime = get_runtime(base_opts)
    scores: dict[str, list] = {e: [] for e in encoders}
    diar_s = {e: 0.0 for e in encoders}
    calls: dict[str, dict] = {}
    for row in rows:
        audio = load_audio(manifest.parent / row["audio"]["mono_8k_telephone"])
        for enc in encoders:
            tr = transcribe_audio(audio, runtime, replace(base_opts, speaker_encoder=enc))
            sc = score_call(row["turns"], tr, row["language"])
            scores[enc].append(sc)
            diar_s[enc] += tr.timings["diarize"]
            calls.setdefault(row["call_id"], {})[enc] = round(sc.speaker_accuracy, 4)
        print(row["call_id"], calls[row["call_id"]], file=sys.stderr)
    audio_s = sum(r.get("duration_s", 0.0) for r in rows)
    return {"calls": calls, "overall": {e: {"speaker_acc_mono": round(corpus_speaker_accuracy(scores[e]) or 0.0, 4),
                                            "diarize_s_per_audio_s": round(diar_s[e] / audio_s, 4) if audio_s else None}
                                        for e in encoders}}


def bench_roles(paths: list[Path]) -> dict[str, dict[str, int]]:
    """Agent found in how many text dialogues of each file (with either voice label for the agent)."""
    out = {}
    for path in paths:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        right = 0
        for row in rows:
            ok = True
            for agent_voice in (0, 1):
                texts = [(agent_voice if t["speaker"] == "agent" else 1 - agent_voice, t["text"]) for t in row["turns"]]
                ok &= agent_label(texts) == agent_voice
            right += ok
        out[str(path)] = {"right": right, "dialogues": len(rows)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m callqa.models.diarize_bench", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    v = sub.add_parser("voices", help="speaker encoders side by side on mono versions of stereo calls")
    v.add_argument("--manifest", type=Path, required=True)
    v.add_argument("--encoder", action="append", choices=ENCODERS, help="repeatable; default: all")
    v.add_argument("--mix", action="store_true", help="also every call's channels mixed through 8 kHz")
    v.add_argument("--limit", type=int)
    p = sub.add_parser("pairs", help="speaker encoders on two real voices (clips of a speech manifest) in turn")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--encoder", action="append", choices=ENCODERS, help="repeatable; default: all")
    m = sub.add_parser("mono-asr", help="the whole pipeline on the mono copies, once per speaker encoder")
    m.add_argument("--manifest", type=Path, required=True)
    m.add_argument("--encoder", action="append", choices=ENCODERS, help="repeatable; default: all")
    m.add_argument("--limit", type=int)
    r = sub.add_parser("roles", help="agent identification on text dialogues")
    r.add_argument("files", type=Path, nargs="+")
    a = ap.parse_args(argv)
    if a.what == "voices":
        res = bench_voices(a.manifest, a.encoder or list(ENCODERS), a.mix, a.limit)
        print(json.dumps({k: res[k] for k in ("overall", "seconds", "audio_s")}, indent=1))
    elif a.what == "mono-asr":
        print(json.dumps(bench_mono_asr(a.manifest, a.encoder or list(ENCODERS), a.limit), indent=1))
    elif a.what == "pairs":
        print(json.dumps(bench_pairs(a.manifest, a.encoder or list(ENCODERS)), indent=1))
    else:
        print(json.dumps(bench_roles(a.files), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
