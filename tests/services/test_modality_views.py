"""Audio, tabular and series modalities on the service side: audio is stored as plain WAV
(no metadata chunk can carry a label), and a study refuses a view its model cannot give."""

from __future__ import annotations

import json

import numpy as np
import pytest

from annotations.services.datasets import dataset_import
from annotations.services.studies import ConditionSpec, StudyError, study_create
from tests.builders.studies import make_model
from workers.engine.audio import wav_bytes

pytestmark = pytest.mark.django_db


def _riff_chunks(data: bytes) -> list[bytes]:
    kinds, offset = [], 12
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset + 4 : offset + 8], "little")
        kinds.append(data[offset : offset + 4])
        offset += 8 + length + (length & 1)
    return kinds


def _wav_with_info(label: str) -> bytes:
    """A WAV file whose LIST/INFO chunk names ``label`` (as a tagging tool would write it)."""
    plain = wav_bytes(np.sin(np.arange(800) / 5) * 0.5, 8000)
    text = label.encode() + b"\x00"
    info = b"INFO" + b"INAM" + len(text).to_bytes(4, "little") + text + (b"\x00" if len(text) % 2 else b"")
    chunk = b"LIST" + len(info).to_bytes(4, "little") + info
    body = plain[12:] + chunk
    return b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WAVE" + body


def _sound_dataset(tmp_path, alice, n: int = 6):
    lines = []
    for k in range(n):
        (tmp_path / f"cat_{k}.wav").write_bytes(_wav_with_info(f"answer=cat{k}"))
        lines.append(
            json.dumps(
                {
                    "id": f"s{k}",
                    "audio": f"cat_{k}.wav",
                    "series": [k, 1, 2],
                    "tabular": {"loudness": k / 2},
                    "label": "cat" if k % 2 else "dog",
                }
            )
        )
    (tmp_path / "d.jsonl").write_text("\n".join(lines))
    return dataset_import(owner=alice, name="sounds", jsonl_path=tmp_path / "d.jsonl")


def test_audio_is_stored_as_plain_wav_under_a_hash_name(alice, tmp_path, media_root):
    planted = _wav_with_info("answer=cat0")
    assert _riff_chunks(planted) == [b"fmt ", b"data", b"LIST"]  # the source does carry the label
    dataset = _sound_dataset(tmp_path, alice)
    for item in dataset.items.all():
        stored = media_root / item.payload["audio"]
        data = stored.read_bytes()
        assert _riff_chunks(data) == [b"fmt ", b"data"] and b"answer" not in data
        assert "cat" not in stored.name and stored.suffix == ".wav"
        assert item.payload["tabular"] == {"loudness": int(item.external_id[1:]) / 2}


def test_a_study_refuses_a_view_of_a_modality_its_model_lacks(alice, tmp_path):
    dataset = _sound_dataset(tmp_path, alice)
    model = make_model(alice, name="sound", labels=("cat", "dog"), modalities=("audio", "series"))
    design = dict(
        owner=alice,
        dataset=dataset,
        model=model,
        n_items=4,
        items_per_participant=2,
        raters_per_item=1,
        seed=1,
        n_candidates=2,
    )
    with pytest.raises(
        StudyError, match=r"arm 'bars' shows 'table', but model 'sound' has no tabular modality.*audio, series"
    ):
        study_create(
            name="bad",
            conditions=[ConditionSpec(name="baseline"), ConditionSpec(name="bars", views=["table", "audio"])],
            **design,
        )
    study = study_create(
        name="good",
        conditions=[ConditionSpec(name="baseline"), ConditionSpec(name="time", views=["audio", "series"])],
        **design,
    )
    assert sorted(study.conditions.get(name="time").views) == ["audio", "series"]
