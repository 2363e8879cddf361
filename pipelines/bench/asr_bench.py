"""`callqa asr-bench`: speed, accuracy and speaker attribution of the Whisper runtimes, side by side.

For each runtime, on the manifest's calls: whole-call real-time factor (both channels, VAD and
diarization included), CER (Mandarin) and WER (English) against the reference `turns`, speaker
attribution accuracy on the stereo files and on the mono copies (`audio.mono_8k_telephone`), and
peak RSS. Each runtime runs in its own worker process (so its peak RSS is its own), and the
runtimes take turns call by call, so a busy machine slows them alike and the ratios stay fair.
Optionally (`verdicts=True`) the checklist verdicts of the runtimes' stereo transcripts are
compared with each other and with the manifest's labels.

A manifest of single-speaker clips (rows with `reference_text` instead of `turns`, such as
`shared/data/speech/manifest.jsonl`) is scored clip by clip: error rate, repeated phrases (n-grams
the hypothesis has more often than the reference) and invented tail (hypothesis tokens after the
last one aligned with the reference). The runtime `plain-faster-whisper` is the reference point:
faster-whisper's own `transcribe(vad_filter=True)` with its default decoding options, on the same
weights, the channels averaged, told the manifest's language; callqa's pipeline detects it.

Decoder hints are per call, as in `callqa run`: each worker gives a row's `product` (with `product_hints`) and its
`vocabulary`/`hotwords` columns to `callqa.models.hints.call_options`, so runtime specs such as
`faster-whisper:hints=off`, `faster-whisper:product_hints=true` and `faster-whisper:product_hints=true,hints=hotwords`
compare no hints, prompt hints and hotwords on the same calls in one run.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import resource
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
from callqa.models.asr import AsrOptions
from callqa.models.metrics import (
    CallScore,
    align,
    corpus_error_rate,
    corpus_speaker_accuracy,
    normalize,
    score_call,
    tokens,
)

from callqa.records import Transcript

log = logging.getLogger(__name__)

PLAIN = "plain-faster-whisper"  # reference point: faster-whisper's own VAD and decoding defaults
_HINT_COLUMNS = ("product", "vocabulary", "hotwords")  # what a row tells the decoder (`callqa.models.hints`)


class _PlainFasterWhisper:
    """faster-whisper as its README uses it, on the weights callqa loads: `transcribe(vad_filter=True)`."""

    name = PLAIN

    def __init__(self, opts: AsrOptions):
        import os

        from callqa.models.weights import BUNDLED_WHISPER, resolve_whisper_model
        from faster_whisper import WhisperModel

        self.model_name = str(opts.model or BUNDLED_WHISPER)
        self._beam = opts.beam_size
        self._model = WhisperModel(resolve_whisper_model(opts.model), device=opts.device,
                                   compute_type=opts.compute_type,
                                   cpu_threads=opts.cpu_threads or min(os.cpu_count() or 1, 8))

    def transcribe(self, audio: np.ndarray, language: str | None, prompt: str | None = None) -> list:
        segments, _ = self._model.transcribe(audio, language=language, beam_size=self._beam, vad_filter=True)
        return list(segments)

    def transcript(self, audio, language: str | None) -> Transcript:
        from callqa.records import Segment

        mono = audio.channels.mean(axis=0) if audio.n_channels > 1 else audio.channels[0]
        segs = self.transcribe(np.ascontiguousarray(mono, dtype=np.float32), language)
        return Transcript(tuple(Segment("unknown", s.start, s.end, s.text.strip()) for s in segs), language=language,
                          duration=audio.duration, runtime=self.name, model=self.model_name)


def _worker(conn, opts: AsrOptions) -> None:
    """One runtime in its own process: transcribe what the parent sends, report times and peak RSS."""
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    from callqa.models.asr import transcribe_audio
    from callqa.models.audio import SAMPLE_RATE, AudioError, load_audio
    from callqa.models.hints import call_options
    from callqa.models.runtimes import get_runtime
    from callqa.pipelines.run.timings import StageClock

    loading = StageClock()
    with loading.stage("load_s"):
        runtime = _PlainFasterWhisper(opts) if opts.runtime == PLAIN else get_runtime(opts)
        # one short decode before timing: first calls pay one-off costs (openai-whisper's word timing
        # compiles its DTW with numba, about 10 s here) that a batch pays once per process
        warm = np.sin(np.linspace(0, 2000, SAMPLE_RATE * 2, dtype=np.float32)) * 0.1
        runtime.transcribe(warm, "en", None)
    conn.send(loading.times)
    while (job := conn.recv()) is not None:
        path, agent_channel, language, row_hints = job
        try:
            audio = load_audio(path)
            call_opts = call_options(opts, row_hints)
            clock = StageClock()
            with clock.stage("wall_s", cpu="cpu_s"):
                if isinstance(runtime, _PlainFasterWhisper):
                    tr = runtime.transcript(audio, language)
                else:
                    tr = transcribe_audio(audio, runtime, call_opts, agent_channel)
            conn.send({"transcript": tr, **clock.times, "duration_s": audio.duration,
                       "terms": list(call_opts.vocabulary) if call_opts.hints != "off" else []})
        except AudioError as e:
            conn.send({"error": str(e)})
        except Exception as e:  # noqa: BLE001 - one bad file is an error row, not a dead worker
            conn.send({"error": f"{type(e).__name__}: {e}"})
    conn.send({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    conn.close()


@dataclass
class _Tally:
    load_s: float = 0.0
    wall: dict[str, float] = field(default_factory=lambda: {"stereo": 0.0, "mono": 0.0})
    cpu: dict[str, float] = field(default_factory=lambda: {"stereo": 0.0, "mono": 0.0})
    audio: dict[str, float] = field(default_factory=lambda: {"stereo": 0.0, "mono": 0.0})
    scores: dict[str, list[CallScore]] = field(default_factory=lambda: {"stereo": [], "mono": []})
    clips: dict[str, dict] = field(default_factory=dict)  # single-speaker clips, by file: clip_report()
    per_call: dict[str, float | None] = field(default_factory=dict)  # "D001 stereo": CER or WER
    terms: dict[str, list[str]] = field(default_factory=dict)  # call id: the decoder hints it was given
    hits: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # call id: term_hits() of its hint terms
    transcripts: dict[str, Transcript] = field(default_factory=dict)  # stereo, by call id
    errors: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0


def parse_runtime_spec(spec: str, base: AsrOptions) -> AsrOptions:
    """'faster-whisper' or 'faster-whisper:beam_size=1,cpu_threads=2': a runtime with option overrides,
    so two settings of one runtime can be compared in one run."""
    name, _, rest = spec.partition(":")
    types = {f.name: f.type for f in fields(AsrOptions)}
    kw: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, _, value = part.partition("=")
        if key not in types or key in ("runtime", "vad"):
            raise ValueError(f"unknown option {key!r} in runtime spec {spec!r}")
        kind = str(types[key])
        kw[key] = (int(value) if kind.startswith("int") else float(value) if kind.startswith("float")
                   else value.lower() in ("1", "true", "yes") if kind.startswith("bool") else value)
    return replace(base, runtime=name, **kw)


def _row_terms(row: dict) -> list[str]:
    """Every term a row could give the decoder (product, vocabulary, hotwords), to count for hint-less runtimes."""
    from callqa.models.hints import product_terms, split_terms, unique

    return list(unique([*split_terms(row.get("vocabulary")), *split_terms(row.get("hotwords")),
                        *product_terms(row.get("product"))]))


def _balanced(rows: list[dict], limit: int | None) -> list[dict]:
    """The first `limit` calls, taking languages in turn (so --limit 4 is 2 zh + 2 en)."""
    if not limit:
        return rows
    by_lang: dict[str, list[dict]] = {}
    for r in rows:
        by_lang.setdefault(str(r.get("language")), []).append(r)
    out: list[dict] = []
    queues = list(by_lang.values())
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


def repeated_ngrams(ref: list[str], hyp: list[str], n: int) -> list[str]:
    """n-grams (joined) that occur more often in the hypothesis than in the reference, and at least twice."""
    def counts(toks: list[str]) -> dict[tuple[str, ...], int]:
        out: dict[tuple[str, ...], int] = {}
        for i in range(len(toks) - n + 1):
            key = tuple(toks[i : i + n])
            out[key] = out.get(key, 0) + 1
        return out

    r = counts(ref)
    return [" ".join(g) for g, c in counts(hyp).items() if c >= 2 and c > r.get(g, 0)]


def invented_tail(ref: list[str], hyp: list[str]) -> list[str]:
    """Hypothesis tokens after the last one the minimum-edit alignment pairs with a reference token."""
    last = -1
    for i, j in align(ref, hyp):
        if i is not None and j is not None:
            last = j
    return hyp[last + 1 :]


def clip_report(reference: str, hypothesis: str, language: str) -> dict:
    """Error rate, repeated phrases and invented tail of one single-speaker clip.

    Repeats are counted on 3-word n-grams (English) or 4-character n-grams (Mandarin, about two words).
    """
    ref, hyp = tokens(reference, language), tokens(hypothesis, language)
    errors = sum(i is None or j is None or ref[i] != hyp[j] for i, j in align(ref, hyp))
    return {"language": language, "ref_tokens": len(ref), "errors": errors,
            "error_rate": round(errors / len(ref), 4) if ref else None,
            "repeats": repeated_ngrams(ref, hyp, 3 if language == "en" else 4),
            "tail": "".join(invented_tail(ref, hyp)) if language == "zh" else " ".join(invented_tail(ref, hyp)),
            "hypothesis": hypothesis}


def term_hits(terms: list[str], reference: str, hypothesis: str, language: str) -> dict[str, list[int]]:
    """{term: [times in the reference, times in the hypothesis]} for the hint terms the reference says, both sides
    normalised as CER/WER are ("13套" = "十三套"): where a hint can have helped or hurt."""
    ref, hyp = normalize(reference, language), normalize(hypothesis, language)
    out = {}
    for term in terms:
        t = normalize(term, language)
        if t and ref.count(t):
            out[term] = [ref.count(t), hyp.count(t)]
    return out


def _clip_rate(clips: dict[str, dict], lang: str) -> float | None:
    picked = [c for c in clips.values() if c["language"] == lang]
    total = sum(c["ref_tokens"] for c in picked)
    return sum(c["errors"] for c in picked) / total if total else None


def _jobs(rows: list[dict], base: Path) -> Iterator[tuple[dict, str, Path]]:
    for r in rows:
        if "reference_text" in r and not r.get("turns"):
            yield r, "clip", base / r["file"]
            continue
        audio = r.get("audio") or {}
        yield r, "stereo", base / (audio.get("stereo_16k") or r["file"])
        if audio.get("mono_8k_telephone"):
            mono = base / audio["mono_8k_telephone"]
            if mono.is_file():
                yield r, "mono", mono
            else:
                log.warning("asr-bench: %s: mono copy %s is missing: its mono figures are skipped",
                            r.get("call_id") or r["file"], mono)


class WorkerDied(RuntimeError):
    """A runtime's worker process ended without answering (killed, out of memory, crashed in native code)."""


