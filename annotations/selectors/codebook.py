"""The codebook of the CSV exports: every column's type, unit and meaning, defined once.

The exports (``annotations.selectors.exports``) take their column names from here, so a column
cannot be written without being described. A name with ``<placeholders>`` stands for a family
of columns whose names depend on the study (``item:<field>``: one per field of the dataset;
``metric:<method>:<metric>``: one per explanation method). The codebook is offered as a download
beside the exports (the study's own columns, placeholders filled in: ``study_codebook_records``
in ``exports.py``) and as ``docs/CODEBOOK.md`` (``codebook_markdown``, written by
``manage.py codebook``; ``tests/exports/test_codebook.py`` checks that the file, the definition
and the columns the exports emit agree).

No Django: plain data and text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "CODEBOOK",
    "CODEBOOK_COLUMNS",
    "TASK_CODEBOOK",
    "Column",
    "codebook_entry",
    "codebook_markdown",
]


@dataclass(frozen=True)
class Column:
    """One column (or, with ``<placeholders>`` in ``name``, a family of columns) of an export."""

    name: str
    type: str
    unit: str
    meaning: str

    @property
    def is_pattern(self) -> bool:
        return "<" in self.name

    def matches(self, column: str) -> dict[str, str] | None:
        """The placeholders' values if ``column`` is this column (or one of its family), else None."""
        if not self.is_pattern:
            return {} if column == self.name else None
        names = re.findall(r"<(\w+)>", self.name)
        pattern = re.escape(self.name)
        for name in names:
            pattern = pattern.replace(re.escape(f"<{name}>"), f"(?P<{name}>.+)", 1)
        found = re.fullmatch(pattern, column)
        return None if found is None else found.groupdict()


_BOOL = "boolean (True/False)"
_TEXT = "text"
_INT = "integer"
_NUM = "number"
_TIME = "date-time (ISO 8601, UTC)"
_SHARE = "share, 0–1"

