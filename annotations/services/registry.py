"""Registering a model adapter by dotted path (with options), checked by running it on one item
in a child process under a time limit."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings

from annotations.models import Dataset, RegisteredModel
from annotations.selectors.studies import dataset_label_coverage, item_raw


class ModelRegistrationError(Exception):
    def __init__(self, message: str, traceback_text: str = ""):
        self.traceback_text = traceback_text
        super().__init__(message)


def _name_check(*, owner, name: str) -> None:
    if RegisteredModel.objects.filter(owner=owner, name=name).exists():
        raise ModelRegistrationError(f"you already have a model named '{name}'")


def registered_model_create(
    *, owner, name: str, adapter_path: str, check_dataset: Dataset, adapter_options: dict[str, Any] | None = None
) -> RegisteredModel:
    """Load ``adapter_path`` (as ``Factory(**adapter_options)``), run the first item of
    ``check_dataset`` through it and store the model with the labels and modalities it
    declares, whether it has the optional ``features()``, and the options. All of it runs in a child process under a time limit
    (:func:`adapter_probe_run`), which first refuses, without calling it, anything but an
    adapter class or a marked factory (``workers.engine.adapter.adapter_factory_check``). A model none of whose labels is a gold answer of
    ``check_dataset`` is refused (:func:`labels_check`)."""
    _name_check(owner=owner, name=name)
    options = {} if adapter_options is None else adapter_options
    if not isinstance(options, dict):
        raise ModelRegistrationError(
            f"adapter options must be a JSON object of keyword options, got {type(options).__name__}"
        )
    try:
        options = json.loads(json.dumps(options, allow_nan=False))  # stored as JSON: what the workers get back
    except (TypeError, ValueError) as exc:
        raise ModelRegistrationError(f"adapter options must be plain JSON values: {exc}") from None
    # Imported here: torch is heavy and web processes need it only to register a model.
    from workers.engine.adapter import adapter_path_allowed

    if not adapter_path_allowed(adapter_path, settings.MMEVAL_ADAPTER_PREFIXES):
        raise ModelRegistrationError(
            f"'{adapter_path}' is not under an allowed adapter package ({', '.join(settings.MMEVAL_ADAPTER_PREFIXES)}); "
            "ask the operator to install your package and add it to MMEVAL_ADAPTER_PREFIXES"
        )
    item = check_dataset.items.order_by("line_number").first()
    if item is None:
        raise ModelRegistrationError(f"dataset '{check_dataset.name}' has no items to check the model on")
    probe = adapter_probe_run(adapter_path=adapter_path, options=options, items=[item_raw(item)])
    if probe.get("step") == "load":  # names the step (import, factory check, create, load) and its message
        raise ModelRegistrationError(probe["message"], probe.get("traceback", ""))
    if probe.get("step") == "check":
        raise ModelRegistrationError(
            f"adapter {adapter_path}: the check on item '{item.external_id}' (line {item.line_number}) failed: "
            f"{probe['message']}",
            probe.get("traceback", ""),
        )
    labels_check(labels=probe["labels"], dataset=check_dataset)
    return RegisteredModel.objects.create(
        owner=owner,
        name=name,
        adapter_path=adapter_path,
        adapter_options=options,
        labels=probe["labels"],
        modalities=probe["modalities"],
        # read by the study designer, which must not load the adapter (services/spec.py)
        capabilities=probe["capabilities"],
    )


def adapter_probe_run(*, adapter_path: str, options: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """Create, load and check the adapter in a child process (``workers/adapter_probe.py``)
    stopped after ``MMEVAL_REGISTER_TIMEOUT_SECONDS``: nothing a registration names runs in
    the web process, and nothing runs without a time limit. Returns the child's answer (labels
    and modalities, or the failed step with its message); raises ModelRegistrationError on a
    timeout or a child that dies without answering."""
    limit = settings.MMEVAL_REGISTER_TIMEOUT_SECONDS
    with tempfile.TemporaryDirectory(prefix="register-") as folder:
        request, result, output = Path(folder, "request.json"), Path(folder, "result.json"), Path(folder, "output")
        request.write_text(
            json.dumps(
                {
                    "adapter_path": adapter_path,
                    "options": options,
                    "device": settings.MMEVAL_DEVICE,
                    "items": items,
                    "sys_path": [entry or os.getcwd() for entry in sys.path],
                }
            ),
            encoding="utf-8",
        )
        with output.open("wb") as sink:
            # Its own session: a timeout stops the child and whatever it started.
            child = subprocess.Popen(
                [sys.executable, "-m", "workers.adapter_probe", str(request), str(result)],
                cwd=settings.BASE_DIR,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                status = child.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):  # it may have ended just now
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                raise ModelRegistrationError(
                    f"adapter {adapter_path}: creating, loading and checking it took longer than the {limit} s "
                    "registration limit (MMEVAL_REGISTER_TIMEOUT_SECONDS) and was stopped"
                ) from None
        if status != 0 or not result.is_file():
            tail = output.read_bytes()[-8000:].decode("utf-8", "replace")
            last = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "no output")
            raise ModelRegistrationError(
                f"adapter {adapter_path}: the registration check stopped (exit status {status}) before answering: {last}",
                tail,
            )
        return json.loads(result.read_text(encoding="utf-8"))


def labels_check(*, labels: Sequence[str], dataset: Dataset) -> None:
    """Refuse a model none of whose labels is a gold answer of ``dataset``: every item would be
    "model wrong" and a study's right/wrong balance could not hold. A partial overlap passes
    (``selectors.studies.label_coverage_warning`` words it for the caller)."""
    coverage = dataset_label_coverage(dataset=dataset, labels=labels)
    if coverage.n_items and not coverage.n_known:
        shown = ", ".join(f"'{label}'" for label in list(labels)[:12]) + (" …" if len(labels) > 12 else "")
        raise ModelRegistrationError(
            f"none of the gold answers of dataset '{dataset.name}' is one of the model's labels: unknown answers "
            f"{coverage.unknown_text()}; the model's labels: {shown}"
        )


def registered_model_create_hf(
    *,
    owner,
    name: str,
    folder: str,
    check_dataset: Dataset,
    kind: str | None = None,
    labels: Sequence[str] | None = None,
    prompt: str | None = None,
    image_size: int | None = None,
) -> RegisteredModel:
    """Register a Hugging Face model folder (``save_pretrained``'s output, never a hub ID) as
    the adapter :data:`workers.engine.hf.HF_ADAPTER` with these options. The folder and the
    options are checked first, from ``config.json`` alone, so a wrong path, a folder of
    another kind or an unknown label is one line before any weight is read."""
    _name_check(owner=owner, name=name)
    from workers.engine.adapter import AdapterError
    from workers.engine.hf import HF_ADAPTER, hf_options

    try:
        options = hf_options(path=folder, kind=kind, labels=labels, prompt=prompt, image_size=image_size)
    except AdapterError as exc:
        raise ModelRegistrationError(str(exc)) from exc
    return registered_model_create(
        owner=owner, name=name, adapter_path=HF_ADAPTER, check_dataset=check_dataset, adapter_options=options.as_dict()
    )