def _recv(conn, proc, name: str, doing: str) -> dict:
    """The worker's next message; if the worker process dies first, `WorkerDied` naming what it was doing
    (a dead worker must never leave the parent waiting forever)."""
    while not conn.poll(0.5):
        if not proc.is_alive():
            raise WorkerDied(f"the {name} worker died (exit code {proc.exitcode}) while {doing}")
    try:
        return conn.recv()
    except EOFError:
        proc.join(timeout=5)
        raise WorkerDied(f"the {name} worker died (exit code {proc.exitcode}) while {doing}") from None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


def _summary(t: _Tally) -> dict:
    def err(kind: str, lang: str) -> float | None:
        return corpus_error_rate([s for s in t.scores[kind] if s.language == lang])

    return {
        "rtf": _r(t.wall["stereo"] / t.audio["stereo"] if t.audio["stereo"] else None),
        "cer_zh": _r(err("stereo", "zh")),
        "wer_en": _r(err("stereo", "en")),
        "speaker_acc_stereo": _r(corpus_speaker_accuracy(t.scores["stereo"])),
        "speaker_acc_mono": _r(corpus_speaker_accuracy(t.scores["mono"])),
        "peak_rss_mb": round(t.peak_rss_mb, 1),
        "cer_zh_clips": _r(_clip_rate(t.clips, "zh")),
        "wer_en_clips": _r(_clip_rate(t.clips, "en")),
        "rtf_clips": _r(sum(c["wall_s"] for c in t.clips.values()) / sum(c["duration_s"] for c in t.clips.values())
                        if t.clips else None),
        "clips": t.clips,
        "per_call": t.per_call,
        "terms": t.terms,
        "term_hits": t.hits,
        # extras: CPU seconds per audio second (less sensitive to other load), mono figures, counts
        "rtf_cpu": _r(t.cpu["stereo"] / t.audio["stereo"] if t.audio["stereo"] else None),
        "rtf_mono": _r(t.wall["mono"] / t.audio["mono"] if t.audio["mono"] else None),
        "cer_zh_mono": _r(err("mono", "zh")),
        "wer_en_mono": _r(err("mono", "en")),
        "calls": len(t.scores["stereo"]),
        "mono_calls": len(t.scores["mono"]),
        "audio_s": round(t.audio["stereo"], 1),
        "load_s": round(t.load_s, 2),
        "errors": t.errors,
    }


