"""The margins of the demo models' built-in properties, for several sets of weights: each
training seed and thread count trains its own weights (cached like the default ones), and each
row prints what the trained-model tests assert next to the bound they assert it against. A
property of the demo must hold on every row with room to spare (docs/DESIGN.md, "Nothing
depends on the machine"). No Django.

    python -m benchmarks.demo_margins --weights 0:1 1:1 2:1 0:2
    python -m benchmarks.demo_margins --demo context --weights 0:1 1:1 2:1 0:2 1:2 2:2

``--demo context`` prints the context-bias demo's rows alone (:data:`CONTEXT_BOUNDS`; a few
seconds of training per set of weights).

Cost: one training run per new (seed, threads) for each demo model (about a minute and a few
seconds on 2 free cores), then one model report of 160 items per row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from workers.engine.demo import data
from workers.engine.demo import model as demo_model
from workers.engine.demo.adapter import DemoAdapter
from workers.engine.demo.context import data as context_data
from workers.engine.demo.context.adapter import ContextAdapter
from workers.engine.demo.tabular import model as plant_model
from workers.engine.report.quantify import ReportOptions, model_report_run, report_slice_fields
from workers.engine.report.slices import slices_parse

__all__ = ["BOUNDS", "CONTEXT_BOUNDS", "context_margins_for", "context_report", "main", "margins_for"]

SLICES_FILE = Path(data.__file__).with_name("slices.yaml")

#: What the tests assert of each quantity: (comparison, bound, the test that asserts it).
BOUNDS: dict[str, tuple[str, float, str]] = {
    "unbiased_accuracy": (">", 0.75, "test_demo.py: useful"),
    "unbiased_accuracy_max": ("<", 0.96, "test_demo.py: still wrong on some items"),
    "nonred_triangle_red": (">", 0.8, "test_demo.py: the triangle bias"),
    "slice_text_alone_red": ("==", 1.0, "test_report_demo.py: the question alone answers red"),
    "share_shift_to_text": (">", 0.15, "test_report_demo.py: reliance moves from the picture to the text"),
    "agree_perm_image_diff_low": (">", 0.3, "test_report_demo.py"),
    "text_corruption_drop": (">", 0.3, "test_report_demo.py"),
    "plants_indoor": (">", 0.9, "test_demo_tabular.py"),
    "plants_balcony_scorched": (">", 0.7, "test_demo_tabular.py"),
}


#: The context-bias demo (workers/engine/demo/context), on its 160-item draw (seed 0); asserted in
#: tests/engine/test_report_bias_demo.py.
CONTEXT_BOUNDS: dict[str, tuple[str, float, str]] = {
    "amplification": (">", 0.04, "bias amplification (expected about 0.1)"),
    "amplification_ci_low": (">", 0.0, "its interval excludes 0"),
    "leakage_difference": (">", 0.0, "model leakage above data leakage"),
    "mass_clear_minus_ambiguous": (">", 0.2, "saliency mass inside: clear minus ambiguous shapes"),
    "pointing_ambiguous": ("<", 0.2, "saliency pointing game on ambiguous shapes"),
    "pointing_clear": (">", 0.5, "saliency pointing game on clear shapes"),
    "pointing_group_gap": (">", 0.1, "pointing game, group a minus group b"),
    "accuracy_group_gap": (">", 0.0, "accuracy, group a minus group b"),
}
CONTEXT_ITEMS = 160


def context_report(items: list[dict]) -> dict:
    """The model report of the context-bias demo adapter (weights from the environment) with
    the options its test uses: gradient methods only (a single backward pass each)."""
    adapter = ContextAdapter()
    adapter.load(torch.device("cpu"))
    options = ReportOptions(
        permutations=1,
        noise_levels=[0.0, 1.0],
        emap=False,
        group_pairs="",
        n_resamples=500,
        bias_methods=["saliency", "input_x_gradient"],
    )
    return model_report_run(adapter, items, options=options)


def context_items(folder: Path, n_items: int = CONTEXT_ITEMS) -> tuple[list[dict], context_data.Examples]:
    """The context demo's report items (``seed=0``, written under ``folder``) and their draw."""
    context_data.generate_dataset(folder, n_items=n_items, seed=0)
    items = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    return [{**item, "image": str(folder / item["image"])} for item in items], context_data.sample_examples(
        n_items, seed=0
    )


