import json

from django.core.management.base import BaseCommand, CommandError

from annotations.management.commands.export_study import _find_study
from annotations.services.analysis import AnalysisUnavailable, study_power_compute


class Command(BaseCommand):
    help = (
        "How many participants per arm a study needs for power 0.8 at alpha 0.05, by simulation "
        "(annotations.analysis.power). With a study: its answers so far are the pilot (baseline accuracy, "
        "participant and item variance from the mixed model). Without: state the baseline accuracy and the "
        "standard deviations. --items compares designs with more or fewer items."
    )

    def add_arguments(self, parser):
        parser.add_argument("study", nargs="?", default=None, help="study id, public id or name (the pilot)")
        parser.add_argument(
            "--effect",
            type=float,
            default=None,
            help="gain in simulation accuracy to detect, e.g. 0.1 (default: the study's effect_of_interest, else 0.1)",
        )
        parser.add_argument(
            "--items",
            type=int,
            nargs="+",
            default=None,
            metavar="N",
            help="number of items in the study (several: one design each)",
        )
        parser.add_argument("--items-per-participant", type=int, default=None)
        parser.add_argument(
            "--raters-per-item",
            type=int,
            default=None,
            help="answers each test item takes per arm (default: the study's); with it, each design says "
            "whether it can hold the participants the power needs",
        )
        parser.add_argument(
            "--baseline-accuracy",
            type=float,
            default=None,
            help="without a study: the baseline arm's expected accuracy",
        )
        parser.add_argument(
            "--chance",
            type=float,
            nargs="+",
            default=None,
            metavar="C",
            help="without a study: each item's chance, 1/(candidates shown), e.g. 0.5 0.25 0.333 (a guessing "
            "floor; a study's own items give theirs)",
        )
        parser.add_argument("--participant-sd", type=float, default=1.0, help="without a study (logit scale)")
        parser.add_argument("--item-sd", type=float, default=0.8, help="without a study (logit scale)")
        parser.add_argument("--power", type=float, default=0.8, dest="target_power")
        parser.add_argument("--alpha", type=float, default=0.05)
        parser.add_argument("--simulations", type=int, default=400, help="simulated studies per sample size")
        parser.add_argument("--seed", type=int, default=0, help="without a study: the simulations' seed")
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(
        self,
        *args,
        study,
        effect,
        items,
        items_per_participant,
        raters_per_item,
        baseline_accuracy,
        chance,
        participant_sd,
        item_sd,
        target_power,
        alpha,
        simulations,
        seed,
        as_json,
        **options,
    ):
        from annotations.analysis import power_sample_size

        try:
            if study is not None:
                if baseline_accuracy is not None or chance is not None:
                    raise CommandError("give a study or --baseline-accuracy (and --chance), not both")
                found = study_power_compute(
                    study=_find_study(study),
                    effect=effect,
                    n_items=items,
                    items_per_participant=items_per_participant,
                    raters_per_item=raters_per_item,
                    target_power=target_power,
                    alpha=alpha,
                    n_simulations=simulations,
                )
            else:
                if baseline_accuracy is None or not items or items_per_participant is None:
                    raise CommandError(
                        "without a study, give --baseline-accuracy, --items and --items-per-participant (and --effect)"
                    )
                chosen = 0.1 if effect is None else effect
                found = {
                    "study": None,
                    "effect": chosen,
                    "effect_assumed": effect is None,
                    "current_per_arm": 0,
                    "designs": [
                        dict(
                            power_sample_size(
                                baseline_accuracy=baseline_accuracy,
                                effect=chosen,
                                participant_sd=participant_sd,
                                item_sd=item_sd,
                                n_items=count,
                                items_per_participant=items_per_participant,
                                target_power=target_power,
                                alpha=alpha,
                                n_simulations=simulations,
                                seed=seed,
                                raters_per_item=raters_per_item,
                                chance=chance,
                            ),
                            source="assumed",
                        )
                        for count in items
                    ],
                }
        except AnalysisUnavailable as exc:
            raise CommandError(f"no power analysis: {exc}") from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if as_json:
            self.stdout.write(json.dumps(found, indent=2, sort_keys=True, allow_nan=False))
            return
        self.stdout.write(_text(found))


def _text(found: dict) -> str:
    from annotations.analysis.power import power_capacity_text

    first = found["designs"][0]
    source = f"the answers of '{found['study']['name']}' so far" if found["study"] else "the values given"
    lines = [
        f"Power {first['target_power']:.2f} at alpha {first['alpha']} for a gain of {100 * found['effect']:.1f} points "
        f"in simulation accuracy{' (assumed)' if found['effect_assumed'] else ''}.",
        f"From {source}: baseline accuracy {100 * first['baseline_accuracy']:.1f}%, participant SD "
        f"{first['participant_sd']:.2f}, item SD {first['item_sd']:.2f} (logit)"
        + (f", guessing at each item's chance (mean {100 * first['chance']:.1f}%)" if first.get("chance") else "")
        + f"; {first['n_simulations']} simulated studies per size.",
        "",
        f"{'items':>6}  {'per participant':>15}  {'participants per arm':>20}  {'power':>12}",
    ]
    for design in found["designs"]:
        needed = design["n_participants_per_arm"]
        if needed is None:
            answer, power = f"> {design['curve'][-1]['n_participants_per_arm']}", "not reached"
        else:
            answer = str(needed)
            if found["study"] and found["current_per_arm"]:
                answer += f" ({max(0, needed - found['current_per_arm'])} more)"
            power = f"{design['power']:.2f} ± {design['power_se']:.2f}"
        lines.append(f"{design['n_items']:>6}  {design['items_per_participant']:>15}  {answer:>20}  {power:>12}")
    notes = [
        f"With {design['n_items']} items: "
        + power_capacity_text(capacity=design["capacity"], needed_per_arm=design["n_participants_per_arm"])
        for design in found["designs"]
        if design.get("capacity") and design["capacity"]["capped"]
    ]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"
