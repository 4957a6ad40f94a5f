import contextlib
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotations.management.cli import out_file_write
from annotations.management.commands.export_study import _find_study
from annotations.services.analysis import AnalysisUnavailable, study_report_compute


class Command(BaseCommand):
    help = (
        "Print a study's analysis: simulation accuracy per arm with two-way bootstrap intervals, effects "
        "against the baseline, agreement, calibration, time on task, exclusions and automatic metrics vs "
        "human accuracy. The same numbers as the dashboard, the API and the summary export."
    )

    def add_arguments(self, parser):
        parser.add_argument("study", help="study id, public id or name")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print the whole report as JSON")
        parser.add_argument("--out", type=Path, default=None, help="write the report to this file (default: stdout)")
        parser.add_argument("--n-resamples", type=int, default=1000)
        parser.add_argument("--n-permutations", type=int, default=1000)

    def handle(self, *args, study, as_json: bool, out, n_resamples, n_permutations, **options):
        found = _find_study(study)
        with out_file_write(path=Path(out)) if out else contextlib.nullcontext(self.stdout) as stream:
            try:
                report = study_report_compute(study=found, n_resamples=n_resamples, n_permutations=n_permutations)
            except AnalysisUnavailable as exc:
                raise CommandError(f"cannot analyse '{found.name}': {exc}") from exc
            stream.write(_dumps(report) + "\n" if as_json else _text(report))
        if out:
            self.stderr.write(f"Wrote the analysis of '{found.name}' to {out}.")


def _dumps(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=True, allow_nan=False)


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _text(report: dict) -> str:
    meta = report["study"]
    lines = [
        f"{meta['name']} ({meta['public_id']}): baseline '{meta['baseline']}', seed {meta['seed']}, "
        f"{meta['n_resamples']} resamples"
    ]
    if report.get("task") == "verification":
        return _verification_text(report, lines)
    if report.get("task") == "counterfactual":
        return _counterfactual_text(report, lines)
    if report.get("task") == "rationale":
        return _rationale_text(report, lines)
    if "judging" in report:
        return _judging_text(report, lines)
    for section, title in (("all", "All participants"), ("after_exclusions", "After pre-registered exclusions")):
        block = report["analysis"][section]
        data = block["data"]
        lines.append("")
        lines.append(
            f"{title}: {data['n_test_responses']} test responses, {data['n_participants']} participants, "
            f"{data['n_items']} items"
        )
        for arm, subsets in block["simulation_accuracy"].items():
            acc = subsets["all"]
            line = f"  {arm:<24} accuracy {_pct(acc['estimate'])} [{_pct(acc['ci_low'])}, {_pct(acc['ci_high'])}]"
            effect = block["effects"].get(arm, {}).get("all")
            if effect:
                line += (
                    f"  vs baseline {_pct(effect['estimate'])} [{_pct(effect['ci_low'])}, "
                    f"{_pct(effect['ci_high'])}], p = {effect['p_value']:.4f}"
                )
            lines.append(line)
    excl = report["exclusions"]
    lines.append("")
    lines.append(
        f"Exclusions: {excl['n_excluded']} of {excl['n_participants']} participants "
        f"({', '.join(f'{k}: {v}' for k, v in excl['by_rule'].items() if v) or 'none'})"
    )
    return "\n".join(lines) + "\n"


def _judging_text(report: dict, lines: list[str]) -> str:
    """A rating or preference study: the Bradley–Terry ranking, or the mean rating per scale."""
    for section, title in (("all", "All participants"), ("after_exclusions", "After pre-registered exclusions")):
        block = report["judging"][section]
        lines.append("")
        if "unavailable" in block:
            lines.append(f"{title}: {block['unavailable']}")
            continue
        if "bradley_terry" in block:
            fit = block["bradley_terry"]
            lines.append(f"{title}: {fit['comparisons']} choices, {fit['participants']} participants")
            ranked = sorted(fit["methods"].items(), key=lambda kv: -(kv[1]["score"] or 0.0))
            for name, row in ranked:
                score = "not estimable" if row["score"] is None else f"{row['score']:+.3f}"
                interval = "" if row["score"] is None else f" [{row['wald_low']:+.3f}, {row['wald_high']:+.3f}]"
                lines.append(f"  {name}: Bradley-Terry {score}{interval}, won {row['wins']} of {row['comparisons']}")
            share = block["triads"]["overall"]["share"]
            lines.append(
                f"  circular triads: {'—' if share is None else f'{share:.1%}'}; alpha {block['agreement']['alpha']}"
            )
        else:
            lines.append(f"{title}: {block['n_participants']} participants")
            for scale, methods in block["scales"].items():
                for name, row in methods.items():
                    lines.append(
                        f"  {scale} {name}: mean {row['mean']:.2f} [{row['mean_low']:.2f}, {row['mean_high']:.2f}], n {row['n']}"
                    )
    return "\n".join(lines) + "\n"


