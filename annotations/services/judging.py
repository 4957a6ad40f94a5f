"""Rating and preference studies (``study_tasks.RATING``, ``PREFERENCE``): their rater slots and
the answer they store. The participant pages and the submission path are the shared ones
(``services/participants.py``), which call in here.

* **Rating** is between subjects: a participant rates the explanations of their own arm (three
  Likert scales, 1-5). The baseline arm shows nothing to rate, so it gets no slots.
* **Preference** is within subjects: a slot of an item compares two explanation arms, left and
  right (``Slot.condition`` / ``right_condition``, copied to the assignment's and response's
  ``left_condition`` / ``right_condition``; by the balanced seeded schedule of
  ``services/preference_design.py``), and any participant may take any arm's slot.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from annotations.models import Condition, Slot, Study
from annotations.services.preference_design import preference_pair_order, preference_schedule
from annotations.services.report_sections import report_sections
from annotations.study_tasks import PREFERENCE, RATING, RATING_SCALES

RATING_FIELDS = {scale: f"rating_{scale}" for scale, *_ in RATING_SCALES}
SIDES = ("left", "right")
#: The form fields a rating or preference page posts.
JUDGEMENT_FIELDS = (*RATING_FIELDS, "preferred")


class JudgementRefused(ValueError):
    """A rating or choice the page could not have sent."""


def _explanation_arms(study: Study) -> list[Condition]:
    return list(study.conditions.filter(is_baseline=False).order_by("id"))


def judging_slots(*, study: Study, item_ids: Iterable[int], rng: random.Random) -> list[Slot]:
    """The rater slots of a rating or preference study (module docstring), unsaved."""
    arms = _explanation_arms(study)
    items = sorted(item_ids)
    if study.task == PREFERENCE:
        by_id = {arm.pk: arm for arm in arms}
        schedule = preference_schedule(list(by_id), items, raters_per_item=study.raters_per_item, seed=study.seed)
        return [
            Slot(
                condition=by_id[left],
                right_condition=by_id[right],
                item_id=item_id,
                index=index,
                sort_key=rng.getrandbits(62),
            )
            for (item_id, index), (left, right) in schedule.items()
        ]
    return [
        Slot(condition=arm, item_id=item_id, index=index, sort_key=rng.getrandbits(62))
        for arm in arms
        for item_id in items
        for index in range(study.raters_per_item)
    ]


def preview_pair(*, study: Study, key: str) -> tuple[int, int]:
    """A (left, right) pair of explanation arms for a preview, which takes no slot."""
    order = preference_pair_order([arm.pk for arm in _explanation_arms(study)], seed=study.seed)
    return random.Random(f"{study.seed}:preview-pair:{key}").choice(order)


def judgement_fields(*, task: str, answers: Mapping[str, object]) -> dict[str, object]:
    """The Response fields of a rating (``helpfulness``, ``trust``, ``understanding``: whole
    numbers 1-5) or a preference (``preferred``: "left" or "right") from the submitted form.
    Raises ``JudgementRefused`` with the reason on anything else."""
    if task == RATING:
        fields = {}
        for scale, column in RATING_FIELDS.items():
            try:
                value = int(str(answers.get(scale) or "").strip())
            except ValueError:
                raise JudgementRefused(f"please rate {scale} from 1 to 5") from None
            if not 1 <= value <= 5:
                raise JudgementRefused(f"please rate {scale} from 1 to 5")
            fields[column] = value
        return fields
    if task == PREFERENCE:
        side = str(answers.get("preferred") or "").strip().lower()
        if side not in SIDES:
            raise JudgementRefused("please choose the explanation that helps more: A or B")
        return {"preferred": side}
    return {}


def judging_report(*, study: Study, settings: dict, responses, n_resamples: int) -> dict:
    """A rating or preference study's report (``annotations.analysis.preference``), for all
    participants and after the pre-registered exclusions (the export's ``excluded`` flag). A
    section that cannot be computed says why (``unavailable``)."""
    from annotations.analysis.preference import preference_report, ratings_report

    arms = _explanation_arms(study)
    reference = arms[0].name if arms else None

    def analyse(frame):
        if study.task == PREFERENCE:
            return preference_report(frame, seed=settings["seed"], n_boot=n_resamples)
        return ratings_report(frame, reference=reference, seed=settings["seed"], n_boot=n_resamples)

    sections = report_sections(responses, analyse)
    return {
        "study": {
            "id": study.pk,
            "public_id": study.public_id,
            "name": study.name,
            "task": study.task,
            "baseline": settings["baseline"],
            "reference": reference,
            "seed": settings["seed"],
            "n_resamples": int(n_resamples),
            "exclusion_rules": settings["exclusion_rules"],
        },
        "task": study.task,
        "judging": sections,
    }