#: Columns of the responses export written once per participant, before each of their rows.
RESPONSE_PARTICIPANT_CODEBOOK = [
    Column("study", _TEXT, "", "The study's public ID."),
    Column(
        "task",
        _TEXT,
        "",
        "What participants did: forward (predict the model's answer), verification (say whether the "
        "model's answer, shown, is right) or counterfactual (predict the model's answer on an edited input).",
    ),
    Column("condition", _TEXT, "", "The arm the participant was assigned to."),
    Column("is_baseline", _BOOL, "", "Whether the arm is the baseline (shows no explanation)."),
    Column("views", _TEXT, "", "The arm's explanation views joined by '+' ('none' for the baseline)."),
    Column(
        "explanation_methods",
        _TEXT,
        "",
        "The methods behind the arm's views joined by '+' (attribution, interaction, 'multiviz:<method>', 'attention:<chefer|rollout>'); 'none'.",
    ),
    Column(
        "explanation_display",
        _TEXT,
        "",
        "'all_candidates' (one explanation per candidate, random order), 'predicted_unlabelled' "
        "(the predicted class's, unnamed) or 'none'.",
    ),
    Column("participant", _TEXT, "", "The participant's random ID (UUID), the same in every export."),
    Column("platform", _TEXT, "", "How they arrived: link, invite, prolific or mturk."),
    Column(
        "platform_id",
        _TEXT,
        "",
        "The platform's worker ID: 'h:' + a keyed hash unique to this study, or the raw ID if the study opted in.",
    ),
    Column("screened_out", _BOOL, "", "Screened out by the attention checks during the session."),
    Column("excluded", _BOOL, "", "Meets a pre-registered exclusion rule (the rows are kept, flagged)."),
    Column(
        "exclusion_reasons",
        _TEXT,
        "",
        "The rules met, joined by ';' (e.g. max_attention_failures;max_fast_share); empty if none.",
    ),
]
#: Columns of the responses export, one set per answer.
RESPONSE_ROW_CODEBOOK = [
    Column("item", _TEXT, "", "The item's ID in the dataset."),
    Column("stratum", _TEXT, "", "The pool stratum the item was drawn from: model_right or model_wrong."),
    Column("phase", _TEXT, "", "pretest (no explanation), learning (answer shown) or test."),
    Column("is_attention_check", _BOOL, "", "An attention-check item (not in the accuracy)."),
    Column("attention_passed", _BOOL, "", "For an attention check, whether it was passed; empty otherwise."),
    Column("model_prediction", _TEXT, "label", "The model's answer for the item."),
    Column("gold_label", _TEXT, "label", "The dataset's correct answer."),
    Column("model_correct", _BOOL, "", "model_prediction equals gold_label."),
    Column(
        "guess", _TEXT, "label", "The participant's prediction of the model's answer (empty in a verification study)."
    ),
    Column(
        "correct_simulation",
        _BOOL,
        "",
        "guess equals model_prediction: the forward-simulation score (not the gold label); "
        "empty in a verification or counterfactual study.",
    ),
    Column("confidence", _INT, "1–5 scale", "How sure the participant was (1 guessing, 5 certain)."),
    Column("rt_ms", _INT, "milliseconds", "Time from the item's display to the answer."),
    Column("fast_response", _BOOL, "", "rt_ms is below the study's fast-response threshold (min_rt_ms)."),
    Column(
        "client_rt_ms",
        _INT,
        "milliseconds",
        "Browser-measured (performance.now): stimulus fully displayed (images decoded) to the submission; "
        "empty without JavaScript or when rejected (client_timing_flags). Never above rt_ms + 1000.",
    ),
    Column(
        "client_display_ms",
        _INT,
        "milliseconds",
        "Browser-measured: the page's navigation start to the stimulus fully displayed (load time).",
    ),
    Column("blur_count", _INT, "times", "Times the participant left the page (tab hidden or window blurred)."),
    Column("hidden_ms", _INT, "milliseconds", "Total time the page's tab was hidden while the item was open."),
    Column(
        "client_timing_flags",
        _TEXT,
        "",
        "Problems with the browser's timing, joined by ';' (no_client_timing, not_displayed, client_rt_invalid, "
        "client_rt_over_server, client_rt_far_below_server, display_invalid, focus_invalid); empty if none. "
        "Definitions: docs/STATISTICS.md, Response times.",
    ),
    Column(
        "candidate_order",
        "JSON list of text",
        "labels",
        "The candidate answers in the order shown to this participant.",
    ),
    Column("created_at", _TIME, "", "When the answer was stored."),
    Column(
        "verdict",
        _BOOL,
        "",
        "Verification studies: the participant said the model's answer (shown to them) is right; "
        "empty in a forward-simulation study.",
    ),
    Column(
        "verdict_correct",
        _BOOL,
        "",
        "Verification studies: verdict equals model_correct (accepting a right answer or rejecting a wrong one); "
        "empty otherwise.",
    ),
    Column(
        "edit_kind",
        _TEXT,
        "",
        "Counterfactual studies: the kind of edit shown (modality_baseline, top_k_removed, word_swap, adapter); "
        "empty otherwise.",
    ),
    Column(
        "edit_description",
        _TEXT,
        "",
        "Counterfactual studies: what changed in the input, as the participant read it; empty otherwise.",
    ),
    Column(
        "edit_prediction",
        _TEXT,
        "label",
        "Counterfactual studies: the model's answer on the edited input (what the guess predicts); empty otherwise.",
    ),
    Column(
        "correct_counterfactual",
        _BOOL,
        "",
        "Counterfactual studies: guess equals edit_prediction, the counterfactual-simulation score; empty "
        "otherwise (correct_simulation is then empty).",
    ),
    # Rating and preference studies (annotations/services/judging.py): empty in other tasks.
    Column("method_left", _TEXT, "", "Preference studies: the arm whose explanation was shown left (A)."),
    Column("method_right", _TEXT, "", "Preference studies: the arm whose explanation was shown right (B)."),
    Column("preferred", _TEXT, "", "Preference studies: the side chosen as helping more, left (A) or right (B)."),
    Column(
        "preferred_method",
        _TEXT,
        "",
        "Preference studies: the arm chosen (method_left or method_right); confidence holds how strongly.",
    ),
    Column(
        "rating_helpfulness",
        _INT,
        "1–5 scale",
        "Rating studies: how much the arm's explanation helps to see how the model decides (1 not at all, 5 very much).",
    ),
    Column(
        "rating_trust",
        _INT,
        "1–5 scale",
        "Rating studies: how much the participant would trust the model after it (1 not at all, 5 completely).",
    ),
    Column(
        "rating_understanding",
        _INT,
        "1–5 scale",
        "Rating studies: how well the participant understands the explanation (1 not at all, 5 fully).",
    ),
]
ITEM_BASE_CODEBOOK = [
    Column("study", _TEXT, "", "The study's public ID."),
    Column("item", _TEXT, "", "The item's ID in the dataset."),
    Column("role", _TEXT, "", "test, learning or attention (attention-check) item."),
    Column(
        "stratum",
        _TEXT,
        "",
        "The pool stratum the item was drawn from: model_right or model_wrong (whether the model was right).",
    ),
    Column("gold_label", _TEXT, "label", "The dataset's correct answer."),
    Column("model_prediction", _TEXT, "label", "The model's answer (empty before precompute)."),
    Column("model_correct", _BOOL, "", "model_prediction equals gold_label."),
    Column("prediction_probability", _NUM, "probability, 0–1", "The model's probability of its own answer."),
    Column(
        "probabilities",
        "JSON object: label → number",
        "probability, 0–1",
        "The model's probability of every label, keyed by label, in the model's label order.",
    ),
    Column(
        "answer_type",
        _TEXT,
        "",
        "The item's declared answer type (the dataset's answer_types.json); empty when it lists its "
        "choices itself or declares none.",
    ),
    Column(
        "n_candidates",
        "integer",
        "answers",
        "How many answers its participants choose from; chance on the item is 1 / n_candidates.",
    ),
    Column(
        "model_answer_valid",
        _BOOL,
        "",
        "The model's answer is one of the item's declared valid answers (it is offered anyway); empty "
        "when the dataset declares none.",
    ),
    Column(
        "group",
        _TEXT,
        "",
        "The item's protected attribute (the dataset's `group` field, used by the model report's bias "
        "section); empty when it has none.",
    ),
    Column(
        "evidence",
        "JSON object: modality → list (or mask)",
        "",
        "The item's evidence region (the dataset's `evidence` field, in its import format: patch cells "
        'such as "C4" for an image, word or row positions for text and tables; an imported mask as '
        '{"mask_grid": 64, "coverage": base64 of its 64x64 coverage bytes}); empty when it has none.',
    ),
]
#: The item's own fields, one column each (after ``ITEM_BASE_CODEBOOK``).
ITEM_FIELD_CODEBOOK = [
    Column(
        "item:<field>",
        "text, or JSON for tables and series",
        "as in the dataset",
        "The item's <field> field as the dataset gives it: inline text (such as the question) as is, "
        "a table or series as JSON, a file (image, audio) as its stored path.",
    ),
]
#: Automatic metrics of the explanation of the predicted class, per explanation method.
ITEM_METRIC_CODEBOOK = [
    Column(
        "metric:<method>:deletion_auc",
        _NUM,
        "probability, 0–1",
        "Area under the model's probability of its answer as the most important features are removed "
        "first (lower: the explanation found what matters).",
    ),
    Column(
        "metric:<method>:insertion_auc",
        _NUM,
        "probability, 0–1",
        "Area under the probability as the most important features are inserted first (higher is better).",
    ),
    Column(
        "metric:<method>:infidelity",
        _NUM,
        "squared logit",
        "Infidelity (Yeh et al. 2019): mean squared gap between the removed features' attribution and the "
        "target logit's change when they are removed (attributions rescaled, Captum's normalize; lower is better).",
    ),
    Column(
        "metric:<method>:sensitivity_max",
        _NUM,
        "ratio",
        "Max-sensitivity (Yeh et al. 2019): the largest relative change of the attribution under small "
        "input noise (lower is steadier).",
    ),
    Column(
        "metric:<method>:interaction_strength",
        _NUM,
        _SHARE,
        "|dividend| / (|effect_a| + |effect_b| + |dividend|) of the 2x2 modality interaction.",
    ),
    Column(
        "metric:<method>:interaction_dividend",
        _NUM,
        "logit",
        "The 2x2 Harsanyi dividend f(x_a,x_b) − f(x_a,b_b) − f(b_a,x_b) + f(b_a,b_b).",
    ),
    Column(
        "metric:<method>:modality_share:<modality>",
        _NUM,
        "share, −1–1",
        "The <modality> modality's summed attribution over the sum of absolute attributions of all modalities.",
    ),
]
PARTICIPANT_CODEBOOK = [
    Column("study", _TEXT, "", "The study's public ID."),
    Column("participant", _TEXT, "", "The participant's random ID (UUID), the same in every export."),
    Column("platform", _TEXT, "", "How they arrived: link, invite, prolific or mturk."),
    Column("platform_id", _TEXT, "", "As in the responses export: a keyed hash, or the raw ID if opted in."),
    Column("condition", _TEXT, "", "The arm the participant was assigned to."),
    Column("is_baseline", _BOOL, "", "Whether the arm is the baseline."),
    Column(
        "phase",
        _TEXT,
        "",
        "Where they are or stopped: consent, instructions, learning, pretest, test, survey or done.",
    ),
    Column("screened_out", _BOOL, "", "Screened out by the attention checks during the session."),
    Column("timed_out", _BOOL, "", "The time limit ran out before any answer (no completion code)."),
    Column(
        "partial",
        _BOOL,
        "",
        "The time limit ran out after some answers: paid through the partial-completion code, never the full one.",
    ),
    Column("started_at", _TIME, "", "When they entered the study (before consent)."),
    Column("finished_at", _TIME, "", "When they finished; empty if they did not."),
    Column("duration_s", _NUM, "seconds", "finished_at − started_at; empty if unfinished."),
    Column("helpfulness", _INT, "1–5 scale", "Survey: how helpful the explanations were; empty if skipped."),
    Column("comment", _TEXT, "", "Survey: free text (a leading =, +, −, @ is escaped with ')."),
    Column("n_test", _INT, "answers", "Test answers (attention checks left out)."),
    Column("n_pretest", _INT, "answers", "Pretest answers."),
    Column("n_attention", _INT, "answers", "Attention checks answered."),
    Column("n_attention_passed", _INT, "answers", "Attention checks passed."),
    Column("n_attention_failed", _INT, "answers", "Attention checks failed."),
    Column("attention_pass_rate", _NUM, _SHARE, "n_attention_passed / n_attention; empty without checks."),
    Column("median_rt_ms", _NUM, "milliseconds", "Median time per test answer."),
    Column("n_fast", _INT, "answers", "Test answers faster than the fast-response threshold."),
    Column("fast_share", _NUM, _SHARE, "n_fast / n_test."),
    Column(
        "test_accuracy",
        _NUM,
        _SHARE,
        "Share of test answers equal to the model's answer (verification: share of verdicts that are right).",
    ),
    Column(
        "median_client_rt_ms",
        _NUM,
        "milliseconds",
        "Median browser-measured time per test answer (known values only); empty if none.",
    ),
    Column("n_blurs", _INT, "times", "Times they left the page over test answers (known values); empty if none."),
    Column("hidden_ms", _NUM, "milliseconds", "Total time hidden over test answers (known values); empty if none."),
    Column("excluded", _BOOL, "", "Meets a pre-registered exclusion rule (rows kept, flagged)."),
    Column("exclusion_reasons", _TEXT, "", "The rules met, joined by ';'; empty if none."),
    Column(
        "platform_data",
        "JSON object",
        "",
        "The platform's session data (study and session IDs); only when the study exports raw IDs.",
    ),
]
SUMMARY_CODEBOOK = [
    Column(
        "key",
        _TEXT,
        "",
        "A dotted path into the analysis report, e.g. analysis.after_exclusions.simulation_accuracy.<arm>.all."
        "ci_low; a '.' inside a name is written %2E. Definitions: docs/STATISTICS.md.",
    ),
    Column(
        "value",
        "number, text or boolean",
        "that of the quantity the key names",
        "The value at that path (accuracies and effects as shares, 0–1; times in ms); lists joined by ';'.",
    ),
]

