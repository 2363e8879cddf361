"""Decode any common recording into 16 kHz float32 channels, and say clearly why when we cannot.

The container and codec are found from the bytes (FFmpeg's probe through PyAV), never from
the file extension. Bad input raises `AudioError` with a short machine-readable `reason`
(``empty``, ``not_audio``, ``corrupt``, ``no_audio_stream``) and a human message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
# A file whose decoded length is this much shorter than its header claims is flagged as truncated.
_TRUNCATION_TOLERANCE_S = 0.5


# Leading bytes of audio containers we recognise, to tell a damaged audio file from something else.
_AUDIO_MAGIC = (b"RIFF", b"RF64", b"fLaC", b"OggS", b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"FORM", b"caff")
# FFmpeg demuxers that accept arbitrary bytes (plain text) and are never a recording.
_NON_AUDIO_FORMATS = {"tty", "txt", "ansi", "bin", "image2", "srt", "ass", "webvtt", "jacosub"}


def _looks_like_audio(head: bytes) -> bool:
    return head.startswith(_AUDIO_MAGIC) or head[4:8] == b"ftyp" or head.startswith(b"\x1aE\xdf\xa3")


def _wav_claimed_duration(path: Path) -> float | None:
    """Duration a RIFF/WAVE header claims (data chunk size / byte rate), read from the header itself.

    FFmpeg estimates a cut WAV's length from the file size, which hides truncation.
    """
    with open(path, "rb") as f:
        head = f.read(4096)
    if not (head.startswith(b"RIFF") and head[8:12] == b"WAVE"):
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if cid == b"fmt " and pos + 20 <= len(head):
            byte_rate = int.from_bytes(head[pos + 16 : pos + 20], "little")
        elif cid == b"data":
            return size / byte_rate if byte_rate and size < 0xFFFFFFF0 else None
        pos += 8 + size + (size & 1)
    return None


class AudioError(Exception):
    """A recording that cannot be used; `reason` is a stable short code stored with the call."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True)
class DecodedAudio:
    channels: np.ndarray  # shape (n_channels, n_samples), float32 in [-1, 1], SAMPLE_RATE
    source_rate: int
    source_channels: int
    container: str
    codec: str
    header_duration: float | None  # what the container claims, when it says
    truncated: bool

    @property
    def duration(self) -> float:
        return self.channels.shape[1] / SAMPLE_RATE

    @property
    def n_channels(self) -> int:
        return self.channels.shape[0]


def _header_duration(container: av.container.InputContainer, stream: av.audio.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def load_audio(path: str | Path) -> DecodedAudio:
    """Decode `path` to float32 at 16 kHz, keeping up to two channels separate.

    Raises `AudioError` for an empty file, bytes that are not audio, a file FFmpeg cannot
    decode at all, or one without an audio stream. A file cut short (fewer samples than its
    header claims) decodes what exists and comes back with ``truncated=True``.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise AudioError("empty", "the file is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(16)
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as e:
        if _looks_like_audio(head):
            raise AudioError("corrupt", f"audio header is damaged or cut short ({size} bytes)") from e
        raise AudioError("not_audio", "not a recognisable audio file (content is not an audio format)") from e
    with container:
        if container.format.name in _NON_AUDIO_FORMATS:
            raise AudioError("not_audio", f"not an audio file (content looks like '{container.format.name}')")
        if not container.streams.audio:
            raise AudioError("no_audio_stream", f"container '{container.format.name}' has no audio stream")
        stream = container.streams.audio[0]
        n_src = stream.codec_context.channels or 1
        keep = min(n_src, 2)
        layout = "stereo" if keep == 2 else "mono"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        decode_error: str | None = None
        try:
            for frame in container.decode(stream):
                frame.pts = None
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except av.error.FFmpegError as e:  # damaged data part-way: keep what decoded
            decode_error = str(e)
            log.warning("%s: decoding stopped early: %s", path.name, e)
        header = _wav_claimed_duration(path) or _header_duration(container, stream)
        fmt, codec, src_rate = container.format.name, stream.codec_context.name, stream.codec_context.sample_rate
    if not chunks:
        raise AudioError("corrupt", f"no audio could be decoded ({decode_error or 'no frames'})")
    data = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    if data.shape[0] == 1 and n_src >= 2:  # defensive: resampler gave mono for a stereo stream
        data = np.repeat(data, 2, axis=0)
    decoded_s = data.shape[1] / SAMPLE_RATE
    truncated = decode_error is not None or (
        header is not None and header - decoded_s > _TRUNCATION_TOLERANCE_S
    )
    return DecodedAudio(
        channels=np.ascontiguousarray(data),
        source_rate=int(src_rate or 0),
        source_channels=int(n_src),
        container=fmt,
        codec=codec,
        header_duration=header,
        truncated=truncated,
    )