def context_quantities(report: dict, examples: context_data.Examples) -> dict[str, float]:
    """Every quantity of :data:`CONTEXT_BOUNDS` from a report of :func:`context_report`."""
    bias = report["bias"]
    rows = report["items"]

    def mean(values: list) -> float:
        return sum(values) / len(values)

    ambiguous = [row for row, amb in zip(rows, examples.ambiguous) if amb]
    clear = [row for row, amb in zip(rows, examples.ambiguous) if not amb]
    pointing = bias["evidence"]["saliency"]["per_group"]
    accuracy = bias["per_group"]
    return {
        "amplification": bias["amplification"]["estimate"],
        "amplification_ci_low": bias["amplification"]["ci_low"],
        "leakage_difference": bias["leakage"]["difference"]["estimate"],
        "mass_clear_minus_ambiguous": mean([r["evidence_mass:saliency"] for r in clear])
        - mean([r["evidence_mass:saliency"] for r in ambiguous]),
        "pointing_ambiguous": mean([r["pointing:saliency"] for r in ambiguous]),
        "pointing_clear": mean([r["pointing:saliency"] for r in clear]),
        "pointing_group_gap": pointing["a"]["pointing"]["estimate"] - pointing["b"]["pointing"]["estimate"],
        "accuracy_group_gap": accuracy["a"]["accuracy"]["estimate"] - accuracy["b"]["accuracy"]["estimate"],
    }


def context_margins_for(*, seed: int, threads: int, items: list[dict], examples: context_data.Examples) -> dict:
    with _training_env(seed, threads):
        return context_quantities(context_report(items), examples)


@contextlib.contextmanager
def _training_env(seed: int, threads: int) -> Iterator[None]:
    """The adapters build their config from the environment, as every worker process does."""
    saved = {k: os.environ.get(k) for k in ("MMEVAL_DEMO_SEED", "MMEVAL_DEMO_THREADS")}
    os.environ.update(MMEVAL_DEMO_SEED=str(seed), MMEVAL_DEMO_THREADS=str(threads))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _report_items(n_items: int) -> list[dict]:
    folder = Path(tempfile.mkdtemp(prefix="mmeval-margins-"))
    data.generate_dataset(folder, n_items=n_items, seed=0)
    items = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    return [{**item, "image": str(folder / item["image"])} for item in items]


def margins_for(*, seed: int, threads: int, items: list[dict]) -> dict[str, float]:
    """Every quantity of :data:`BOUNDS` for the demo models trained with ``seed`` and
    ``threads`` (trained and cached first when missing)."""
    with _training_env(seed, threads):
        shapes = demo_model.load_or_train(progress=True)
        plants = plant_model.load_or_train()
        adapter = DemoAdapter()
        adapter.load(torch.device("cpu"))
        slices = slices_parse(yaml.safe_load(SLICES_FILE.read_text()), fields=report_slice_fields(adapter.modalities))
        options = ReportOptions(
            noise_levels=[0.0, 1.0],
            noise_samples=1,
            corruption_levels=[0.0, 1.0],
            emap=False,
            group_pairs="",
            n_resamples=500,
        )
        report = model_report_run(adapter, items, options=options, slices=slices)
    bias = {s["name"]: s for s in report["slices"]}["nonred_triangle"]
    rows = [row for row in report["items"] if row["id"] in set(bias["item_ids"])]
    stats = bias["stats"]
    text_curve = report["robustness"]["corruption"]["curves"]["text"]["accuracy"]
    plant_metrics = plant_model.evaluate(plants)
    return {
        "unbiased_accuracy": shapes.metrics["unbiased"],
        "unbiased_accuracy_max": shapes.metrics["unbiased"],
        "nonred_triangle_red": shapes.metrics["nonred_triangle_red"],
        "slice_text_alone_red": sum(row["answer_only:text"] == "red" for row in rows) / len(rows),
        "slice_dominance": bias["type_counts"]["slice"]["dominance"] / bias["n"],
        "share_shift_to_text": stats["share:text"]["difference"]["estimate"]
        - stats["share:image"]["difference"]["estimate"],
        "agree_perm_image_diff_low": stats["agree_perm:image"]["difference"]["ci_low"],
        "text_corruption_drop": text_curve[0] - text_curve[-1],
        "plants_indoor": plant_metrics["indoor"],
        "plants_balcony_scorched": plant_metrics["balcony_scorched"],
    }