def _compare_verdicts(rows: list[dict], tallies: dict[str, _Tally]) -> dict[str, dict]:
    """Checklist verdicts per runtime: agreement with the labels, and calls/items where runtimes differ."""
    from callqa.pipelines.learn.evaluate import LABELS, predicted_label
    from callqa.pipelines.run.flows import make_engine
    from callqa.qa_rules.checklist import load_checklist

    checklist = load_checklist()
    engine = make_engine(checklist)
    names = list(tallies)
    predicted: dict[str, dict[tuple[str, str], bool | None]] = {}
    out: dict[str, dict] = {}
    for name, t in tallies.items():
        pred: dict[tuple[str, str], bool | None] = {}
        agree = total = 0
        for r in rows:
            cid = str(r.get("call_id") or r["file"])
            if cid not in t.transcripts:
                continue
            for v in engine.verdicts(t.transcripts[cid]):
                if v.item_id not in LABELS:
                    continue
                pred[(cid, v.item_id)] = predicted_label(checklist, v)
                if "labels" in r and v.item_id in r["labels"]:
                    total += 1
                    agree += pred[(cid, v.item_id)] == r["labels"][v.item_id]
        predicted[name] = pred
        out[name] = {"label_agreement": _r(agree / total if total else None)}
    first = names[0]
    for name in names[1:]:
        diffs = [f"{cid}:{item} {first}={predicted[first].get((cid, item))} {name}={v}"
                 for (cid, item), v in sorted(predicted[name].items()) if predicted[first].get((cid, item)) != v]
        out[name]["verdicts_differ_from_" + first] = diffs
    return out


