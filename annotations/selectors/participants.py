"""Reads for the participant path: the session's participant, what the instructions promise,
how a participant leaves, their quality numbers, and everything an item page shows (which
names neither the model's prediction nor the gold label before an answer).

Why nothing may name the answer: docs/DESIGN.md, "Invariants and where they are held".
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db.models import Count, Max, Q
from django.utils import timezone

from annotations.models import (
    PUBLIC_TITLE_DEFAULT,
    Assignment,
    Explanation,
    InviteToken,
    Participant,
    Prediction,
    Study,
    StudyItem,
)
from annotations.selectors.counterfactual import assignment_counterfactual
from annotations.selectors.inline_media import media_data_uri
from annotations.selectors.precompute import (
    ATTENTION_VIEWS,
    INTERACTION_VIEWS,
    MULTIVIZ_VIEWS,
    study_attention_method,
    study_multiviz_method,
)
from annotations.selectors.rationales import rationale_instruction, rationale_page
from annotations.selectors.wording import study_modality_words
from annotations.study_tasks import RATING, RATING_SCALES, RATIONALE, study_task
from workers.engine.dataset import IMAGE_MODALITIES, MODALITY_VIEW_OF_KIND, modality_kind
from workers.engine.series import series_points, value_text
from workers.engine.text import spaces_before


def participant_session_key(*, study: Study | None = None, study_public_id: str | None = None) -> str:
    """Where a browser session keeps its participant of ``study`` (participant pages and the
    researcher's preview share it). ``study_public_id`` names the study without loading it."""
    return f"participant:{study.public_id if study is not None else study_public_id}"


def study_and_participant(
    *, study_public_id: str, participant_public_id: str | None
) -> tuple[Study, Participant | None]:
    """The study of a participant URL and the browser's participant of it (the ID its session
    keeps, ``participant_session_key``), in one query when there is one; ``None`` for a
    browser that has not entered. Raises ``Study.DoesNotExist`` for an unknown study."""
    if participant_public_id:
        try:  # get(), not first(): a unique lookup needs no ORDER BY, which costs a third of this query
            participant = Participant.objects.select_related("study__model", "condition").get(
                public_id=participant_public_id, study__public_id=study_public_id
            )
        except (Participant.DoesNotExist, ValidationError):
            pass
        else:
            return participant.study, participant
    return Study.objects.select_related("model").get(public_id=study_public_id), None


def invite_token_study(*, token: str) -> Study | None:
    """The study an invitation link admits to, or ``None`` for an unknown token."""
    invite = InviteToken.objects.select_related("study").filter(token=token).first()
    return invite.study if invite is not None else None


ANSWER_KEYS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def study_participant_plan(*, study: Study) -> dict[str, Any]:
    """What the instructions promise a participant of ``study``: items per phase (``test``
    counts the attention checks, which look like any other question; ``pretest`` repeats the
    test items; ``answers`` is the questions a participant answers, pre-test and test;
    ``total`` adds the practice items, which are studied, not answered), the answers per question
    (``options``) and the key of the last one (``last_answer_key``)."""
    pools = dict(
        study.study_items.filter(role__in=[StudyItem.Role.LEARNING, StudyItem.Role.ATTENTION])
        .values_list("role")
        .annotate(n=Count("id"))
    )
    test = study.items_per_participant + min(study.attention_checks, pools.get(StudyItem.Role.ATTENTION, 0))
    pretest = study.items_per_participant if study.pretest else 0
    learning = pools.get(StudyItem.Role.LEARNING, 0)
    n_labels = len(study.model.labels)
    options = n_labels if study.n_candidates == 0 else min(n_labels, study.n_candidates + study.n_distractors)
    return {
        "pretest": pretest,
        "learning": learning,
        "test": test,
        "answers": pretest + test,
        "total": pretest + learning + test,
        "options": options,
        "last_answer_key": ANSWER_KEYS[min(options, len(ANSWER_KEYS)) - 1] if options else "",
    }


def participant_title_cache_key(*, study_public_id: str) -> str:
    return f"participant-title:{study_public_id}"


def participant_title_cached(*, study_public_id: str | None) -> str:
    """A study's public title from the cache alone, for the page shown while the database is
    unreachable; the default title when the cache does not hold it."""
    if not study_public_id:
        return PUBLIC_TITLE_DEFAULT
    return cache.get(participant_title_cache_key(study_public_id=study_public_id)) or PUBLIC_TITLE_DEFAULT


def participant_by_platform_id(*, study: Study, platform: str, platform_id: str) -> Participant | None:
    """A returning crowd worker (same platform ID), to resume without a new consent."""
    if not platform_id:
        return None
    return Participant.objects.filter(study=study, platform=platform, platform_id=platform_id).first()


PROLIFIC_COMPLETE_URL = "https://app.prolific.com/submissions/complete?cc={code}"


# Only MTurk's own hosts may receive the final form: turkSubmitTo comes from the URL, and an
# arbitrary value would let anyone send participants (and their code) elsewhere.
MTURK_SUBMIT_HOSTS = ("https://www.mturk.com", "https://workersandbox.mturk.com")


def participant_frame_policy() -> str:
    """The CSP that lets MTurk's worker sites (settings.MMEVAL_FRAME_ANCESTORS) frame a
    participant page, and no one else."""
    return "frame-ancestors 'self' " + " ".join(settings.MMEVAL_FRAME_ANCESTORS)


MTURK_PREVIEW_ASSIGNMENT = "ASSIGNMENT_ID_NOT_AVAILABLE"


def mturk_submit_url(turk_submit_to: str) -> str:
    base = (turk_submit_to or "").rstrip("/")
    if base not in MTURK_SUBMIT_HOSTS:
        base = MTURK_SUBMIT_HOSTS[0]
    return f"{base}/mturk/externalSubmit"


PROLIFIC_HOME_URL = "https://app.prolific.com/submissions"


def participant_exit(*, participant: Participant) -> dict[str, Any]:
    """How a finished participant leaves: the code (completed, screened out or partial), and
    for Prolific the redirect URL, for MTurk the external-submit form (with ``outcome``). One
    whose time ran out after some answers (``partial``) is told so and gets the
    partial-completion code, never the full one: on Prolific a button to the completion URL
    with that code (``platform_link``), on MTurk the form. A participant who timed
    out before any answer gets no code, no redirect and no form: they are asked to return
    the task (Prolific: "Return submission", or Prolific times them out; MTurk: "Return
    HIT"), so that nobody is paid for no work."""
    study = participant.study
    preview = participant.platform == Participant.Platform.PREVIEW
    if participant.timed_out:
        return {
            "code": None,
            "screened_out": participant.screened_out,
            "timed_out": True,
            "redirect": None,
            "mturk": None,
            "preview": preview,
            "platform": participant.platform,
            "platform_home": PROLIFIC_HOME_URL if participant.platform == Participant.Platform.PROLIFIC else None,
        }
    partial = participant.partial and not participant.screened_out
    if partial:
        code = study.partial_code
    else:
        code = study.screened_out_code if participant.screened_out else study.completion_code
    out: dict[str, Any] = {
        "code": code,
        "screened_out": participant.screened_out,
        "timed_out": False,
        "partial": partial,
        "redirect": None,
        "mturk": None,
        "preview": preview,
        "platform": participant.platform,
    }
    if partial:
        # Told first, on a page of its own: the platform link is a button there, not a redirect.
        out["n_answered"] = participant.responses.count()
        if participant.platform == Participant.Platform.PROLIFIC:
            out["platform_link"] = PROLIFIC_COMPLETE_URL.format(code=code)
    elif participant.platform == Participant.Platform.PROLIFIC:
        out["redirect"] = PROLIFIC_COMPLETE_URL.format(code=code)
    if participant.platform == Participant.Platform.MTURK:
        data = participant.platform_data or {}
        out["mturk"] = {
            "action": mturk_submit_url(data.get("turkSubmitTo", "")),
            "assignmentId": data.get("assignmentId", ""),
            "outcome": "partial" if partial else "complete",
        }
    return out


def participant_time_left(*, participant: Participant, assignment: Assignment | None = None) -> dict[str, Any] | None:
    """The time left of the study's time limit, for the pages after the instructions:
    ``seconds`` (whole, never negative), ``minutes`` (rounded up, the text shown without
    script) and ``deadline`` (the lease expiry). ``assignment``: the item on the page, whose
    lease is the deadline (no query); else the participant's latest lease. ``None`` when the
    participant holds no lease (nothing is timed)."""
    if assignment is not None:
        deadline = assignment.lease_expires_at
    else:
        deadline = participant.assignments.aggregate(last=Max("lease_expires_at"))["last"]
    if deadline is None:
        return None
    seconds = max(0, int((deadline - timezone.now()).total_seconds()))
    return {"seconds": seconds, "minutes": -(-seconds // 60), "deadline": deadline}


def participant_quality(*, participant: Participant) -> dict[str, Any]:
    """The participant's quality numbers and pre-registered exclusion decision, computed by
    the same function the analysis and the CSV export use
    (``annotations.analysis.exclusions.participant_stats``), so the flags agree exactly.
    ``exclusion_reasons`` is the list of rule keys met (empty: kept)."""
    from annotations.analysis.exclusions import exclusion_rules_validate, participant_stats

    study = participant.study
    rules = exclusion_rules_validate(study.exclusion_rules or {}, default_fast_rt_ms=study.min_rt_ms)
    rows = list(
        participant.responses.values_list(
            "phase",
            "is_attention_check",
            "attention_passed",
            "rt_ms",
            "guess",
            "model_prediction",
            "verdict",
            "gold_label",
            "client_rt_ms",
            "blur_count",
            "hidden_ms",
            "edit_prediction",
        )
    )
    scored = [r for r in rows if r[0] == Assignment.Phase.TEST and not r[1]]
    stats = participant_stats(
        test_rt_ms=np.array([r[3] for r in scored], dtype=np.float64),
        test_correct=np.array([float(response_correct(*r[4:8], r[11])) for r in scored], dtype=np.float64),
        n_pretest=sum(1 for r in rows if r[0] == Assignment.Phase.PRETEST and not r[1]),
        attention_passed=[r[2] for r in rows if r[1]],
        screened_out=participant.screened_out,
        rules=rules,
        # None (not measured) becomes NaN: missing.
        test_client_rt_ms=np.array([r[8] for r in scored], dtype=np.float64),
        test_blur_count=np.array([r[9] for r in scored], dtype=np.float64),
        test_hidden_ms=np.array([r[10] for r in scored], dtype=np.float64),
    )
    stats["exclusion_reasons"] = [r for r in stats["exclusion_reasons"].split(";") if r]
    return stats


def response_correct(
    guess: str, model_prediction: str, verdict: bool | None, gold_label: str, edit_prediction: str = ""
) -> float:
    """Whether an answer is right for its task, 1.0 or 0.0: a forward guess names the model's
    answer; a verification verdict (``verdict`` not None) says right exactly when the model is
    right; a counterfactual guess (``edit_prediction`` set) names the model's answer on the edited
    input. NaN for an answer with neither guess nor verdict (rating, preference: nothing is right
    or wrong)."""
    if verdict is not None:
        return float(verdict == (model_prediction == gold_label))
    return float(guess == (edit_prediction or model_prediction)) if guess else float("nan")


def study_participant_exclusions(*, study: Study) -> dict[str, list[str]]:
    """Participant public ID -> the exclusion rules they meet (empty: kept), evaluated now
    for every real participant, finished or not. Excluded rows are flagged, never deleted."""
    return {
        str(p.public_id): participant_quality(participant=p)["exclusion_reasons"]
        for p in study.participants.exclude(platform=Participant.Platform.PREVIEW).select_related("study")
    }


# The views of audio, tabular and series modalities (workers/engine/presentation_modalities.py) come last.
MODALITY_VIEWS = tuple(MODALITY_VIEW_OF_KIND.values())
VIEW_ORDER = (
    "heatmap",
    "tokens",
    "attention",
    "interaction",
    "top_pairs",
    "share",
    "features",
    "prediction",
    *MODALITY_VIEWS,
)


PHASE_TITLES = {"pretest": "Warm-up", "learning": "Practice", "test": "Main part"}


def _view_source(view: str) -> str:
    if view in MULTIVIZ_VIEWS:
        return "multiviz"
    if view in ATTENTION_VIEWS:
        return "attention"
    return "interaction" if view in INTERACTION_VIEWS else "attribution"


def _explanation_rows(*, study: Study, item, labels: list[str], method: str = "") -> dict[str, dict[str, Explanation]]:
    """label -> view source -> stored row; ``method``: an arm's own attribution method (rating and
    preference studies), else the study's."""
    multiviz = study_multiviz_method(study=study)
    attribution = method or study.explanation_method
    attention = study_attention_method(study=study)
    found = Explanation.objects.filter(
        model_id=study.model_id,
        item=item,
        target_label__in=labels,
        method__in=[attribution, study.interaction_method, multiviz, attention],
    )
    out: dict[str, dict[str, Explanation]] = {label: {} for label in labels}
    for row in found:
        source = (
            "attribution"
            if row.method == attribution
            else "multiviz"
            if row.method == multiviz
            else "attention"
            if row.method == attention
            else "interaction"
        )
        out[row.target_label][source] = row
    return out


# What the page calls each view: the caption above its image and the name of its colour scale.
VIEW_NAMES = {
    "heatmap": "Picture",
    "tokens": "Words",
    "attention": "Attention",
    "interaction": "Patch × word",
    "top_pairs": "Strongest pairs",
    "share": "Share of each input",  # the page names the inputs: study_modality_words
    "features": "Features behind this answer",
    "prediction": "How the features add up",
    "table": "Table values",
    "series": "Over time",
    "audio": "Sound over time",
}


# MultiViz's stages (unimodal, cross-modal, representation, prediction): each view's step, and
# what the page's step tabs call it. An item whose views span two steps or more shows one step
# at a time, the same step for every candidate (templates/participant/_stage_tabs.html).
VIEW_STAGE = {
    "heatmap": "u",
    "tokens": "u",
    "attention": "u",
    "share": "u",
    "interaction": "c",
    "top_pairs": "c",
    "features": "r",
    "prediction": "p",
    **dict.fromkeys(MODALITY_VIEW_OF_KIND.values(), "u"),
}
STAGE_NAMES = {"u": "Each input", "c": "Inputs together", "r": "Inner features", "p": "How they add up"}


def _stages(views: list[str]) -> list[str]:
    """The steps ``views`` span, in MultiViz's order."""
    return [stage for stage in STAGE_NAMES if any(VIEW_STAGE.get(v) == stage for v in views)]


def _stage_tabs(views: list[str]) -> list[dict[str, str]]:
    """The page's step tabs (``stage``, ``name``): none when the views span one step only."""
    stages = _stages(views)
    return [{"stage": stage, "name": STAGE_NAMES[stage]} for stage in stages] if len(stages) > 1 else []


def _panel(views: list[str], rows: dict[str, Explanation], *, words: dict[str, Any]) -> dict[str, Any]:
    """Which views one explanation panel can show: the image views in display order (``view``,
    its caption ``name`` and ``src``, the picture itself as a data URI: ``media_data_uri``), the
    stored file of each, the token highlights (each with ``space``: whether a space goes before
    it), the table view's feature ``bars``, the
    modality ``shares`` (laid out by the page, under the inputs' display names ``words``) and the
    image views by step (``groups``: one per step of ``views``, the same for every
    candidate, whatever was stored)."""
    images, files, tokens, bars, shares, attention_tokens = [], {}, [], [], None, []
    for view in VIEW_ORDER:
        if view not in views:
            continue
        row = rows.get(_view_source(view))
        if row is None or row.status != Explanation.Status.DONE:
            continue
        if view == "table" and (row.summary or {}).get("table_view"):
            bars = _feature_bars(row.summary["table_view"])
            continue
        if view == "share" and (row.summary or {}).get("modality_share"):
            shares = {"caption": words["share_caption"], "rows": _share_bars(row.summary["modality_share"], words)}
            continue
        if view == "tokens":
            spaces = spaces_before([t["text"] for t in row.token_view])
            tokens = [{**t, "space": space} for t, space in zip(row.token_view, spaces)]
            continue
        if view == "attention":
            spaces = spaces_before([t["text"] for t in row.token_view])
            attention_tokens = [{**t, "space": space} for t, space in zip(row.token_view, spaces)]
        path = row.image_view if view in ("heatmap", "interaction", "attention") else row.extra_views.get(view, "")
        if path:
            name = words["share_caption"] if view == "share" else VIEW_NAMES[view]
            images.append({"view": view, "name": name, "src": media_data_uri(path)})
            files[view] = path
    groups = [
        {"stage": stage, "images": [i for i in images if VIEW_STAGE[i["view"]] == stage]} for stage in _stages(views)
    ]
    return {
        "images": images,
        "files": files,
        "tokens": tokens,
        "attention_tokens": attention_tokens,
        "bars": bars,
        "shares": shares,
        "has_heatmap": "heatmap" in files,
        "groups": groups,
    }


def _share_bars(shares: dict[str, float], words: dict[str, Any]) -> list[dict[str, str]]:
    """Each modality's signed share (in [-1, 1], a fixed axis: comparable across candidates and
    items) as a bar the page lays out, named as the pages name the input, in the model's order
    (a JSON column keeps no key order)."""
    return [
        {
            "name": name,
            "title": f"{float(shares[modality]):+.2f}".replace("-", "\u2212"),
            "side": "pos" if shares[modality] > 0 else "neg" if shares[modality] < 0 else "",
            "width": f"{50 * min(1.0, abs(float(shares[modality]))):.1f}",
        }
        for modality, name in words["names"].items()
        if modality in shares
    ]


def _feature_bars(stored: list[dict]) -> list[dict[str, str]]:
    """The table view's rows as the page lays them out: ``name``, ``title`` (the signed
    score), ``colour``, ``side`` ("pos"/"neg"/"") and ``width`` (the bar's length in percent
    of the whole track, zero in its middle)."""
    return [
        {
            "name": r["name"],
            "title": r["title"],
            "colour": r["colour"],
            "side": {"supports": "pos", "opposes": "neg"}.get(r["sign"], ""),
            "width": f"{50 * float(r['fraction']):.1f}",
        }
        for r in stored
    ]


# The views drawn on a colour scale, which the page's legend states.
SCALE_VIEWS = ("heatmap", "tokens", "attention", "interaction") + MODALITY_VIEWS
_KIND_OF_VIEW = {view: kind for kind, view in MODALITY_VIEW_OF_KIND.items()}


def _stored_scale(view: str, row: Explanation) -> dict | None:
    summary = row.summary or {}
    if view == "interaction":
        return summary.get("colour_scale") or None
    scales = summary.get("colour_scales") or {}
    if view == "tokens":
        return scales.get("text")
    if view in _KIND_OF_VIEW:
        return next((scales[m] for m in sorted(scales) if modality_kind(m) == _KIND_OF_VIEW[view]), None)
    return next((scales[m] for m in sorted(IMAGE_MODALITIES) if m in scales), None)


def _colour_scales(views: list[str], rows: dict[str, dict[str, Explanation]]) -> list[dict[str, str]]:
    """One legend entry per colour view shown (``view``, ``name``, ``low``, ``high``). Every
    candidate of an item is drawn on one scale (precompute draws them together), so the
    first stored row states it. Rows drawn before the scales were stored carry their legend
    inside the PNG and get none here."""
    out = []
    for view in VIEW_ORDER:
        if view not in views or view not in SCALE_VIEWS:
            continue
        source = _view_source(view)
        for by_source in rows.values():
            row = by_source.get(source)
            scale = _stored_scale(view, row) if row is not None and row.status == Explanation.Status.DONE else None
            if scale:
                out.append({"view": view, "name": VIEW_NAMES[view], "low": scale["low"], "high": scale["high"]})
                words = (row.summary.get("colour_scales") or {}).get("text") if view == "attention" else None
                if words:  # the attention view's words have their own scale, as the tokens view's do
                    out.append(
                        {
                            "view": "attention-words",
                            "name": "Attention (words)",
                            "low": words["low"],
                            "high": words["high"],
                        }
                    )
                break
    return out


def _patch_grid(views: list[str], rows: dict[str, dict[str, Explanation]]) -> dict[str, Any] | None:
    """The patch grid of the item's image, in percent of the image, for the page to draw over
    the picture when a view names patches by it ("B3"). The same for every candidate."""
    if not {"interaction", "top_pairs"} & set(views):
        return None
    for by_source in rows.values():
        row = by_source.get("interaction")
        grid = (row.summary or {}).get("patch_grid") if row is not None else None
        if grid and grid.get("width") and grid.get("height"):

            def cells(axis: str, extent: float) -> list[dict[str, str]]:
                return [
                    {
                        "label": c["label"],
                        "start": f"{100 * c['start'] / extent:.3f}",
                        "size": f"{100 * (c['end'] - c['start']) / extent:.3f}",
                    }
                    for c in grid[axis]
                ]

            return {
                "modality": grid["modality"],
                "columns": cells("columns", grid["width"]),
                "rows": cells("rows", grid["height"]),
            }
    return None


def assignment_phase_counts(*, participant: Participant) -> dict[str, dict[str, int]]:
    """Per phase, the participant's leases that count (all but expired ones) and how many of
    them are answered, in one query."""
    rows = (
        participant.assignments.exclude(status=Assignment.Status.EXPIRED)
        .values("phase")
        .annotate(total=Count("id"), answered=Count("id", filter=Q(status=Assignment.Status.ANSWERED)))
    )
    return {row["phase"]: {"total": row["total"], "answered": row["answered"]} for row in rows}


def assignment_media_key(*, view: str | None = None, index: int = 0, modality: str | None = None) -> str:
    """The tail of a media URL after the assignment's ID, as ``Assignment.media`` keys it:
    ``input/<modality>`` or ``v/<view>/<index>`` (``index``: the candidate's place in the
    order shown, so the URL names neither label nor item)."""
    return f"input/{modality}" if modality is not None else f"v/{view}/{index}"


# The entry of ``Assignment.media`` that names the study whose URLs the map answers.
MEDIA_STUDY_KEY = "study"


def assignment_media_file(*, study_public_id: str, assignment_public_id, key: str) -> str:
    """The stored file (relative to MEDIA_ROOT) one media URL of an active assignment serves,
    or "". One query on one table's unique index (a join would cost more in planning than
    the lookup itself); no session: the assignment's random UUID is the capability, as the
    page that embeds the URL is the participant's own."""
    try:
        media = Assignment.objects.values_list("media", flat=True).get(
            public_id=assignment_public_id, status=Assignment.Status.ACTIVE
        )
    except Assignment.DoesNotExist:
        return ""
    if media.get(MEDIA_STUDY_KEY) != study_public_id or key == MEDIA_STUDY_KEY:
        return ""
    return media.get(key, "")


# The series as the page draws it (an inline SVG), in SVG user units.
SERIES_WIDTH, SERIES_HEIGHT = 480, 120


def _inputs_shown(modalities, payload: dict) -> dict[str, list]:
    """The tabular and series inputs of an item as the page shows them: ``tables`` (per
    modality, its features' ``name`` and ``value`` in name order, as the feature bars list
    them) and ``series`` (per modality, the ``points`` of its line and its smallest and
    largest value). Nothing but the input's own names and numbers."""
    tables, series = [], []
    for m in modalities:
        kind, value = modality_kind(m), payload.get(m)
        if kind == "tabular" and isinstance(value, dict):
            tables.append(
                {
                    "modality": m,
                    "rows": [{"name": str(k), "value": value_text(float(v))} for k, v in sorted(value.items())],
                }
            )
        elif kind == "series" and isinstance(value, list) and value:
            points = series_points(value, width=SERIES_WIDTH, height=SERIES_HEIGHT)
            series.append(
                {
                    "modality": m,
                    "points": " ".join(f"{x:.1f},{y:.1f}" for x, y in points),
                    "low": value_text(float(min(value))),
                    "high": value_text(float(max(value))),
                    "steps": len(value),
                    "width": SERIES_WIDTH,
                    "height": SERIES_HEIGHT,
                }
            )
    return {"tables": tables, "series": series}


def _instructed_label(study: Study, assignment: Assignment) -> str:
    """What an instructed attention check asks for, as its page words it; "" on other items."""
    if assignment.check_type != Assignment.Check.INSTRUCTED:
        return ""
    if study.task == RATIONALE:
        return rationale_instruction(study=study, item=assignment.item, expected=assignment.expected_answer)
    return assignment.expected_answer


def assignment_page(*, participant: Participant, assignment: Assignment) -> dict[str, Any]:
    """Everything an item page shows, for any phase. Before an answer nothing here names the
    model's prediction or the gold label: explanations follow the candidate order recorded
    on the assignment, or (predicted_unlabelled) one panel with no class name. Only the
    learning phase reveals the model's answer.

    Pictures (the input's and the explanations') come inside the page as data URIs, ``src`` of
    each entry of ``images`` and of the panels' images, so that an item page is one request;
    ``src`` is "" where the stored file cannot be inlined and the page names its URL instead.
    ``media`` maps each media URL key (``assignment_media_key``) to the stored file, and
    ``MEDIA_STUDY_KEY`` to the study's public ID, for ``assignment_serve`` to fix on the
    assignment: the sound of an audio input is still fetched by URL, and the picture URLs keep
    answering. ``participant`` comes with its
    study (and the study's model) and condition loaded."""
    study = participant.study
    phase = assignment.phase
    condition = participant.condition if participant.condition_id == assignment.condition_id else assignment.condition
    # a rationale page shows no explanation (its gold answer's explanation is for the analysis)
    rationale = study_task(study.task).answer == "rationale"
    if assignment.left_condition_id:  # preference: the left of the two arms compared
        condition = assignment.left_condition
    views = [] if phase == Assignment.Phase.PRETEST or rationale else list(condition.views)
    letters = ANSWER_KEYS
    unlabelled = study.explanation_display == "predicted_unlabelled"
    predicted = None
    if phase == Assignment.Phase.LEARNING or (views and unlabelled):
        predicted = (
            Prediction.objects.filter(model_id=study.model_id, item_id=assignment.item_id)
            .values_list("label", flat=True)
            .get()
        )
    labels = ([predicted] if unlabelled else list(assignment.candidate_order)) if views else []
    rows = (
        _explanation_rows(study=study, item=assignment.item_id, labels=labels, method=condition.method) if views else {}
    )
    image_modalities = [m for m in study.model.modalities if m in IMAGE_MODALITIES]
    media = {MEDIA_STUDY_KEY: study.public_id}
    media.update(
        {
            assignment_media_key(modality=m): assignment.item.payload[m]
            for m in image_modalities
            if assignment.item.payload.get(m)
        }
    )
    words = study_modality_words(study=study)
    candidates = []
    for index, label in enumerate(assignment.candidate_order):
        panel = (
            _panel(views, rows.get(label, {}), words=words)
            if views and not unlabelled
            else {"images": [], "files": {}, "tokens": []}
        )
        media.update({assignment_media_key(view=view, index=index): path for view, path in panel["files"].items()})
        # The answer keys are the letters (digits set the confidence); only the first 26 answers have one.
        candidates.append(
            {
                "index": index,
                "key": letters[index] if index < len(letters) else "",
                "letter": letters[index % 26],
                "label": label,
                **panel,
            }
        )
    shared = _panel(views, rows.get(labels[0], {}), words=words) if views and unlabelled and labels else None
    if shared:
        media.update({assignment_media_key(view=view, index=0): path for view, path in shared["files"].items()})
    # Preference: the right-hand explanation, another arm's views of the same stored explanation.
    right_views = list(assignment.right_condition.views) if assignment.right_condition_id and views else []
    right_rows = rows
    if right_views and assignment.right_condition.method != condition.method:
        right_rows = _explanation_rows(
            study=study, item=assignment.item_id, labels=labels, method=assignment.right_condition.method
        )
    right = _panel(right_views, right_rows.get(labels[0], {}), words=words) if right_views and labels else None
    if right:
        media.update({assignment_media_key(view=view, index=1): path for view, path in right["files"].items()})
    both_views = views + [v for v in right_views if v not in views]
    counts = assignment_phase_counts(participant=participant)
    phases = [p for p in ("pretest", "learning", "test") if counts.get(p)]
    mine = counts.get(phase, {"total": 0, "answered": 0})
    text_modalities = [m for m in study.model.modalities if modality_kind(m) == "text"]
    audio_modalities = [m for m in study.model.modalities if modality_kind(m) == "audio"]
    media.update(
        {
            assignment_media_key(modality=m): assignment.item.payload[m]
            for m in audio_modalities
            if assignment.item.payload.get(m)
        }
    )
    return {
        "task": study.task,
        # counterfactual: the edited input, its description and the model's answer on the original
        "counterfactual": assignment_counterfactual(study=study, assignment=assignment),
        # verification: the model's answer, which the page shows beside its explanation
        "shown_answer": assignment.candidate_order[0] if study_task(study.task).shows_model_answer else None,
        "phase": phase,
        "phase_title": PHASE_TITLES[phase],
        "words": words,
        "phase_number": phases.index(phase) + 1 if phase in phases else 1,
        "n_phases": len(phases),
        "candidates": candidates,
        "shared_panel": shared,
        "right_panel": right,
        "rating_scales": RATING_SCALES if study.task == RATING else (),
        "views": views,
        "model_answer": predicted if phase == Assignment.Phase.LEARNING else None,
        "instructed_label": _instructed_label(study, assignment),
        "texts": [(m, assignment.item.payload.get(m, "")) for m in text_modalities],
        "images": [
            {"modality": m, "src": media_data_uri(assignment.item.payload.get(m) or "")} for m in image_modalities
        ],
        "audios": audio_modalities,
        **_inputs_shown(study.model.modalities, assignment.item.payload),
        "has_colour_views": bool(
            {"heatmap", "tokens", "attention", "interaction", "share", "features", "prediction", *MODALITY_VIEWS}
            & set(both_views)
        ),
        # Two methods are drawn on two scales: one printed scale would misread one side.
        "colour_scales": _colour_scales(both_views, rows) if right_rows is rows else [],
        "stage_tabs": _stage_tabs(both_views),
        "patch_grid": _patch_grid(both_views, rows),
        "confidence_levels": [1, 2, 3, 4, 5],
        "last_answer_key": letters[min(len(candidates), len(letters)) - 1] if candidates else "",
        "position": min(mine["answered"] + 1, mine["total"]),
        "total": mine["total"],
        "percent": int(100 * mine["answered"] / max(mine["total"], 1)),
        "media": media,
        **rationale_page(study=study, item=assignment.item),  # rationale task only
    }