#: Every export's columns, in the order the export writes them.
CODEBOOK: dict[str, list[Column]] = {
    "responses": RESPONSE_PARTICIPANT_CODEBOOK + RESPONSE_ROW_CODEBOOK,
    "items": ITEM_BASE_CODEBOOK + ITEM_FIELD_CODEBOOK + ITEM_METRIC_CODEBOOK,
    "participants": PARTICIPANT_CODEBOOK,
    "summary": SUMMARY_CODEBOOK,
}
_EVIDENCE_UNITS = (
    "in the dataset's evidence format: grid cells (column letter, 1-based row, e.g. C4) for a picture, "
    "0-based positions for words and table rows"
)
#: Exports of one task only (the rationale task: ``annotations.selectors.rationale_exports``).
TASK_CODEBOOK: dict[str, list[Column]] = {
    "rationales": [
        Column("participant", _TEXT, "", "The participant's random ID (UUID), the same in every export."),
        Column("condition", _TEXT, "", "The arm the participant was assigned to."),
        Column("item", _TEXT, "", "The item's ID in the dataset."),
        Column("gold_label", _TEXT, "", "The item's gold answer: the answer whose evidence was marked."),
        Column("confidence", _INT, "1–5 scale", "How sure the participant was of their marks (1 guessing, 5 certain)."),
        Column("rt_ms", _INT, "milliseconds", "Time from the item's display to the answer."),
        Column("created_at", _TIME, "", "When the answer was stored."),
        Column(
            "units:<modality>",
            "text (space-separated list)",
            "",
            f"The units of <modality> the participant marked as evidence, {_EVIDENCE_UNITS}; empty: none marked.",
        ),
        Column(
            "n_units:<modality>",
            _INT,
            "units",
            "How many units <modality> offered on this item (the grid's cells, the words, the table's rows; 0: none).",
        ),
    ],
    "rationale_items": [
        Column("item", _TEXT, "", "The item's ID in the dataset."),
        Column("gold_label", _TEXT, "", "The item's gold answer: the answer whose evidence was marked."),
        Column("n_annotators", _INT, "participants", "How many participants marked this item."),
        Column(
            "evidence",
            "JSON object",
            "",
            "The aggregated rationale of the picture and the words, as a dataset line's evidence field: the "
            'picture\'s cells as the area they cover ({"mask_grid": 64, "coverage": base64}, so a model with '
            'another patch grid reads it by area), the words as positions (e.g. {"text": [3]}); table rows, '
            "numbered in the page's name order, are left out. The file imports back with manage.py "
            "import_evidence. Empty when no unit has a majority.",
        ),
        Column(
            "units:<modality>",
            "text (space-separated list)",
            "",
            f"The units of <modality> marked by a strict majority (more than half) of the item's annotators, "
            f"{_EVIDENCE_UNITS}.",
        ),
        Column(
            "support:<modality>",
            "text (space-separated shares, 0–1)",
            "",
            "For each unit of units:<modality>, in order, the share of the item's annotators who marked it.",
        ),
        Column("n_units:<modality>", _INT, "units", "How many units <modality> offered on this item."),
    ],
}
#: The columns of the codebook itself, as a CSV download.
CODEBOOK_COLUMNS = ["export", "column", "type", "unit", "meaning"]


