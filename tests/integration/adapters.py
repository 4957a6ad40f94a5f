"""Adapters registered by dotted path like any user adapter: ones that misbehave on purpose,
and one over audio and a time series (with the dataset it reads)."""

import time

import numpy as np
import torch

from workers.engine.demo.adapter import DemoAdapter


class GradientlessAdapter(DemoAdapter):
    """Passes the registration check (a no-grad forward) but fails every gradient method,
    as a model with a non-differentiable op would."""

    def head(self, *embedded, batch):
        if torch.is_grad_enabled():
            raise RuntimeError("this model cannot be differentiated (deliberate test failure)")
        return super().head(*embedded, batch=batch)


class BrokenAfterCheckAdapter(DemoAdapter):
    """Passes the one-item registration check, then fails on any batch larger than one, as a
    model that breaks on real data would."""

    def encode(self, items):
        if len(items) > 1:
            raise RuntimeError("this adapter is deliberately broken on real batches")
        return super().encode(items)


class SlowAdapter(DemoAdapter):
    """Too slow for any time limit on a batch of more than ``SLOW_ABOVE`` distinct items, quick
    on smaller ones (the one-item registration check among them): a chunk of such a batch can
    only finish by being split. Whether it outgrows the limit depends on the batch, never on
    how loaded the machine is. Distinct items, so that only the predictions outgrow it in the
    fault test: an explanation chunk of 8 rows (4 items, 2 answers each) takes the same path
    through the split, and waiting out the limit a second time would prove nothing more."""

    SLOW_ABOVE = 4

    def encode(self, items):
        if len({item.get("id") for item in items}) > self.SLOW_ABOVE:
            time.sleep(600)  # the task's soft time limit interrupts this
        return super().encode(items)


class SoundSeriesAdapter:
    """A linear model over an audio clip (its energy in 8 equal time spans) and a series of
    16 numbers, for studies that show the audio and series views. Labels are instrument
    names, words no page prints by itself."""

    labels = ("ukulele", "oboe", "tuba")
    modalities = ("audio", "series")
    SPANS, STEPS = 8, 16

    def load(self, device):
        generator = torch.Generator().manual_seed(5)
        self.w_audio = torch.randn(len(self.labels), self.SPANS, generator=generator, dtype=torch.float64)
        self.w_series = torch.randn(len(self.labels), self.STEPS, generator=generator, dtype=torch.float64)

    def encode(self, items):
        from workers.engine.audio import wav_read

        energy, series = [], []
        for item in items:
            samples, _rate = wav_read(item["audio"])
            spans = list(np.array_split(samples, self.SPANS))
            energy.append([float(np.sqrt(np.mean(part**2))) if part.size else 0.0 for part in spans])
            values = [float(v) for v in item["series"]][: self.STEPS]
            series.append(values + [0.0] * (self.STEPS - len(values)))
        return {
            "audio": torch.tensor(energy, dtype=torch.float64).reshape(-1, self.SPANS),
            "series": torch.tensor(series, dtype=torch.float64).reshape(-1, self.STEPS),
            "n": len(items),
        }

    def embed(self, batch):
        return batch["audio"].clone(), batch["series"].clone()

    def head(self, audio, series, *, batch):
        return 4.0 * audio @ self.w_audio.T + 0.3 * series @ self.w_series.T

    def baselines(self, batch):
        return torch.zeros_like(batch["audio"]), torch.zeros_like(batch["series"])

    def feature_groups(self, batch):
        n = batch["n"]
        return (
            torch.arange(self.SPANS).view(1, -1).expand(n, -1).clone(),
            torch.arange(self.SPANS, self.SPANS + self.STEPS).view(1, -1).expand(n, -1).clone(),
        )

    def describe_groups(self, batch):
        from workers.engine.adapter import GroupInfo

        audio = [GroupInfo(group_id=k, kind="time span") for k in range(self.SPANS)]
        series = [GroupInfo(group_id=self.SPANS + k, kind="step") for k in range(self.STEPS)]
        return [[list(audio), list(series)] for _ in range(batch["n"])]


def sound_series_dataset(out_dir, *, n_items: int = 8, seed: int = 0):
    """``sounds.jsonl``: per item a WAV clip (a tone that swells in one span) and a series."""
    import json
    from pathlib import Path

    from workers.engine.audio import wav_bytes

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rate = 4000
    lines = []
    for k in range(n_items):
        t = np.arange(rate) / rate
        envelope = 0.2 + 0.7 * np.exp(-((t - rng.uniform(0.1, 0.9)) ** 2) / 0.01)
        (out_dir / f"clip{k}.wav").write_bytes(wav_bytes(envelope * np.sin(2 * np.pi * 220 * t), rate))
        series = np.round(np.cumsum(rng.normal(0, 1, SoundSeriesAdapter.STEPS)), 2).tolist()
        lines.append(
            {"id": f"s{k}", "audio": f"clip{k}.wav", "series": series, "label": SoundSeriesAdapter.labels[k % 3]}
        )
    path = out_dir / "sounds.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path
