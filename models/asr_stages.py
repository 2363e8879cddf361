"""Where the time of the default faster-whisper path goes, stage by stage, on stereo calls (issue 15).

    python -m callqa.models.asr_stages --manifest ../shared/data/dev/calls.jsonl --limit 4

Per stage, wall and process-CPU seconds summed over the calls, per second of call audio: decoding the
file, Silero VAD (both channels), language id (once per call, 30 s of the agent side), and Whisper on each
channel's concatenated speech as the pipeline runs it (word timestamps on), then the same decode with word
timestamps off (what the alignment costs). Measurement only: changes nothing in the pipeline.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from callqa.models.asr import _GAP_JOIN_S, AsrOptions, _concat_speech, _pick_language, _prompt, channel_roles
from callqa.models.audio import load_audio
from callqa.models.runtimes import GUARDS, LOGPROB_THRESHOLD, TEMPERATURES, get_runtime
from callqa.models.vad import speech_spans


def _decode(runtime, audio, language: str, prompt: str | None, words: bool) -> int:
    segments, _ = runtime._model.transcribe(
        audio, language=language, beam_size=runtime._beam, vad_filter=False, word_timestamps=words,
        initial_prompt=prompt, condition_on_previous_text=False, temperature=list(TEMPERATURES),
        log_prob_threshold=LOGPROB_THRESHOLD, prompt_reset_on_temperature=0.5, **GUARDS)
    return sum(len(s.text) for s in segments)


def stages(manifest: Path, limit: int | None) -> dict:
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_lang: dict[str, list[dict]] = {}
    for r in rows:
        by_lang.setdefault(r["language"], []).append(r)
    picked = [r for pair in zip(*by_lang.values(), strict=False) for r in pair][:limit]
    opts = AsrOptions()
    runtime = get_runtime(opts)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    audio_s = 0.0

    def timed(name: str, fn):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        wall[name] = wall.get(name, 0.0) + time.perf_counter() - w
        cpu[name] = cpu.get(name, 0.0) + time.process_time() - c
        return out

    for row in picked:
        path = manifest.parent / (row.get("audio") or {}).get("stereo_16k", row.get("file", ""))
        audio = timed("decode", lambda p=path: load_audio(p))
        audio_s += audio.duration
        spans = timed("vad", lambda a=audio: [speech_spans(a.channels[i], opts.vad) for i in range(a.n_channels)])
        roles = channel_roles(audio.n_channels, 0)
        language, _ = timed("language", lambda a=audio, s=spans, r=roles: _pick_language(runtime, a, s, r, opts))
        prompt = _prompt(language, ())
        for i in range(audio.n_channels):
            speech = _concat_speech(audio.channels[i], spans[i], _GAP_JOIN_S)
            timed("whisper, word timestamps",
                  lambda x=speech, lg=language, pr=prompt: _decode(runtime, x, lg, pr, True))
            timed("whisper, no word timestamps",
                  lambda x=speech, lg=language, pr=prompt: _decode(runtime, x, lg, pr, False))
    return {"calls": [r["call_id"] for r in picked], "audio_s": round(audio_s, 1),
            "wall_per_audio_s": {k: round(v / audio_s, 4) for k, v in wall.items()},
            "cpu_per_audio_s": {k: round(v / audio_s, 4) for k, v in cpu.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m callqa.models.asr_stages", description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=4)
    a = ap.parse_args(argv)
    print(json.dumps(stages(a.manifest, a.limit), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