def codebook_entry(*, export: str, column: str) -> tuple[Column, dict[str, str]] | None:
    """The codebook's entry for ``column`` of ``export`` and the values of its placeholders, or
    None if the codebook does not describe it."""
    for entry in CODEBOOK.get(export) or TASK_CODEBOOK[export]:
        found = entry.matches(column)
        if found is not None:
            return entry, found
    return None


def codebook_rows(*, columns: dict[str, list[str]]) -> Iterator[list[str]]:
    """``CODEBOOK_COLUMNS`` rows for the given columns of each export, placeholders filled in.
    ``ValueError`` for a column the codebook does not describe."""
    for export, names in columns.items():
        for column in names:
            found = codebook_entry(export=export, column=column)
            if found is None:
                raise ValueError(f"the codebook has no entry for column {column!r} of the {export} export")
            entry, values = found
            meaning = entry.meaning
            for name, value in values.items():
                meaning = meaning.replace(f"<{name}>", f"'{value}'")
            yield [export, column, entry.type, entry.unit, meaning]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def codebook_markdown() -> str:
    """``docs/CODEBOOK.md``: every export's columns as tables."""
    lines = [
        "# Codebook of the CSV exports",
        "",
        "Generated from `annotations/selectors/codebook.py` by `python manage.py codebook --out docs/CODEBOOK.md`;",
        "`tests/exports/test_codebook.py` checks that this file, the definition and the exports agree. The",
        "dashboard's Downloads card and `GET /api/studies/<id>/exports/codebook.csv` give the same",
        "descriptions for one study's own columns (placeholders filled in).",
        "",
        "A name with `<placeholders>` stands for one column per value: `<field>` per field of the",
        "dataset's items, `<method>` per explanation method with stored metrics (and the study's own),",
        "`<modality>` per modality of the model. Empty cells are missing values. Booleans are written",
        "`True`/`False`.",
    ]
    titles = {
        "responses": "one row per answer (researcher previews left out)",
        "items": "one row per item of the study's pool",
        "participants": "one row per participant (previews left out)",
        "summary": "the analysis report, one row per number",
        "rationales": "rationale studies only: one row per participant and item",
        "rationale_items": "rationale studies only: one row per item, the aggregated rationale",
    }
    for export, entries in {**CODEBOOK, **TASK_CODEBOOK}.items():
        lines += [
            "",
            f"## {export}.csv — {titles[export]}",
            "",
            "| column | type | unit | meaning |",
            "|---|---|---|---|",
        ]
        lines += [f"| `{c.name}` | {_cell(c.type)} | {_cell(c.unit)} | {_cell(c.meaning)} |" for c in entries]
    return "\n".join(lines) + "\n"
