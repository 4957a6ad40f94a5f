"""Pure statistics over a DataFrame of responses (no Django; plots live in ``.plots``).

Entry points: :func:`load_responses_csv`, :func:`analyze`. Building blocks:
:func:`simulation_accuracy`, :func:`arm_effects`, :func:`arm_permutation_test`,
:func:`simulation_gain`, :func:`mixed_model`, :func:`agreement`, :func:`krippendorff_alpha`,
:func:`fleiss_kappa`, :func:`dawid_skene`, :func:`calibration`, :func:`chance_levels`, :func:`time_on_task`; participant
quality and the pre-registered exclusion rules (:mod:`.exclusions`); automatic metrics vs human
accuracy (:mod:`.correlation`); :func:`study_report` bundles them. Planning and monitoring:
:func:`power_sample_size`, :func:`power_from_pilot` (:mod:`.power`) and
:func:`sequential_monitor` (:mod:`.sequential`). Definitions are in each module's docstring;
``python -m annotations.analysis.coverage`` measures how well the intervals cover.

The quantities and their names: docs/DESIGN.md, "Quantities".
"""

from .accuracy import SUBSETS, arm_effects, arm_permutation_test, simulation_accuracy, simulation_gain
from .agreement import (
    DawidSkeneResult,
    agreement,
    dawid_skene,
    fleiss_kappa,
    krippendorff_alpha,
    krippendorff_alpha_from_counts,
)
from .calibration import calibration, calibration_table, confidence_forecast
from .chance import chance_levels, chance_table
from .correlation import (
    METRIC_PREFIX,
    item_accuracy,
    item_accuracy_table,
    load_items_csv,
    metric_accuracy_points,
    metric_columns,
    metric_human_correlation,
)
from .exclusions import (
    EXCLUSION_RULE_KEYS,
    ExclusionRules,
    apply_exclusion_rules,
    exclusion_rules_validate,
    exclusions_summary,
    participant_quality,
    participant_stats,
)
from .mixed import MIXED_MODEL_FORMULA, mixed_model
from .power import (
    power_at,
    power_capacity_advice,
    power_capacity_text,
    power_design_capacity,
    power_from_fit,
    power_from_pilot,
    power_sample_size,
)
from .report import analyze, jsonable, study_report
from .responses import load_responses_csv, responses_prepare
from .sequential import (
    SequentialPlan,
    alpha_spent,
    sequential_boundaries,
    sequential_monitor,
    sequential_plan_validate,
)
from .simulate import responses_simulate, simulated_accuracy_truth
from .timing import rt_summary, time_on_task

__all__ = [
    "EXCLUSION_RULE_KEYS",
    "MIXED_MODEL_FORMULA",
    "SequentialPlan",
    "alpha_spent",
    "mixed_model",
    "power_at",
    "power_capacity_advice",
    "power_capacity_text",
    "power_design_capacity",
    "power_from_fit",
    "power_from_pilot",
    "power_sample_size",
    "sequential_boundaries",
    "sequential_monitor",
    "sequential_plan_validate",
    "METRIC_PREFIX",
    "ExclusionRules",
    "SUBSETS",
    "apply_exclusion_rules",
    "exclusion_rules_validate",
    "exclusions_summary",
    "item_accuracy",
    "item_accuracy_table",
    "load_items_csv",
    "metric_accuracy_points",
    "metric_columns",
    "metric_human_correlation",
    "participant_quality",
    "participant_stats",
    "study_report",
    "DawidSkeneResult",
    "agreement",
    "analyze",
    "arm_effects",
    "arm_permutation_test",
    "calibration",
    "calibration_table",
    "chance_levels",
    "chance_table",
    "confidence_forecast",
    "dawid_skene",
    "fleiss_kappa",
    "jsonable",
    "krippendorff_alpha",
    "krippendorff_alpha_from_counts",
    "load_responses_csv",
    "responses_prepare",
    "responses_simulate",
    "rt_summary",
    "simulated_accuracy_truth",
    "simulation_accuracy",
    "simulation_gain",
    "time_on_task",
]