def run_bench(
    manifest: str | Path,
    runtimes: list[str] | tuple[str, ...] = ("faster-whisper",),
    limit: int | None = None,
    options: AsrOptions | None = None,
    verdicts: bool = False,
    progress: bool = True,
) -> dict[str, dict]:
    """Benchmark each runtime on the manifest's calls; returns {runtime: {metric: value}}.

    A runtime may carry option overrides (`parse_runtime_spec`): "faster-whisper:beam_size=1".
    """
    manifest = Path(manifest)
    rows = [json.loads(x) for x in manifest.read_text(encoding="utf-8").splitlines() if x.strip()]
    rows = [r for r in _balanced(rows, limit) if r.get("turns") or r.get("reference_text")]
    if not rows:
        raise ValueError(f"{manifest}: no calls with reference `turns` (or clips with `reference_text`)")
    base = options or AsrOptions()
    ctx = mp.get_context("spawn")
    workers: dict[str, tuple] = {}
    tallies = {name: _Tally() for name in runtimes}
    for name in runtimes:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, parse_runtime_spec(name, base)), daemon=True)
        proc.start()
        child.close()  # only the worker holds its end: if it dies, our recv() sees the pipe close
        workers[name] = (proc, parent)
    try:
        return _bench(rows, manifest, runtimes, workers, tallies, verdicts, progress)
    finally:
        for proc, conn in workers.values():
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=5)
            conn.close()