RELIANCE = ("verdict_accuracy", "over_reliance", "under_reliance", "trust", "trust_gap")


def _verification_text(report: dict, lines: list[str]) -> str:
    """A verification study: reliance per arm and its difference from the baseline."""
    for section, title in (("all", "All participants"), ("after_exclusions", "After pre-registered exclusions")):
        block = report["verification"][section]
        lines.append("")
        if "unavailable" in block:
            lines.append(f"{title}: {block['unavailable']}")
            continue
        data = block["data"]
        lines.append(
            f"{title}: {data['n_responses']} verdicts, {data['n_participants']} participants, {data['n_items']} items, "
            f"model wrong on {_pct(data['share_model_wrong'])} of the answers shown"
        )
        for arm, measures in block["arms"].items():
            for measure in RELIANCE:
                value = measures[measure]
                line = (
                    f"  {arm:<16} {measure:<16} {_pct(value['estimate'])} "
                    f"[{_pct(value['ci_low'])}, {_pct(value['ci_high'])}]"
                )
                effect = block["effects"].get(arm, {}).get(measure)
                if effect:
                    line += f"  vs baseline {_pct(effect['estimate'])} [{_pct(effect['ci_low'])}, {_pct(effect['ci_high'])}]"
                lines.append(line)
    return "\n".join(lines) + "\n"


def _counterfactual_text(report: dict, lines: list[str]) -> str:
    """A counterfactual study: simulation accuracy on the edits per arm and edit kind, against the
    baseline arm and the pre-test."""
    for section, title in (("all", "All participants"), ("after_exclusions", "After pre-registered exclusions")):
        block = report["counterfactual"][section]
        lines.append("")
        if "unavailable" in block:
            lines.append(f"{title}: {block['unavailable']}")
            continue
        for kind, part in [("all edits", block["all"]), *block["by_edit_kind"].items()]:
            lines.append(f"{title}, {kind}: {part['n_responses']} answers on {part['n_items']} items")
            for arm, values in part["arms"].items():
                acc, change = values["accuracy"], values["pre_post_change"]
                line = (
                    f"  {arm:<16} counterfactual accuracy {_pct(acc['estimate'])} "
                    f"[{_pct(acc['ci_low'])}, {_pct(acc['ci_high'])}]"
                )
                effect = part["effects"].get(arm, {}).get("accuracy")
                if effect:
                    line += f"  vs baseline {_pct(effect['estimate'])} [{_pct(effect['ci_low'])}, {_pct(effect['ci_high'])}]"
                if change["estimate"] is not None:
                    line += (
                        f"  pre->post {_pct(change['estimate'])} [{_pct(change['ci_low'])}, {_pct(change['ci_high'])}]"
                    )
                lines.append(line)
    return "\n".join(lines) + "\n"


def _rationale_text(report: dict, lines: list[str]) -> str:
    """Agreement, then per method and slice the plausibility measures with their intervals."""
    block = report["rationale"]
    for name, title in (("pairwise_iou", "mean pairwise IoU"), ("alpha", "Krippendorff's alpha")):
        value = block["agreement"][name]
        lines.append(f"{title}: {_num(value['estimate'])} [{_num(value['ci_low'])}, {_num(value['ci_high'])}]")
    plausibility = block["plausibility"]
    if plausibility.get("unavailable"):
        lines.append(f"plausibility: {plausibility['unavailable']}")
    for method, slices in (plausibility.get("methods") or {}).items():
        for name, measures in slices.items():
            cells = ", ".join(
                f"{m} {_num(v['estimate'])} [{_num(v['ci_low'])}, {_num(v['ci_high'])}]" for m, v in measures.items()
            )
            lines.append(f"{method} / {name}: {cells}")
    return "\n".join(lines) + "\n"


def _num(value) -> str:
    return "—" if value is None else f"{value:.3f}"
