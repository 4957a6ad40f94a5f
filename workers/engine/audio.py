"""Reading and writing audio as uncompressed PCM WAV, with the standard library only (no
Django, no codec). WAV is the one audio format a dataset may carry: every browser plays it,
and re-encoding it here keeps only the samples (no ``LIST``/``INFO`` chunks, which could
carry a title or a label)."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np

#: Longest clip accepted, in seconds: a participant listens to the whole of it.
MAX_SECONDS = 600.0


def wav_read(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples of a PCM WAV file, mixed down to mono, as float64 in [-1, 1], and the sample rate.

    Raises:
        ValueError: not a PCM WAV file (8, 16, 24 or 32 bit), empty, or longer than
            :data:`MAX_SECONDS`.
    """
    try:
        with wave.open(str(path), "rb") as handle:
            channels, width, rate = handle.getnchannels(), handle.getsampwidth(), handle.getframerate()
            frames = handle.getnframes()
            if rate <= 0 or frames <= 0:
                raise ValueError("no samples")
            if frames / rate > MAX_SECONDS:
                raise ValueError(f"{frames / rate:.0f} s is longer than {MAX_SECONDS:.0f} s")
            data = handle.readframes(frames)
    except (wave.Error, EOFError, OSError) as exc:
        raise ValueError(str(exc) or exc.__class__.__name__) from None
    if width == 1:  # 8-bit WAV is unsigned
        samples = (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width in (2, 4):
        dtype = np.int16 if width == 2 else np.int32
        samples = np.frombuffer(data, dtype=f"<{np.dtype(dtype).str[1:]}").astype(np.float64) / float(
            np.iinfo(dtype).max + 1
        )
    elif width == 3:
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        samples = value.astype(np.float64) / float(1 << 23)
    else:
        raise ValueError(f"{8 * width}-bit samples are not supported")
    samples = samples[: (samples.size // channels) * channels].reshape(-1, channels).mean(axis=1)
    return samples, rate


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """Mono 16-bit PCM WAV of ``samples`` (float, clipped to [-1, 1]); nothing but the
    ``fmt`` and ``data`` chunks."""
    values = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    pcm = np.rint(values * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(int(rate))
        handle.writeframes(pcm.tobytes())
    return buffer.getvalue()
