"""``manage.py quantify``: the model report of a registered model on a dataset (docs/MODEL_REPORT.md),
written into a folder as JSON, CSV tables and SVG figures. The report is stored like any other
(the "Model reports" page shows it too); it runs in this process, or on the workers with
``--via-task``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotations.management.cli import os_error_text, out_dir_prepare, owner_find, traceback_or_hint
from annotations.models import Dataset, ModelReport, RegisteredModel
from annotations.selectors.model_reports import STAGE_TITLES, model_report_progress
from annotations.services.model_reports import (
    ModelReportError,
    model_report_create,
    model_report_slices_load,
    model_report_start,
)


class Command(BaseCommand):
    help = (
        "Quantify a model on a dataset without a crowd: modality reliance (baseline and permutation), "
        "modality share and the 2x2 interaction dividend per item, M2Lens interaction types, robustness to "
        "noise and missing modalities (MultiBench relative and effective robustness), bias slices against the "
        "rest with bootstrap intervals, the EMAP gap, social bias per item group (accuracy gaps, bias "
        "amplification, leakage, attribution inside evidence regions), and, with --checkpoints, the learning process (losses "
        "per modality, OGR, Gradient-Blending weights). Writes report.json, items/summary/slices/robustness/"
        "learning.csv and the figures (.svg) into --out."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", required=True, help="your registered model, by name")
        parser.add_argument("--dataset", required=True, help="your dataset, by name")
        parser.add_argument("--out", required=True, type=Path, help="output folder (created if needed)")
        parser.add_argument(
            "--slices",
            type=Path,
            default=None,
            help="a YAML/JSON slices file: {fields: ..., slices: {name: expression}} "
            "(see workers/engine/demo/slices.yaml)",
        )
        parser.add_argument(
            "--checkpoints",
            default=None,
            metavar="all|NAME,NAME",
            help="add the learning-process section over these checkpoints of the adapter "
            "('all', or names); costs one pass over the data per checkpoint",
        )
        parser.add_argument(
            "--train-dataset",
            default=None,
            help="your dataset of training items for the training losses (default: the adapter's training_items())",
        )
        parser.add_argument(
            "--options",
            type=Path,
            default=None,
            help="a YAML/JSON file of report options (noise_levels, permutations, emap_max_items, "
            "pair, ...; see workers/engine/report/options.py)",
        )
        parser.add_argument("--seed", type=int, default=None, help="seed of permutations, noise and bootstrap")
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="torch threads in this process (default: MMEVAL_TORCH_THREADS, else torch's); "
            "1 on a machine whose cores are busy with other work",
        )
        parser.add_argument("--owner", help="the researcher's username (needed when there are several users)")
        parser.add_argument("--via-task", action="store_true", help="compute on the Celery workers and wait")
        parser.add_argument("--timeout", type=int, default=6 * 3600, help="seconds to wait for the workers")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(
        self,
        *args,
        model,
        dataset,
        out,
        slices,
        checkpoints,
        train_dataset,
        options,
        seed,
        threads,
        owner,
        via_task,
        timeout,
        no_progress,
        **kwargs,
    ):
        out = Path(out)
        if threads is not None and threads < 1:
            raise CommandError("--threads must be at least 1")
        user = owner_find(owner)
        found_model = self._owned(RegisteredModel, user, model, "--model")
        found_dataset = self._owned(Dataset, user, dataset, "--dataset")
        found_train = self._owned(Dataset, user, train_dataset, "--train-dataset") if train_dataset else None
        report_options = self._read(options, "--options") if options else {}
        if report_options is None:
            report_options = {}
        if not isinstance(report_options, dict):
            raise CommandError(f"--options {options}: must be a mapping of option names to values")
        if seed is not None:
            report_options["seed"] = seed
        if checkpoints is not None:
            names = [c.strip() for c in checkpoints.split(",") if c.strip()]
            if not names:
                raise CommandError("--checkpoints: give 'all' or checkpoint names")
            report_options["checkpoints"] = names
        slices_doc = None
        if slices is not None:
            try:
                slices_doc = model_report_slices_load(text=self._text(slices, "--slices"))
            except ModelReportError as exc:
                raise CommandError(f"--slices {slices}: {exc}") from None
        out_dir_prepare(path=out)
        try:
            report = model_report_create(
                owner=user,
                model=found_model,
                dataset=found_dataset,
                options=report_options,
                slices=slices_doc,
                train_dataset=found_train,
            )
        except ModelReportError as exc:
            where = f"--slices {slices}: " if exc.field.startswith(("slices", "fields")) and slices else ""
            raise CommandError(f"{where}{exc}") from None
        self.stdout.write(
            f"Model report {report.pk}: '{found_model.name}' on '{found_dataset.name}' "
            f"({found_dataset.items.count()} items)."
        )
        if via_task:
            self._wait_for_workers(report, timeout, no_progress)
        else:
            self._run_here(report, no_progress, threads)
        report.refresh_from_db()
        if report.status != ModelReport.Status.DONE:
            first = (report.error.strip().splitlines() or ["the report failed"])[-1]
            hint = traceback_or_hint(options=kwargs, stderr=self.stderr, text=report.error)
            raise CommandError(f"the report failed: {first}{hint}")
        self._write(report, out)

    # ------------------------------------------------------------------ inputs

    def _owned(self, model_class, user, name: str, option: str):
        found = model_class.objects.filter(owner=user, name=name).first()
        if found is None:
            known = list(model_class.objects.filter(owner=user).values_list("name", flat=True)[:20])
            raise CommandError(
                f"{option} {name!r}: {user.username} has no such {model_class._meta.verbose_name}; "
                f"theirs: {', '.join(known) or 'none'}"
            )
        return found

    def _text(self, path: Path, option: str) -> str:
        path = Path(path)
        if not path.is_file():
            raise CommandError(f"{option} {path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            line = exc.object.count(b"\n", 0, exc.start) + 1
            raise CommandError(f"{option} {path}: line {line}: not UTF-8 text") from None
        except OSError as exc:
            raise CommandError(f"{option} {path}: cannot read it ({os_error_text(exc)})") from None

    def _read(self, path: Path, option: str):
        text = self._text(path, option)
        try:
            if Path(path).suffix.lower() == ".json":
                return json.loads(text)
            return model_report_slices_load(text=text)
        except (ValueError, ModelReportError) as exc:
            raise CommandError(
                f"{option} {path}: not valid {'JSON' if str(path).endswith('.json') else 'YAML'}: "
                f"{str(exc).removeprefix('the slices file is not valid YAML: ')}"
            ) from None

    # ------------------------------------------------------------------ running

    def _bar(self, no_progress: bool):
        return tqdm(total=0, desc="Model report", unit="step", disable=True if no_progress else None)

    def _show(self, bar, stage: str, done: int, total: int) -> None:
        title = STAGE_TITLES.get(stage, stage)
        if getattr(bar, "stage_title", None) != title:
            bar.stage_title = title
            bar.set_description(title)
        bar.total, bar.n = total, done
        bar.refresh()

    def _run_here(self, report: ModelReport, no_progress: bool, threads: int | None) -> None:
        import torch
        from django.conf import settings

        from workers.report_pipeline import model_report_run_inline

        if threads or settings.MMEVAL_TORCH_THREADS:
            torch.set_num_threads(threads or settings.MMEVAL_TORCH_THREADS)
        with self._bar(no_progress) as bar:
            model_report_run_inline(report_id=report.pk, on_progress=lambda s, d, t: self._show(bar, s, d, t))

    def _wait_for_workers(self, report: ModelReport, timeout: int, no_progress: bool) -> None:
        model_report_start(report=report)
        report.refresh_from_db()
        if report.dispatch_error:
            self.stderr.write(report.dispatch_error)
        deadline = time.monotonic() + timeout
        with self._bar(no_progress) as bar:
            while time.monotonic() < deadline:
                report.refresh_from_db()
                progress = model_report_progress(report=report)
                if progress["stage"]:
                    self._show(bar, progress["stage"], progress["done"], progress["total"])
                if report.status in (ModelReport.Status.DONE, ModelReport.Status.FAILED):
                    return
                time.sleep(1)
        raise CommandError(
            f"the report did not finish in {timeout} s; it is still {report.status} (the workers "
            "carry on; watch the Model reports page)"
        )

    # ------------------------------------------------------------------ output

    def _write(self, report: ModelReport, out: Path) -> None:
        from workers.engine.report.plots import report_figures
        from workers.engine.report.tables import TABLES, report_table_csv

        result = report.result
        written = []
        try:
            (out / "report.json").write_text(json.dumps(result, indent=1, allow_nan=False), encoding="utf-8")
            written.append("report.json")
            for name in TABLES:
                (out / f"{name}.csv").write_text(report_table_csv(result, name), encoding="utf-8")
                written.append(f"{name}.csv")
            for name, svg in report_figures(result).items():
                (out / f"{name}.svg").write_text(svg, encoding="utf-8")
                written.append(f"{name}.svg")
        except OSError as exc:
            raise CommandError(f"--out {out}: writing failed ({os_error_text(exc)})") from None
        for line in _summary_lines(result):
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS(f"Wrote {', '.join(written)} to {out}."))


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _summary_lines(result: dict) -> list[str]:
    lines = []
    accuracy = (result["summary"].get("accuracy") or {}).get("estimate")
    lines.append(f"  accuracy {_pct(accuracy)} on {result['summary']['n_items']} items")
    for m in result["modalities"]:
        base = result["reliance"]["baseline"][m]["reliance"]["estimate"]
        perm = (result["reliance"]["permutation"].get(m) or {}).get("reliance", {}).get("estimate")
        share = result["reliance"]["share"][m].get("mean")
        lines.append(
            f"  {m}: answers change without it {_pct(base)}, with another item's {_pct(perm)}; mean share {share:+.2f}"
            if share is not None
            else f"  {m}: no share"
        )
    counts = result["interactions"]["types"]["counts"]
    lines.append("  interaction types: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    emap = result["interactions"].get("emap") or {}
    if "gap" in emap:
        gap = emap["gap"]
        lines.append(
            f"  EMAP gap {100 * gap['estimate']:+.1f} points [{100 * gap['ci_low']:+.1f}, {100 * gap['ci_high']:+.1f}]"
        )
    for s in result["slices"]:
        diff = s["stats"]["correct"]["difference"]["estimate"] if "correct" in s["stats"] else None
        lines.append(
            f"  slice {s['name']}: {s['n']} items, accuracy vs the rest "
            f"{'—' if diff is None else f'{100 * diff:+.1f} points'}"
        )
    lines += _bias_lines(result.get("bias") or {})
    learning = result.get("learning") or {}
    if learning.get("checkpoints") or learning.get("failed"):
        lines.append(
            f"  learning: {len(learning.get('checkpoints') or [])} checkpoint(s)"
            + (
                f", {len(learning['failed'])} failed: "
                + "; ".join(f"{f['name']} ({f['error']})" for f in learning["failed"])
                if learning.get("failed")
                else ""
            )
        )
    return lines


def _bias_lines(bias: dict) -> list[str]:
    """The bias section in a few lines (docs/MODEL_REPORT.md, "Social bias")."""
    if not bias or bias.get("skipped"):
        return []
    lines = [
        "  group "
        + ", ".join(
            f"{name}: {block['n']} items, accuracy {_pct(block['accuracy']['estimate'])}"
            for name, block in bias["per_group"].items()
        )
    ]
    amplification = bias.get("amplification") or {}
    if amplification.get("estimate") is not None:
        lines.append(
            f"  bias amplification {amplification['estimate']:+.3f} "
            f"[{amplification['ci_low']:+.3f}, {amplification['ci_high']:+.3f}] against {amplification['reference']}"
        )
    leakage = bias.get("leakage") or {}
    if "model" in leakage:
        lines.append(
            f"  leakage: model {_pct(leakage['model']['estimate'])}, data {_pct(leakage['data']['estimate'])}, "
            f"difference {100 * leakage['difference']['estimate']:+.1f} points"
        )
    for method, block in (bias.get("evidence") or {}).items():
        if isinstance(block, dict) and "all" in block:
            lines.append(
                f"  evidence ({method}): mass inside {_pct(block['all']['mass_inside']['estimate'])}, "
                f"pointing game {_pct(block['all']['pointing']['estimate'])}"
            )
    return lines
