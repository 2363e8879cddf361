"""Decoding by content, and a clear reason for every kind of bad input."""

from __future__ import annotations

import av
import numpy as np
import pytest
from callqa.models.audio import SAMPLE_RATE, AudioError, load_audio

from tests.conftest import BAD, DEV


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty_0byte.wav", "empty"),
        ("text_not_audio.wav", "not_audio"),
        ("truncated_header.wav", "corrupt"),
    ],
)
def test_bad_files_raise_a_reason(shared_data, name, reason):
    with pytest.raises(AudioError) as err:
        load_audio(BAD / name)
    assert err.value.reason == reason
    assert err.value.message


def test_truncated_data_decodes_what_exists_and_is_flagged(shared_data):
    a = load_audio(BAD / "truncated_data.wav")
    assert a.truncated
    assert a.header_duration == pytest.approx(76.38, abs=0.1)
    assert 20 < a.duration < 40  # ~40% of the claimed length, never the header's 76 s


def test_mp3_and_unknown_extension_are_sniffed_by_content(shared_data):
    mp3 = load_audio(BAD / "D001.mp3")
    rec = load_audio(BAD / "D002.rec")
    assert (mp3.container, mp3.n_channels) == ("mp3", 2)
    assert rec.container == "wav" and rec.n_channels == 2 and not rec.truncated
    flac = load_audio(DEV / "audio" / "D001.flac")
    assert abs(mp3.duration - flac.duration) < 0.1


def test_8k_mono_is_resampled_to_16k(shared_data):
    a = load_audio(DEV / "audio" / "D001.8k.flac")
    assert a.source_rate == 8000 and a.n_channels == 1
    assert a.duration == pytest.approx(76.38, abs=0.1)
    assert a.channels.dtype == np.float32


@pytest.mark.parametrize(("codec", "fmt", "suffix"), [("libopus", "ogg", ".bin"), ("aac", "mp4", ".m4a")])
def test_other_codecs_any_rate(tmp_path, codec, fmt, suffix):
    """OGG/Opus and M4A/AAC at 48 kHz, written with FFmpeg, decode to 16 kHz stereo."""
    rate = 48_000
    t = np.arange(rate * 2) / rate
    left, right = 0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)
    path = tmp_path / f"tone{suffix}"
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([left, right]).astype(np.float32), format="fltp", layout="stereo")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    a = load_audio(path)
    assert a.n_channels == 2 and a.source_rate == rate
    assert a.duration == pytest.approx(2.0, abs=0.1)
    # the channels stay separate: the left tone is not the right tone
    assert np.corrcoef(a.channels[0, 8000:24000], a.channels[1, 8000:24000])[0, 1] < 0.5
    assert SAMPLE_RATE == 16_000