def _bench(rows: list[dict], manifest: Path, runtimes, workers: dict[str, tuple], tallies: dict,
           verdicts: bool, progress: bool) -> dict[str, dict]:
    # models load one after another, so load times are not inflated by each other
    for name, (proc, conn) in workers.items():
        tallies[name].load_s = _recv(conn, proc, name, "loading its model")["load_s"]
    jobs = list(_jobs(rows, manifest.parent))
    from tqdm import tqdm

    for r, kind, path in tqdm(jobs, desc="asr-bench", unit="file", disable=not progress):
        cid = str(r.get("call_id") or r["file"])
        channel = 1 if str(r.get("agent_channel", "left")).lower() in ("right", "1") else 0
        for name, (proc, conn) in workers.items():
            try:
                conn.send((str(path), channel, r.get("language"), {k: r.get(k) for k in _HINT_COLUMNS}))
            except (BrokenPipeError, OSError):
                raise WorkerDied(f"the {name} worker died (exit code {proc.exitcode}) before {path}") from None
            res = _recv(conn, proc, name, f"transcribing {path}")
            t = tallies[name]
            if "error" in res:
                t.errors.append(f"{cid} {kind}: {res['error']}")
                continue
            if res.get("terms"):
                t.terms[cid] = res["terms"]
            terms = res.get("terms") or _row_terms(r)  # a runtime without hints: the terms the others got
            if terms and kind != "mono":
                ref = r.get("reference_text") or " ".join(str(x.get("text", "")) for x in r.get("turns") or [])
                hyp = " ".join(s.text for s in res["transcript"].segments)
                if hits := term_hits(terms, ref, hyp, str(r.get("language") or res["transcript"].language)):
                    t.hits[cid] = hits
            if kind == "clip":
                tr = res["transcript"]
                hyp = " ".join(s.text for s in tr.segments)
                t.clips[cid] = clip_report(r["reference_text"], hyp, str(r.get("language") or tr.language))
                t.clips[cid].update(detected_language=tr.language, wall_s=round(res["wall_s"], 2),
                                    duration_s=round(res["duration_s"], 2))
                continue
            t.wall[kind] += res["wall_s"]
            t.cpu[kind] += res["cpu_s"]
            t.audio[kind] += res["duration_s"]
            lang = str(r.get("language") or res["transcript"].language)
            t.scores[kind].append(score_call(r["turns"], res["transcript"], lang))
            t.per_call[f"{cid} {kind}"] = _r(t.scores[kind][-1].error_rate)
            if kind == "stereo":
                t.transcripts[cid] = res["transcript"]
    for name, (proc, conn) in workers.items():
        conn.send(None)
        tallies[name].peak_rss_mb = _recv(conn, proc, name, "finishing")["peak_rss_mb"]
        proc.join(timeout=30)
    result = {name: _summary(t) for name, t in tallies.items()}
    first = runtimes[0]
    for name in runtimes[1:]:
        result[name]["ratio_vs_" + first] = {
            k: _ratio(result[name][k], result[first][k])
            for k in ("rtf", "rtf_cpu", "peak_rss_mb", "cer_zh", "wer_en", "cer_zh_clips", "wer_en_clips",
                      "rtf_clips")
        }
    if verdicts:
        for name, extra in _compare_verdicts(rows, tallies).items():
            result[name].update(extra)
    return result