def _weights(text: str) -> tuple[int, int]:
    """``SEED:THREADS`` -> ``(seed, threads)``."""
    try:
        seed, threads = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SEED:THREADS such as 0:1, not {text!r}") from None
    if seed < 0 or threads < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the seed must be >= 0 and the threads >= 1")
    return seed, threads


def _holds(value: float, comparison: str, bound: float) -> bool:
    return {">": value > bound, "<": value < bound, "==": value == bound}[comparison]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.demo_margins [--weights SEED:THREADS ...] [--items 160]``: one
    column per set of weights (default 0:1 1:1 2:1 0:2), one row per asserted quantity with its
    bound; exit status 1 when a bound fails on some weights."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--weights", nargs="+", default=["0:1", "1:1", "2:1", "0:2"], type=_weights)
    parser.add_argument("--items", type=int, default=160)
    parser.add_argument("--demo", choices=("shapes", "context"), default="shapes")
    args = parser.parse_args(argv)
    if args.demo == "context":
        return _context_main(list(args.weights))
    items = _report_items(args.items)
    configs = list(args.weights)
    columns = {
        config: margins_for(seed=config[0], threads=config[1], items=items)
        for config in tqdm(configs, desc="demo weights", unit="set")
    }
    header = "| quantity | bound | " + " | ".join(f"seed {s}, {t} thr" for s, t in configs) + " | asserted in |"
    print(header)
    print("|" + "---|" * (len(configs) + 3))
    failed = 0
    for name, (comparison, bound, where) in BOUNDS.items():
        cells = []
        for config in configs:
            value = columns[config][name]
            ok = _holds(value, comparison, bound)
            failed += not ok
            cells.append(f"{value:.3f}" + ("" if ok else " FAILS"))
        print(f"| {name} | {comparison} {bound:g} | " + " | ".join(cells) + f" | {where} |")
    dominance = " | ".join(f"{columns[c]['slice_dominance']:.3f}" for c in configs)
    print(f"| slice_dominance (not asserted) | | {dominance} | straddles the 0.2 strength threshold |")
    return 1 if failed else 0


def _context_main(configs: list[tuple[int, int]]) -> int:
    items, examples = context_items(Path(tempfile.mkdtemp(prefix="mmeval-context-margins-")))
    columns = {
        config: context_margins_for(seed=config[0], threads=config[1], items=items, examples=examples)
        for config in configs
    }
    print("| quantity | bound | " + " | ".join(f"seed {s}, {t} thr" for s, t in configs) + " | what |")
    print("|" + "---|" * (len(configs) + 3))
    failed = 0
    for name, (comparison, bound, where) in CONTEXT_BOUNDS.items():
        cells = []
        for config in configs:
            value = columns[config][name]
            ok = _holds(value, comparison, bound)
            failed += not ok
            cells.append(f"{value:.3f}" + ("" if ok else " FAILS"))
        print(f"| {name} | {comparison} {bound:g} | " + " | ".join(cells) + f" | {where} |")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
