"""What participant pages call a study's inputs: one display name per modality of its model
(the researcher's, ``Study.design["modality_names"]``, else a default by the modality's kind),
and the default consent and instructions built from them, so that no page speaks of a picture
where there is none. Reads only the study and its model, which every participant page loads:
no query of its own."""

from __future__ import annotations

from typing import Any

from annotations.models import Study
from annotations.study_tasks import COUNTERFACTUAL, PREFERENCE, RATING, VERIFICATION
from workers.engine.dataset import modality_kind

#: The name a participant reads for a modality of each kind, unless the researcher sets one.
DEFAULT_MODALITY_NAMES = {
    "image": "the picture",
    "text": "the question",
    "tabular": "the table",
    "series": "the series",
    "audio": "the recording",
    "file": "the file",
}
MODALITY_NAME_MAX = 60


def modality_default_name(*, modality: str) -> str:
    return DEFAULT_MODALITY_NAMES[modality_kind(modality)]


def _listed(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def study_modality_words(*, study: Study) -> dict[str, Any]:
    """``names`` (modality -> display name, in the model's order), ``inputs`` ("the table and
    the note"), ``has_image``, ``table_name`` (the first table's name, or ""), ``share_caption`` (the share view's caption), and the default
    ``consent`` and ``instructions`` (used when the researcher wrote none)."""
    set_names = (study.design or {}).get("modality_names") or {}
    modalities = [str(m) for m in study.model.modalities]
    names = {m: set_names.get(m) or modality_default_name(modality=m) for m in modalities}
    inputs = _listed(list(names.values())) if names else "the input"
    kinds = {modality_kind(m) for m in modalities}
    if kinds == {"image", "text"} and not set_names:  # the classic visual question: say it plainly
        consent_what = "pictures, each with a question"
        instructions = "An AI model looked at each picture and answered the question below it."
    else:
        consent_what = f"examples of what an AI model was given ({inputs})"
        instructions = f"An AI model was given {inputs} of each example, and gave an answer."
    if study.task == VERIFICATION:
        consent = (
            f"In this study you will see {consent_what} and the answers an AI model gave, and you will say whether "
            "each answer is right. Your answers are stored anonymously for research. You can stop at any time."
        )
        instructions += " Your task is to judge whether the model's answer is right: the model is sometimes wrong."
    elif study.task == COUNTERFACTUAL:
        consent = (
            f"In this study you will see {consent_what} and the answers an AI model gave, then the same examples "
            "changed, and you will guess what the model answers on the changed ones. Your answers are stored "
            "anonymously for research. You can stop at any time."
        )
        instructions += " Your task is to predict what the model answers when its input is changed."
    elif study.task in (RATING, PREFERENCE):
        judged = (
            "which of two explanations helps more" if study.task == PREFERENCE else "how helpful each explanation is"
        )
        consent = (
            f"In this study you will see {consent_what} and explanations of how an AI model answered, and you will "
            f"judge {judged}. Your answers are stored anonymously for research. You can stop at any time."
        )
        instructions += f" Your task is to judge {judged}: there are no right or wrong answers."
    else:
        consent = (
            f"In this study you will see {consent_what}, and you will guess what the AI model answered. "
            "Your answers are stored anonymously for research. You can stop at any time."
        )
        instructions += " Your task is not to answer yourself, but to predict what the model answered — the model is sometimes wrong."
    return {
        "names": names,
        "inputs": inputs,
        "has_image": "image" in kinds,
        "table_name": next((n for m, n in names.items() if modality_kind(m) == "tabular"), ""),
        "share_caption": " vs. ".join(_capitalised(n) if k == 0 else n for k, n in enumerate(names.values()))
        or "Share of each input",
        "consent": consent,
        "instructions": instructions,
    }