def format_bench(result: dict[str, dict]) -> str:
    """A Markdown table: one row per metric, one column per runtime (and ratios to the first)."""
    names = list(result)
    metrics = [("rtf", "whole-call RTF (wall)"), ("rtf_cpu", "CPU s per audio s"), ("cer_zh", "CER zh (stereo)"),
               ("wer_en", "WER en (stereo)"), ("speaker_acc_stereo", "speaker attribution, stereo"),
               ("speaker_acc_mono", "speaker attribution, mono 8 kHz"), ("rtf_mono", "RTF mono (with diarization)"),
               ("cer_zh_mono", "CER zh (mono)"), ("wer_en_mono", "WER en (mono)"), ("peak_rss_mb", "peak RSS MB"),
               ("cer_zh_clips", "CER zh (clips)"), ("wer_en_clips", "WER en (clips)"), ("rtf_clips", "RTF (clips)"),
               ("load_s", "model load s"), ("label_agreement", "verdicts = labels (share)")]
    head = ["metric", *names] + [f"{n} / {names[0]}" for n in names[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in metrics:
        vals = [result[n].get(key) for n in names]
        if all(v is None for v in vals):
            continue
        cells = ["" if v is None else f"{v:g}" for v in vals]
        cells += ["" if r is None else f"{r:.2f}" for r in (_ratio(v, vals[0]) for v in vals[1:])]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    first = result[names[0]]
    if first.get("clips"):
        lines += ["", "| clip | lang | " + " | ".join(f"{n} error | {n} repeats / tail" for n in names) + " |",
                  "|" + "---|" * (2 + 2 * len(names))]
        for clip, c in first["clips"].items():
            cells = [clip, c["language"]]
            for n in names:
                d = result[n]["clips"].get(clip)
                cells += ["", ""] if d is None else [f"{d['error_rate']:.3f}",
                                                     f"{len(d['repeats'])} / {d['tail'] or '-'}"]
            lines.append("| " + " | ".join(cells) + " |")
    if first.get("per_call"):
        lines += ["", "| call | " + " | ".join(f"{n} CER/WER" for n in names) + " |", "|" + "---|" * (1 + len(names))]
        for call in first["per_call"]:
            lines.append(f"| {call} | " + " | ".join(f"{result[n]['per_call'].get(call, '')}" for n in names) + " |")
    calls_with_hits = list(dict.fromkeys(c for n in names for c in (result[n].get("term_hits") or {})))
    if calls_with_hits:
        lines += ["", "| call: hint terms the reference says (times said) | " +
                  " | ".join(f"{n} written" for n in names) + " |", "|" + "---|" * (1 + len(names))]
        for call in calls_with_hits:
            said = next(result[n]["term_hits"][call] for n in names if call in (result[n].get("term_hits") or {}))
            head = f"{call}: " + ", ".join(f"{t} ({v[0]})" for t, v in said.items())
            cells = [", ".join(f"{t} {v[1]}" for t, v in (result[n].get("term_hits") or {}).get(call, {}).items())
                     for n in names]
            lines.append(f"| {head} | " + " | ".join(cells) + " |")
    lines.append(f"\n{first['calls']} calls ({first['audio_s']} s of audio), {first['mono_calls']} mono copies, "
                 f"{len(first.get('clips') or {})} clips.")
    for n in names[1:]:
        diffs = result[n].get("verdicts_differ_from_" + names[0])
        if diffs is not None:
            lines.append(f"verdicts where {n} differs from {names[0]}: {len(diffs)}" +
                         "".join(f"\n  {d}" for d in diffs))
    for n in names:
        for e in result[n]["errors"]:
            lines.append(f"{n}: {e}")
    return "\n".join(lines)
