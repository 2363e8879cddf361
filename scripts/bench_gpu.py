"""GPU benchmark of the openai-whisper runtime on the bundled Whisper base weights.

Runs where only torch + openai-whisper exist (a lent GPU machine): it needs the converted
checkpoint (`callqa.models.ct2_convert.openai_whisper_checkpoint()`) and an .npz of int16 stereo
calls at 16 kHz (`--audio`, with a JSON sidecar of call_id/language/duration). Prints one table
comparing precisions and devices side by side in the same run, per whole call (both channels).

    python scripts/bench_gpu.py --checkpoint base.pt --audio calls.npz --configs cuda:fp16 cuda:fp32
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import whisper


def run(model, audio: np.ndarray, language: str, fp16: bool) -> list[str]:
    texts = []
    for ch in audio:
        result = model.transcribe(ch.astype(np.float32) / 32767, language=language, fp16=fp16, beam_size=5,
                                  best_of=5, condition_on_previous_text=False)
        texts.append(result["text"])
    return texts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--configs", nargs="+", default=["cuda:fp16", "cuda:fp32"], help="device:precision pairs")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args()
    calls = np.load(args.audio)
    meta = {m["call_id"]: m for m in json.loads(Path(args.audio).with_suffix(".json").read_text())}
    total_audio = sum(meta[c]["duration"] for c in calls.files)
    results = {}
    for cfg in args.configs:
        device, precision = cfg.split(":")
        model = whisper.load_model(args.checkpoint, device=device)
        run(model, calls[calls.files[0]][:, : 16000 * 5], meta[calls.files[0]]["language"], precision == "fp16")  # warm
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        texts = {c: run(model, calls[c], meta[c]["language"], precision == "fp16") for c in calls.files}
        if device == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0
        results[cfg] = {"wall_s": wall, "rtf": wall / total_audio, "peak_gpu_mb": peak, "texts": texts}
        del model
    base = results[args.configs[0]]["wall_s"]
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"{len(calls.files)} calls, {total_audio:.0f} s of audio, both channels each, beam 5; GPU: {name}")
    print(f"{'config':12s} {'wall s':>8s} {'RTF':>7s} {'x faster than real time':>24s} {'vs first':>9s} "
          f"{'peak GPU MB':>12s}")
    for cfg, r in results.items():
        print(f"{cfg:12s} {r['wall_s']:8.1f} {r['rtf']:7.4f} {1 / r['rtf']:24.1f} {r['wall_s'] / base:9.2f} "
              f"{r['peak_gpu_mb']:12.0f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
