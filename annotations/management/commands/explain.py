"""``manage.py explain``: explain a dataset file offline, one JSON + one NPZ file per item.

A thin wrapper over :func:`workers.engine.explain.explain_items_iter` (and
:func:`workers.engine.interactions.emap`); it touches no database.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from traceback import format_exception

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotations.management.adapter_args import HF_ONLY, adapter_arguments_add, adapter_arguments_check
from annotations.management.cli import os_error_text, out_dir_prepare, traceback_or_hint

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


def item_file_stems(item_ids: list[object], *, reserved: tuple[str, ...] = ()) -> list[str]:
    """:func:`item_file_stem` of every id, hashed where two stems would differ only by case
    (so they stay apart on case-insensitive file systems too) or where a stem is one of the
    ``reserved`` names of the run's own files."""
    stems = [item_file_stem(i) for i in item_ids]
    seen: dict[str, int] = {}
    for s in stems:
        seen[s.lower()] = seen.get(s.lower(), 0) + 1
    taken = {r.lower() for r in reserved}
    return [
        s
        if (seen[s.lower()] == 1 or s != str(i)) and s.lower() not in taken
        else f"{s}-{hashlib.sha1(str(i).encode('utf-8')).hexdigest()[:8]}"
        for s, i in zip(stems, item_ids)
    ]


def _split(value: str) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()]


#: The run's own files in --out; an item whose id would take one of these names gets a hashed stem.
ERRORS_FILE, EMAP_STEM = "errors.jsonl", "emap"


