"""Checking a Hugging Face model folder and the adapter options, before any weight is read.

Everything here reads ``config.json`` as plain JSON, so a wrong path, a hub ID, a folder of
the wrong kind or a label the model does not know is refused in milliseconds, with one line
naming the problem, without importing ``transformers``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.engine.adapter import AdapterError

# kind -> the architectures (``config.json`` "architectures") an adapter of that kind reads.
KINDS: dict[str, tuple[str, ...]] = {
    "vqa": ("ViltForQuestionAnswering",),
    "zero-shot": ("CLIPModel",),
    "classify": ("ViltForImagesAndTextClassification",),
}
KIND_HELP = {
    "vqa": "vision-language question answering (ViLT: ViltForQuestionAnswering)",
    "zero-shot": "CLIP-style zero-shot classification with label prompts (CLIPModel)",
    "classify": "image-text classification with a classification head (ViLT: ViltForImagesAndTextClassification)",
}
DEFAULT_PROMPT = "{text} {label}"
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


@dataclass(frozen=True)
class HFOptions:
    """Validated options of one Hugging Face adapter.

    Attributes:
        path: the model folder, absolute.
        kind: one of :data:`KINDS`.
        architecture: the folder's architecture (``config.json``).
        labels: the class names, in logit order: the chosen subset of the model's own labels
            (vqa, classify) or the label set of the prompts (zero-shot).
        label_indices: for vqa/classify, each label's column in the model's own logits.
        prompt: zero-shot only: the template with ``{text}`` and ``{label}``.
        image_size: the side of the square every image is resized to, or None for the model's.
    """

    path: Path
    kind: str
    architecture: str
    labels: tuple[str, ...]
    label_indices: tuple[int, ...] = ()
    prompt: str = DEFAULT_PROMPT
    image_size: int | None = None
    config: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The options as stored with a registered model (what :func:`hf_options` takes back)."""
        out: dict[str, Any] = {"path": str(self.path), "kind": self.kind}
        if self.kind == "zero-shot" or self.labels != _own_labels(self.config):
            out["labels"] = list(self.labels)
        if self.kind == "zero-shot":
            out["prompt"] = self.prompt
        if self.image_size is not None:
            out["image_size"] = self.image_size
        return out


def model_folder_check(path: str | Path) -> Path:
    """The absolute folder ``path`` names, if it holds a model (``config.json``). Raises
    :class:`AdapterError` with one line otherwise; a hub ID is never looked up."""
    text = str(path).strip()
    if not text:
        raise AdapterError("the model folder path is empty")
    folder = Path(text).expanduser()
    if not folder.exists():
        hint = ""
        if not folder.is_absolute() and _HUB_ID.fullmatch(text):
            hint = (
                " (a hub ID is never downloaded: fetch the model once on a machine with internet, "
                "e.g. with `huggingface-cli download ID --local-dir DIR`, and pass DIR)"
            )
        raise AdapterError(f"{text}: not a local model folder: no such file or folder{hint}")
    if not folder.is_dir():
        raise AdapterError(f"{text}: not a local model folder: it is a file (give the folder that holds config.json)")
    if not (folder / "config.json").is_file():
        raise AdapterError(
            f"{text}: not a local model folder: it has no config.json (save the model with save_pretrained(folder))"
        )
    return Path(os.path.abspath(folder))  # as given, made absolute: the same path on every worker


def folder_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of ``folder`` as a dict; :class:`AdapterError` when it is not JSON."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{folder}/config.json: cannot read it: {exc}") from exc
    if not isinstance(config, dict):
        raise AdapterError(f"{folder}/config.json: not a JSON object")
    return config


def folder_kind(config: dict[str, Any]) -> str | None:
    """The kind whose architecture ``config`` declares, or None."""
    for architecture in config.get("architectures") or []:
        for kind, accepted in KINDS.items():
            if architecture in accepted:
                return kind
    return None


def _describe(config: dict[str, Any]) -> str:
    architectures = config.get("architectures") or []
    what = ", ".join(str(a) for a in architectures) or "no architecture"
    return f"{what} (model_type {config.get('model_type', '?')!r})"


def _own_labels(config: dict[str, Any]) -> tuple[str, ...]:
    """The model's labels in logit order, from ``id2label`` (keys are strings in JSON)."""
    id2label = config.get("id2label") or {}
    try:
        by_index = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError, AttributeError):
        raise AdapterError("config.json: id2label must map class indices to names") from None
    if sorted(by_index) != list(range(len(by_index))):
        raise AdapterError("config.json: id2label must number the classes 0..n-1")
    return tuple(by_index[k] for k in range(len(by_index)))


