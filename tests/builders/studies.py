"""Builders for service tests: small datasets on disk, and studies built row by row
(no adapter, no engine), ready to launch."""

from __future__ import annotations

import io
import json
from pathlib import Path

from django.conf import settings
from django.utils import timezone
from PIL import Image, PngImagePlugin

from annotations.models import Explanation, PrecomputeJob, Prediction, RegisteredModel, Study
from annotations.selectors.precompute import study_required_methods
from annotations.selectors.studies import study_explanation_targets
from annotations.services.datasets import dataset_import
from annotations.services.participants import (
    assignment_current,
    assignment_serve,
    learning_acknowledge,
    participant_consent,
    participant_enter,
    participant_start,
    response_submit,
)
from annotations.services.studies import ConditionSpec, study_create, study_launch, study_select_items

LABELS = ["red", "green", "blue", "yellow"]
COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 10)}

# A baseline and one explanation arm, the smallest design study_create accepts.
TWO_ARMS = [ConditionSpec("baseline"), ConditionSpec("heatmap", ["heatmap"])]


def png_bytes(
    colour=(200, 10, 10), size=(8, 8), *, text: dict[str, str] | None = None, icc_profile: bytes | None = None
) -> bytes:
    """A tiny PNG, optionally carrying tEXt chunks or an ICC profile."""
    img = Image.new("RGB", size, colour)
    kwargs = {}
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
        kwargs["pnginfo"] = info
    if icc_profile is not None:
        kwargs["icc_profile"] = icc_profile
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def write_dataset(
    directory: Path, n_items: int, *, labels=LABELS, name: str = "items.jsonl", extra_lines: list[str] | None = None
) -> Path:
    """Write ``n_items`` image+text lines (labels cycling through ``labels``). Image file names
    carry the label on purpose, so the tests can check the stored names do not."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "images").mkdir(exist_ok=True)
    lines = []
    for i in range(n_items):
        label = labels[i % len(labels)]
        # Vary the pixels per item so every stored file has its own content hash.
        colour = tuple((c + 7 * i) % 256 for c in COLOURS.get(label, (100, 100, 100)))
        relative = f"images/{label}_{i}.png"
        (directory / relative).write_bytes(png_bytes(colour, text={"Comment": f"answer={label}"}))
        lines.append(
            json.dumps({"id": f"q{i}", "image": relative, "text": f"what colour is square {i}?", "label": label})
        )
    lines.extend(extra_lines or [])
    path = directory / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_model(owner, *, name: str = "toy", labels=LABELS, modalities=("image", "text")) -> RegisteredModel:
    return RegisteredModel.objects.create(
        owner=owner, name=name, adapter_path="tests.toy:Adapter", labels=list(labels), modalities=list(modalities)
    )


def make_predictions(model: RegisteredModel, items, *, n_right: int, n_wrong: int | None = None) -> None:
    """Predictions for ``items`` (in order): the first ``n_right`` right, the next ``n_wrong``
    wrong (all the rest when None). Probabilities put the most mass on the predicted label."""
    items = list(items)
    n_wrong = len(items) - n_right if n_wrong is None else n_wrong
    labels = list(model.labels)
    rows = []
    for k, item in enumerate(items[: n_right + n_wrong]):
        gold = labels.index(item.gold_label)
        predicted = gold if k < n_right else (gold + 1) % len(labels)
        probabilities = [0.1 / (len(labels) - 1)] * len(labels)
        probabilities[predicted] = 0.9
        rows.append(Prediction(model=model, item=item, label=labels[predicted], probabilities=probabilities))
    Prediction.objects.bulk_create(rows)


def make_explanations(study: Study, *, skip: int = 0, status: str = Explanation.Status.DONE) -> int:
    """One explanation per candidate label per pool item and per method some arm needs
    (with the extra views it is served from), leaving out the first ``skip`` of each method.
    Image files are real PNGs under MEDIA_ROOT, so pages and media URLs can be fetched."""
    targets = [
        (item_id, label)
        for item_id, labels in sorted(study_explanation_targets(study=study).items())
        for label in labels
    ]
    rows = []
    for method, views in study_required_methods(study=study).items():
        for k, (item_id, label) in enumerate(targets[skip:]):
            image = _media_png(f"views/{method}-{item_id}-{k}.png", k)
            extra = {
                view: _media_png(f"views/{method}-{view}-{item_id}-{k}.png", k)
                for view in views
                if view in ("share", "top_pairs")
            }
            rows.append(
                Explanation(
                    model=study.model,
                    item_id=item_id,
                    method=method,
                    target_label=label,
                    status=status,
                    image_view=image,
                    extra_views=extra,
                    token_view=[{"text": "what", "background": "#f4a582", "foreground": "#000000", "title": "+0.5"}],
                )
            )
    Explanation.objects.bulk_create(rows)
    return len(targets)


def _media_png(relative: str, k: int) -> str:
    path = Path(settings.MEDIA_ROOT) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(((37 * k) % 256, 90, 160)))
    return relative


def make_ready(study: Study) -> Study:
    """A study whose explanations the factory stored by hand: mark it precomputed."""
    PrecomputeJob.objects.create(study=study, status=PrecomputeJob.Status.DONE, finished_at=timezone.now())
    Study.objects.filter(pk=study.pk).update(status=Study.Status.READY)
    study.refresh_from_db()
    assert study.status == Study.Status.READY
    return study


def build_study(
    owner,
    tmp_path: Path,
    *,
    n_dataset_items: int = 20,
    n_right: int | None = None,
    n_items: int = 10,
    items_per_participant: int = 4,
    raters_per_item: int = 2,
    conditions=None,
    seed: int = 7,
    n_candidates: int = 4,
    launch: bool = True,
    name: str = "study",
    lease_minutes: int = 60,
    survey: bool = False,
    **design,
) -> Study:
    """A dataset, a model with predictions (half right by default), a study with its pools
    and every explanation, made ready and (by default) launched. ``design``: further
    ``study_create`` options (learning_items, pretest, attention_checks, …). No survey
    unless asked, so a participant is done after their last answer."""
    jsonl = write_dataset(tmp_path / f"data-{name}", n_dataset_items)
    dataset = dataset_import(owner=owner, name=f"ds-{name}", jsonl_path=jsonl)
    model = make_model(owner, name=f"model-{name}")
    items = list(dataset.items.order_by("line_number"))
    make_predictions(model, items, n_right=n_dataset_items // 2 if n_right is None else n_right)
    study = study_create(
        owner=owner,
        name=name,
        dataset=dataset,
        model=model,
        conditions=conditions or TWO_ARMS,
        n_items=n_items,
        items_per_participant=items_per_participant,
        raters_per_item=raters_per_item,
        seed=seed,
        n_candidates=n_candidates,
        lease_minutes=lease_minutes,
        survey=survey,
        **design,
    )
    study_select_items(study=study)
    make_explanations(study)
    make_ready(study)
    if launch:
        study = study_launch(study=study)
    return study


def answer_all(participant, *, pick=lambda assignment: assignment.candidate_order[0], confidence: int = 3):
    """Go through every item the participant holds, as the pages would: acknowledge learning
    items, answer the others (attention checks as instructed). Returns the responses."""
    responses = []
    while (assignment := assignment_current(participant=participant)) is not None:
        assignment_serve(assignment=assignment)
        if assignment.phase == "learning":
            learning_acknowledge(participant=participant, assignment_public_id=assignment.public_id)
            continue
        guess = assignment.expected_answer if assignment.kind == "attention" else pick(assignment)
        responses.append(
            response_submit(
                participant=participant, assignment_public_id=assignment.public_id, guess=guess, confidence=confidence
            )
        )
    return responses


def enter_and_start(study: Study, platform_id: str, *, platform: str = "prolific"):
    participant = participant_enter(
        study=study,
        platform=platform,
        platform_id=platform_id,
        platform_data={"STUDY_ID": "s", "SESSION_ID": f"sess-{platform_id}"},
    )
    participant_consent(participant=participant)
    return participant_start(participant=participant)