class Command(BaseCommand):
    help = (
        "Predict and explain every item of a dataset JSONL with a model adapter, writing "
        "<item id>.json (prediction, group scores, modality shares, interactions, groups) "
        "and <item id>.npz (the arrays) per item into --out. No database needed. An item "
        "that fails (NaN/Inf, unreadable payload) does not stop the others: it is listed in "
        f"{ERRORS_FILE} (id, line, error) and the command exits with status 1. --emap adds "
        f"{EMAP_STEM}.json: the model's accuracy, its additive projection's accuracy and the "
        "EMAP gap over the items (Hessel & Lee 2020)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--adapter",
            default=None,
            help="dotted path package.module:Factory, under one of "
            "the packages of MMEVAL_ADAPTER_PREFIXES (see --allow-any-adapter); or --hf PATH",
        )
        parser.add_argument("--data", required=True, type=Path, help="dataset JSONL file")
        parser.add_argument(
            "--methods",
            default="integrated_gradients",
            help="comma-separated attribution methods and interactions, e.g. "
            "integrated_gradients,saliency,second_order,modality_interaction",
        )
        parser.add_argument("--out", required=True, type=Path, help="output folder (created if needed)")
        parser.add_argument(
            "--targets", default="predicted", help="'predicted' (default), 'all', or a class index or label name"
        )
        parser.add_argument(
            "--pair",
            default=None,
            metavar="A,B",
            help="the two modalities that interactions and --emap pair, e.g. image,text "
            "(needed when the adapter has three or more)",
        )
        parser.add_argument(
            "--emap",
            action="store_true",
            help=f"also write {EMAP_STEM}.json (and .npz): the model's accuracy against the "
            "items' labels, the accuracy of its EMAP projection (the best additive "
            "function of the two modalities) and the gap between them; a gap near zero "
            "means the model uses no cross-modal interaction. Costs N^2 forward passes "
            "for N items",
        )
        parser.add_argument("--batch-size", type=int, default=8, help="items per engine batch")
        parser.add_argument("--device", default="cpu")
        parser.add_argument("--limit", type=int, default=None, help="explain only the first N items")
        parser.add_argument("--seed", type=int, default=0, help="seed of the stochastic methods")
        parser.add_argument(
            "--allow-any-adapter",
            action="store_true",
            help="run an adapter outside MMEVAL_ADAPTER_PREFIXES (it is imported and run "
            "in this process: only code you trust)",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        adapter_arguments_add(parser=parser)

    def handle(
        self,
        *args,
        adapter,
        data,
        methods,
        out,
        targets,
        pair,
        emap,
        batch_size,
        device,
        limit,
        seed,
        allow_any_adapter,
        no_progress,
        options,
        hf,
        **rest,
    ):
        # Engine imports stay here: `manage.py help` must not pay for torch.
        from tqdm.auto import tqdm

        from workers.engine.attribution import METHODS
        from workers.engine.explain import INTERACTIONS, ItemFailure, explain_items_iter

        data, out = Path(data), Path(out)  # call_command passes keyword options unconverted
        names = _split(methods)
        if not names:
            raise CommandError("--methods is empty")
        unknown = [n for n in names if n not in METHODS and n not in INTERACTIONS]
        if unknown:
            raise CommandError(
                f"unknown method(s) {', '.join(unknown)}; attribution methods: "
                f"{', '.join(METHODS)}; interactions: {', '.join(INTERACTIONS)}"
            )
        attributions = [n for n in names if n in METHODS]
        interactions = [n for n in names if n in INTERACTIONS]
        pair_names = _split(pair) if pair is not None else None
        if pair_names is not None and (len(pair_names) != 2 or pair_names[0] == pair_names[1]):
            raise CommandError(f"--pair {pair}: name two different modalities, e.g. --pair image,text")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        adapter, factory_options = _adapter_choose(
            adapter=adapter, options=options, hf=hf, hf_values={key: rest[key] for key in HF_ONLY}
        )
        _adapter_path_check(adapter, allow_any=allow_any_adapter)
        lines = _dataset_read(data)[:limit]
        items = [line.item for line in lines]
        if emap and len(items) < 2:
            raise CommandError("--emap needs at least two items")
        out_dir_prepare(path=out)
        model = self._adapter_load(adapter, device, factory_options, rest)
        target_spec = _target_spec(str(targets), [str(x) for x in model.labels])
        if pair_names is not None or interactions or emap:
            _pair_check([str(m) for m in model.modalities], pair, pair_names)

        # Work starts here; everything above fails in a second, with one line.
        stems = item_file_stems([item["id"] for item in items], reserved=(EMAP_STEM, "errors"))
        for stale in (out / ERRORS_FILE, out / f"{EMAP_STEM}.json", out / f"{EMAP_STEM}.npz"):
            stale.unlink(missing_ok=True)  # an earlier run's: they must not pass for this run's
        stream = getattr(self.stderr, "_out", sys.stderr)  # tqdm needs the raw stream (\r updates)
        bar = tqdm(total=len(items), file=stream, unit="item", desc="explain", disable=no_progress)
        done = 0

        def progress(n_done: int, total: int) -> None:
            nonlocal done
            bar.update(n_done - done)
            done = n_done

        explained: list[int] = []
        failures: list[ItemFailure] = []
        try:
            results = explain_items_iter(
                model,
                items,
                methods=attributions,
                interactions=interactions,
                targets=target_spec,
                batch_size=batch_size,
                seed=seed,
                interaction_modalities=pair_names,
                keep_going=True,
                progress=progress,
                lines={line.id: line.line for line in lines},
            )
            for res in results:
                if isinstance(res, ItemFailure):
                    failures.append(res)
                    with open(out / ERRORS_FILE, "a", encoding="utf-8") as errors:
                        errors.write(
                            json.dumps({"id": res.item_id, "line": lines[res.position].line, "error": res.error}) + "\n"
                        )
                    continue
                stem = stems[res.position]
                payload = {"file_stem": stem, "methods": attributions, "interactions": interactions, **res.to_json()}
                (out / f"{stem}.json").write_text(json.dumps(payload, indent=1, allow_nan=False))
                np.savez_compressed(out / f"{stem}.npz", **res.to_arrays())
                explained.append(res.position)
        except ValueError as exc:  # bad arguments, found before any item is explained
            raise CommandError(f"explaining failed: {exc}") from None
        except OSError as exc:
            raise CommandError(f"--out {out}: writing failed ({os_error_text(exc)})") from None
        finally:
            bar.close()

        summary = (
            f"Explained {len(explained)} of {len(items)} item(s) with {', '.join(names)}; wrote "
            f"{2 * len(explained)} file(s) to {out}."
        )
        self.stdout.write(self.style.SUCCESS(summary) if not failures else summary)
        emap_error = self._emap(model, [items[k] for k in explained], out, pair_names) if emap else ""
        hint = ""
        for failure in failures[:10]:
            self.stderr.write(f"item {failure.item_id!r} (line {lines[failure.position].line}): {failure.error}")
            hint = traceback_or_hint(options=rest, stderr=self.stderr, text=failure.traceback)
        if failures:
            more = " (the first 10 above)" if len(failures) > 10 else " (above)"
            raise CommandError(
                f"{len(failures)} of {len(items)} item(s) failed{more}; they are listed in "
                f"{out / ERRORS_FILE}{hint}{'; ' + emap_error if emap_error else ''}"
            )
        if emap_error:
            raise CommandError(emap_error)

    def _adapter_load(self, adapter: str, device: str, factory_options: dict | None, options: dict):
        import torch

        from workers.engine.adapter import AdapterError
        from workers.engine.registry import load_adapter

        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise CommandError(f"--device {device!r}: {exc}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise CommandError(f"--device {device!r}: CUDA is not available to this PyTorch build")
        try:
            return load_adapter(adapter, device=device, options=factory_options)
        except AdapterError as exc:  # names the step (import, create, load) and the adapter's own message
            trace = "".join(format_exception(exc)) if exc.__cause__ else ""  # no cause: the message is all
            hint = traceback_or_hint(options=options, stderr=self.stderr, text=trace)
            raise CommandError(f"{exc}{hint}") from exc

    def _emap(self, model, items: list[dict], out: Path, pair_names: list[str] | None) -> str:
        """Write emap.json and emap.npz for ``items``; return an error line ('' on success)."""
        from workers.engine.adapter import error_text
        from workers.engine.interactions import emap as emap_compute

        if len(items) < 2:
            return f"EMAP needs at least two explained items, got {len(items)}"
        try:
            result = emap_compute(model, items, modalities=pair_names)
        except Exception as exc:  # NaN/Inf pair logits; an adapter that cannot encode a mixed pair
            return f"EMAP failed: {error_text(exc)}"
        doc = {
            **result.to_json(),
            "item_ids": [item["id"] for item in items],
            "gold": "the items' label field" if result.gold is not None else None,
        }
        (out / f"{EMAP_STEM}.json").write_text(json.dumps(doc, indent=1, allow_nan=False))
        np.savez_compressed(out / f"{EMAP_STEM}.npz", **result.to_arrays(prefix=""))
        a, b = result.modalities
        if result.emap_gap is None:
            self.stdout.write(
                f"EMAP ({a} x {b}, {len(items)} items): the items' labels are not the adapter's, so "
                f"no accuracies; the projection agrees with the model on {result.agreement:.1%}. "
                f"Wrote {out / (EMAP_STEM + '.json')}."
            )
        else:
            self.stdout.write(
                f"EMAP ({a} x {b}, {len(items)} items): model accuracy {result.model_accuracy:.1%}, "
                f"projection accuracy {result.projection_accuracy:.1%}, gap "
                f"{100 * result.emap_gap:+.1f} points. Wrote {out / (EMAP_STEM + '.json')}."
            )
        return ""


def _adapter_choose(
    *, adapter: str | None, options: str | None, hf: str | None, hf_values: dict
) -> tuple[str, dict | None]:
    """The dotted path and factory options to load: ``--adapter`` with ``--options``, or the
    Hugging Face adapter over the ``--hf`` folder, its options checked from ``config.json``
    before any weight is read (as ``register_model --hf`` does)."""
    factory_options = adapter_arguments_check(
        adapter_path=adapter, options=options, hf=hf, hf_values=hf_values, path_name="--adapter"
    )
    if hf is None:
        return adapter, factory_options
    from workers.engine.adapter import AdapterError
    from workers.engine.hf import HF_ADAPTER, hf_options

    try:
        return HF_ADAPTER, hf_options(path=hf, **hf_values).as_dict()
    except AdapterError as exc:
        raise CommandError(str(exc)) from None  # the message names the folder


def _adapter_path_check(adapter: str, *, allow_any: bool) -> None:
    """The adapter's code runs in this process: refuse, as registration does, a path outside
    the allowed packages (and one that cannot name an adapter) before anything is imported."""
    from workers.engine.adapter import AdapterError, adapter_path_allowed, adapter_path_split

    try:
        adapter_path_split(adapter)
    except AdapterError as exc:
        raise CommandError(str(exc)) from None
    if not allow_any and not adapter_path_allowed(adapter, settings.MMEVAL_ADAPTER_PREFIXES):
        raise CommandError(
            f"adapter {adapter} is not under an allowed adapter package "
            f"({', '.join(settings.MMEVAL_ADAPTER_PREFIXES) or 'none'}); add its package to "
            "MMEVAL_ADAPTER_PREFIXES, or pass --allow-any-adapter to run code you trust"
        )


def _dataset_read(data: Path) -> list:
    from workers.engine.dataset import DatasetFormatError, read_dataset_jsonl

    if not data.is_file():
        raise CommandError(f"--data {data}: {'is a folder, not a JSONL file' if data.is_dir() else 'no such file'}")
    try:
        return read_dataset_jsonl(data)
    except DatasetFormatError as exc:
        raise CommandError(f"{data}: {exc}") from None
    except OSError as exc:
        raise CommandError(f"--data {data}: cannot read it ({os_error_text(exc)})") from None


def _target_spec(targets: str, labels: list[str]) -> str | int:
    if targets in ("predicted", "all"):
        return targets
    if targets.lstrip("-").isdigit():
        if not 0 <= int(targets) < len(labels):
            raise CommandError(f"--targets {targets}: not a class index in [0, {len(labels)})")
        return int(targets)
    if targets in labels:
        return labels.index(targets)
    raise CommandError(f"--targets must be 'predicted', 'all', a class index or one of {labels}")


def _pair_check(modalities: list[str], pair: str | None, pair_names: list[str] | None) -> None:
    """Interactions and EMAP pair two modalities: the named ones, or the adapter's only two."""
    from workers.engine.interactions import pick_modalities

    try:
        pick_modalities(modalities, pair_names)
    except ValueError:
        given = f"--pair {pair}: " if pair_names is not None else ""
        raise CommandError(
            f"{given}the adapter's modalities are {', '.join(modalities)}; name two of them with --pair A,B"
        ) from None