def _label_list(labels: Any) -> tuple[str, ...]:
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, (list, tuple)) or not all(isinstance(x, str) for x in labels):
        raise AdapterError("labels must be a list of class names")
    cleaned = tuple(x.strip() for x in labels)
    if any(not x for x in cleaned):
        raise AdapterError("labels must not be empty strings")
    dupes = sorted({x for x in cleaned if cleaned.count(x) > 1})
    if dupes:
        raise AdapterError(f"labels are repeated: {', '.join(dupes)}")
    return cleaned


def _prompt_check(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise AdapterError("prompt must be a string with {text} and {label}")
    for name in ("{text}", "{label}"):
        if prompt.count(name) != 1:
            raise AdapterError(
                f"prompt {prompt!r} must contain {name} exactly once "
                "(the item's text and the candidate label are put there)"
            )
    rest = prompt.replace("{text}", "").replace("{label}", "")
    if "{" in rest or "}" in rest:
        raise AdapterError(f"prompt {prompt!r}: only {{text}} and {{label}} may stand in braces")
    return prompt


def hf_options(
    *,
    path: str | Path,
    kind: str | None = None,
    labels: Sequence[str] | None = None,
    prompt: str | None = None,
    image_size: int | None = None,
) -> HFOptions:
    """Check a model folder and the options for it; reads only ``config.json``.

    Args:
        path: a local folder written by ``save_pretrained`` (weights, config, tokenizer and,
            optionally, ``preprocessor_config.json``).
        kind: ``vqa``, ``zero-shot`` or ``classify``; None: the kind the folder's
            architecture implies.
        labels: vqa/classify: a subset of the model's own labels to score (default all, in
            the model's order); zero-shot: the class names (required).
        prompt: zero-shot only: a template with ``{text}`` (the item's text) and ``{label}``
            (each class name), default ``"{text} {label}"``.
        image_size: resize every image to this square side (a multiple of the patch size;
            ViLT only, CLIP reads the size it was trained on).

    Raises :class:`AdapterError` with one line naming the problem.
    """
    folder = model_folder_check(path)
    config = folder_config(folder)
    found = folder_kind(config)
    if kind is None:
        if found is None:
            raise AdapterError(
                f"{folder} holds {_describe(config)}; mmeval's Hugging Face adapters read "
                + "; ".join(f"{', '.join(a)} (--kind {k})" for k, a in KINDS.items())
            )
        kind = found
    if kind not in KINDS:
        raise AdapterError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if found != kind:
        hint = f"; it fits --kind {found}" if found else ""
        raise AdapterError(
            f"{folder} holds {_describe(config)}, not a {kind} model: --kind {kind} reads "
            f"{', '.join(KINDS[kind])}{hint}"
        )
    architecture = next(a for a in config["architectures"] if a in KINDS[kind])

    if kind == "zero-shot":
        if labels is None or len(labels) == 0:
            raise AdapterError("a zero-shot model needs the class names: --labels NAME NAME ...")
        chosen = _label_list(labels)
        if len(chosen) < 2:
            raise AdapterError("a zero-shot model needs at least two class names")
        template = _prompt_check(DEFAULT_PROMPT if prompt is None else prompt)
        if image_size is not None:
            raise AdapterError("image_size applies to ViLT models; a CLIP model reads the size it was trained on")
        return HFOptions(
            path=folder, kind=kind, architecture=architecture, labels=chosen, prompt=template, config=config
        )

    if prompt is not None:
        raise AdapterError(f"prompt applies to zero-shot models; a {kind} model has its own classifier")
    if kind == "classify" and int(config.get("num_images", 1)) != 1:
        raise AdapterError(
            f"{folder}: this model compares {config.get('num_images')} images per item "
            "(NLVR2-style); the Hugging Face route takes one image and one text per item"
        )
    own = _own_labels(config)
    if not own:
        raise AdapterError(f"{folder}/config.json has no id2label: the model's classes have no names")
    if labels is None or len(labels) == 0:
        chosen, indices = own, tuple(range(len(own)))
    else:
        chosen = _label_list(labels)
        unknown = [x for x in chosen if x not in own]
        if unknown:
            shown = ", ".join(repr(x) for x in unknown[:5]) + (" …" if len(unknown) > 5 else "")
            raise AdapterError(f"labels not among the model's {len(own)} classes: {shown}")
        position = {name: k for k, name in enumerate(own)}
        indices = tuple(position[x] for x in chosen)
    if image_size is not None:
        patch = int(config.get("patch_size", 32))
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < patch or image_size % patch:
            raise AdapterError(f"image_size must be a positive multiple of the patch size {patch}, got {image_size!r}")
    return HFOptions(
        path=folder,
        kind=kind,
        architecture=architecture,
        labels=chosen,
        label_indices=indices,
        image_size=image_size,
        config=config,
    )
