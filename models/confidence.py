"""Low-confidence audio: when a transcript segment's text is too doubtful to judge an agent by.

The one place that states the rule (docs/asr.md, "Confidence into evidence", has the measurements behind
it). A segment is low-confidence when Whisper's own numbers for it cross any of these lines:

- `avg_logprob < LOW_AVG_LOGPROB`: the decoding window's mean token log-probability; Whisper retries such a
  window at a higher temperature, so one still below the line after every retry is text Whisper itself doubts;
- `no_speech_prob > HIGH_NO_SPEECH` while the words are not clearly heard either (`confidence < NO_SPEECH_WORD_PROB`):
  Whisper thought the window held no speech at all. Alone it is no sign of errors: on the clean dev calls, windows of
  short calm replies reach 0.74-0.80 with every word right; Whisper's own no-speech skip pairs it with a second
  condition too (a log-prob under -1);
- `compression_ratio > HIGH_COMPRESSION`: the window's text compresses like a repetition loop;
- `confidence < LOW_WORD_PROB`: the mean probability of the segment's own words. The three above are per 30 s
  window, shared by every utterance in it; this one is local to the utterance, and it is the one that moves
  when only part of a window is noisy.

A verdict is flagged when any segment its evidence overlaps in time (same speaker) is low-confidence. Segments
with no Whisper numbers (a reference transcript, a chat log: text that never was audio) are never
low-confidence, so verdicts on text-only input are never flagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from callqa.records import Evidence, Segment

# Whisper's own retry lines (callqa.models.runtimes: LOGPROB_THRESHOLD, GUARDS), kept equal to them on purpose:
# a segment past one of them is one Whisper could not fix by retrying.
LOW_AVG_LOGPROB = -1.0
HIGH_NO_SPEECH = 0.6
HIGH_COMPRESSION = 2.4
# mean word probability of the utterance (Segment.confidence)
LOW_WORD_PROB = 0.6
# the no-speech line counts only when the utterance's words are under this
NO_SPEECH_WORD_PROB = 0.7


def has_audio_confidence(seg: Segment) -> bool:
    """Whether the segment carries Whisper's numbers (it came from audio)."""
    return seg.avg_logprob is not None or seg.no_speech_prob is not None or seg.compression_ratio is not None


def low_confidence_reasons(seg: Segment) -> list[str]:
    """Why a segment is low-confidence audio, one short phrase per line crossed; [] when it is not (or has no
    Whisper numbers at all)."""
    if not has_audio_confidence(seg):
        return []
    out = []
    if seg.avg_logprob is not None and seg.avg_logprob < LOW_AVG_LOGPROB:
        out.append(f"avg log-prob {seg.avg_logprob:.2f} < {LOW_AVG_LOGPROB}")
    if (seg.no_speech_prob is not None and seg.no_speech_prob > HIGH_NO_SPEECH and seg.confidence is not None
            and seg.confidence < NO_SPEECH_WORD_PROB):
        out.append(f"no-speech prob {seg.no_speech_prob:.2f} > {HIGH_NO_SPEECH} with word prob {seg.confidence:.2f} "
                   f"< {NO_SPEECH_WORD_PROB}")
    if seg.compression_ratio is not None and seg.compression_ratio > HIGH_COMPRESSION:
        out.append(f"compression ratio {seg.compression_ratio:.2f} > {HIGH_COMPRESSION}")
    if seg.confidence is not None and seg.confidence < LOW_WORD_PROB:
        out.append(f"word prob {seg.confidence:.2f} < {LOW_WORD_PROB}")
    return out


def is_low_confidence(seg: Segment) -> bool:
    return bool(low_confidence_reasons(seg))


def _overlaps(seg: Segment, ev: Evidence) -> bool:
    if ev.speaker not in ("unknown", seg.speaker) and seg.speaker != "unknown":
        return False
    if ev.end <= ev.start:  # a point in time: the segment holding it
        return seg.start <= ev.start <= seg.end
    return seg.start < ev.end and ev.start < seg.end


def evidence_flag(segments: Sequence[Segment], evidence: Iterable[Evidence]) -> str | None:
    """The reason a verdict's evidence rests on low-confidence audio ("12.3-15.1 s: avg log-prob -1.24 < -1.0"),
    or None when it does not (no evidence, clean segments, or text that never was audio)."""
    found: list[str] = []
    for ev in evidence:
        for seg in segments:
            if not _overlaps(seg, ev):
                continue
            reasons = low_confidence_reasons(seg)
            if reasons:
                found.append(f"{seg.start:.1f}-{seg.end:.1f} s: {', '.join(reasons)}")
    return "; ".join(dict.fromkeys(found)) or None
