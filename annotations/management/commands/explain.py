"""``manage.py explain``: explain a dataset file offline, one JSON + one NPZ file per item.

A thin wrapper over :func:`workers.engine.explain.explain_items`; it touches no database.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 100


def item_file_stem(item_id: object) -> str:
    """A file name stem for an item id: the id itself when it is a safe name, else the id
    with unsafe characters replaced by ``_`` plus a short hash of the id, so two different
    ids never share a file (``"a/b"`` -> ``"a_b-<hash>"`` while ``"a_b"`` stays ``"a_b"``)."""
    text = str(item_id)
    safe = _UNSAFE.sub("_", text).lstrip(".")[:_MAX_STEM] or "item"
    if safe == text:
        return safe
    return f"{safe}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"


def item_file_stems(item_ids: list[object]) -> list[str]:
    """:func:`item_file_stem` of every id, hashed where two stems would differ only by case
    (so they stay apart on case-insensitive file systems too)."""
    stems = [item_file_stem(i) for i in item_ids]
    seen: dict[str, int] = {}
    for s in stems:
        seen[s.lower()] = seen.get(s.lower(), 0) + 1
    return [s if seen[s.lower()] == 1 or s != str(i) else
            f"{s}-{hashlib.sha1(str(i).encode('utf-8')).hexdigest()[:8]}"
            for s, i in zip(stems, item_ids)]


def _split(value: str) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()]


class Command(BaseCommand):
    help = ("Predict and explain every item of a dataset JSONL with a model adapter, writing "
            "<item id>.json (prediction, group scores, modality shares, interactions, groups) "
            "and <item id>.npz (the arrays) per item into --out. No database needed.")

    def add_arguments(self, parser):
        parser.add_argument("--adapter", required=True, help="dotted path package.module:Factory")
        parser.add_argument("--data", required=True, type=Path, help="dataset JSONL file")
        parser.add_argument("--methods", default="integrated_gradients",
                            help="comma-separated attribution methods and interactions, e.g. "
                                 "integrated_gradients,saliency,second_order,modality_interaction")
        parser.add_argument("--out", required=True, type=Path, help="output folder (created if needed)")
        parser.add_argument("--targets", default="predicted",
                            help="'predicted' (default), 'all', or a class index or label name")
        parser.add_argument("--batch-size", type=int, default=8, help="items per engine batch")
        parser.add_argument("--device", default="cpu")
        parser.add_argument("--limit", type=int, default=None, help="explain only the first N items")
        parser.add_argument("--seed", type=int, default=0, help="seed of the stochastic methods")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, adapter, data, methods, out, targets, batch_size, device, limit, seed,
               no_progress, **options):
        # Engine imports stay here: `manage.py help` must not pay for torch.
        from tqdm.auto import tqdm

        from workers.engine.adapter import AdapterError
        from workers.engine.attribution import METHODS, NonFiniteError
        from workers.engine.dataset import DatasetFormatError, read_dataset_jsonl
        from workers.engine.explain import INTERACTIONS, explain_items
        from workers.engine.registry import load_adapter

        data, out = Path(data), Path(out)  # call_command passes keyword options unconverted
        targets = str(targets)
        names = _split(methods)
        if not names:
            raise CommandError("--methods is empty")
        unknown = [n for n in names if n not in METHODS and n not in INTERACTIONS]
        if unknown:
            raise CommandError(f"unknown method(s) {', '.join(unknown)}; attribution methods: "
                               f"{', '.join(METHODS)}; interactions: {', '.join(INTERACTIONS)}")
        attributions = [n for n in names if n in METHODS]
        interactions = [n for n in names if n in INTERACTIONS]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")

        try:
            lines = read_dataset_jsonl(data)
        except DatasetFormatError as exc:
            raise CommandError(f"{data}: {exc}") from None
        except OSError as exc:
            raise CommandError(f"cannot read {data}: {exc}") from None
        items = [line.item for line in lines][:limit]

        import torch

        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise CommandError(f"--device {device!r}: {exc}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise CommandError(f"--device {device!r}: CUDA is not available to this PyTorch build")
        try:
            model = load_adapter(adapter, device=device)
        except AdapterError as exc:
            raise CommandError(str(exc)) from None
        except (RuntimeError, AssertionError) as exc:  # unknown device; CUDA missing from the build
            raise CommandError(f"cannot load {adapter} on {device!r}: {exc}") from None

        labels = [str(x) for x in model.labels]
        if targets in ("predicted", "all"):
            target_spec: object = targets
        elif targets.lstrip("-").isdigit():
            target_spec = int(targets)
            if not 0 <= target_spec < len(labels):
                raise CommandError(f"--targets {targets}: not a class index in [0, {len(labels)})")
        elif targets in labels:
            target_spec = labels.index(targets)
        else:
            raise CommandError(f"--targets must be 'predicted', 'all', a class index or one of {labels}")

        stems = item_file_stems([item["id"] for item in items])
        out.mkdir(parents=True, exist_ok=True)
        stream = getattr(self.stderr, "_out", sys.stderr)  # tqdm needs the raw stream (\r updates)
        bar = tqdm(total=len(items), file=stream, unit="item", desc="explain", disable=no_progress)
        done = 0

        def progress(n_done: int, total: int) -> None:
            nonlocal done
            bar.update(n_done - done)
            done = n_done

        try:
            results = explain_items(model, items, methods=attributions, interactions=interactions,
                                    targets=target_spec, batch_size=batch_size, seed=seed,
                                    progress=progress)
        except (NonFiniteError, AdapterError, ValueError, TypeError) as exc:
            raise CommandError(f"explaining failed: {exc}") from None
        finally:
            bar.close()

        for stem, res in zip(stems, results):
            payload = {"file_stem": stem, "methods": attributions, "interactions": interactions,
                       **res.to_json()}
            (out / f"{stem}.json").write_text(json.dumps(payload, indent=1, allow_nan=False))
            np.savez_compressed(out / f"{stem}.npz", **res.to_arrays())
        self.stdout.write(self.style.SUCCESS(
            f"Explained {len(results)} item(s) with {', '.join(names)}; wrote {2 * len(results)} "
            f"file(s) to {out}."))
