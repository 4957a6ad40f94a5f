"""Krippendorff's alpha, Fleiss' kappa and Dawid–Skene, against references and closed forms."""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from annotations.analysis import (
    agreement,
    dawid_skene,
    fleiss_kappa,
    krippendorff_alpha,
    krippendorff_alpha_from_counts,
    responses_simulate,
)

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", p. 8: 4 coders × 12 units.
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
        [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan],
    ]
)

# Fleiss' kappa example from Wikipedia (10 subjects, 14 raters, 5 categories): kappa = 0.210.
FLEISS_WIKIPEDIA = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


def _random_reliability_data(seed: int, *, coders: int, units: int, missing: float) -> np.ndarray:
    """Ratings 1–5 around a per-unit value, with a share ``missing`` of cells set to NaN."""
    rng = np.random.default_rng(seed)
    centre = rng.integers(1, 6, units)
    data = np.clip(
        centre[None, :] + rng.integers(-1, 2, (coders, units)) * (rng.random((coders, units)) < 0.6), 1, 5
    ).astype(float)
    data[rng.random(data.shape) < missing] = np.nan
    return data


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_alpha_matches_krippendorff_package(seed: int, level: str) -> None:
    data = _random_reliability_data(seed, coders=3 + seed % 5, units=20 + 7 * seed, missing=0.1 + 0.05 * seed)
    ours = krippendorff_alpha(data, level=level)
    reference = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert ours == pytest.approx(reference, abs=1e-12)


def test_alpha_pure_noise_matches_package() -> None:
    rng = np.random.default_rng(42)
    data = rng.integers(1, 6, (7, 60)).astype(float)
    data[rng.random(data.shape) < 0.4] = np.nan
    for level in ("nominal", "ordinal"):
        assert krippendorff_alpha(data, level=level) == pytest.approx(
            krippendorff.alpha(reliability_data=data, level_of_measurement=level), abs=1e-12
        )


def test_alpha_published_example() -> None:
    assert round(krippendorff_alpha(KRIPPENDORFF_2011, level="nominal"), 3) == 0.743
    assert round(krippendorff_alpha(KRIPPENDORFF_2011, level="ordinal"), 3) == 0.815
    assert round(krippendorff_alpha(KRIPPENDORFF_2011, level="interval"), 3) == 0.849


def test_alpha_hand_computed() -> None:
    """Units (a,a), (a,b), (b,b), (b,b): o_aa=2, o_ab=o_ba=1, o_bb=4; n_a=3, n_b=5, n=8.

    alpha = 1 − (n − 1) · (o_ab + o_ba) / (2 n_a n_b) = 1 − 7·2/30 = 8/15.
    """
    data = np.array([["a", "a", "b", "b"], ["a", "b", "b", "b"]], dtype=object)
    assert krippendorff_alpha(data, level="nominal") == pytest.approx(8 / 15, abs=1e-15)
    # the same from counts (units × values)
    counts = np.array([[2, 0], [1, 1], [0, 2], [0, 2]])
    assert krippendorff_alpha_from_counts(counts, level="nominal") == pytest.approx(8 / 15, abs=1e-15)


def test_alpha_undefined_cases() -> None:
    assert krippendorff_alpha(np.array([[1.0, np.nan], [np.nan, 2.0]]), level="nominal") is None  # nothing pairable
    assert krippendorff_alpha(np.array([[3.0, 3.0], [3.0, 3.0]]), level="ordinal") is None  # one value only
    assert krippendorff_alpha(np.array([[1.0, 2.0], [1.0, 2.0]]), level="ordinal") == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_fleiss_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_raters, n_categories = 2 + seed, 2 + seed % 4
    table = rng.multinomial(n_raters, rng.dirichlet(np.ones(n_categories)), size=15 + 5 * seed)
    assert fleiss_kappa(table) == pytest.approx(statsmodels_fleiss_kappa(table, method="fleiss"), abs=1e-12)


def test_fleiss_published_example_and_errors() -> None:
    assert fleiss_kappa(FLEISS_WIKIPEDIA) == pytest.approx(statsmodels_fleiss_kappa(FLEISS_WIKIPEDIA), abs=1e-12)
    assert round(fleiss_kappa(FLEISS_WIKIPEDIA), 3) == 0.210
    with pytest.raises(ValueError, match="same number of raters"):
        fleiss_kappa(np.array([[2, 1], [1, 1]]))
    assert fleiss_kappa(np.array([[3, 0], [3, 0]])) is None


def test_agreement_hand_computed(hand_df: pd.DataFrame) -> None:
    result = agreement(hand_df)
    # "none": units i1 (cat, cat), i2 (cat, dog) -> n_cat=3, n_dog=1, n=4: alpha = 1 − 3·2/(2·3·1) = 0
    assert result["none"]["alpha_nominal_guess"] == pytest.approx(0.0, abs=1e-15)
    # kappa: p = (3/4, 1/4), P_i = (1, 0): (0.5 − 0.625) / 0.375 = −1/3
    assert result["none"]["fleiss_kappa"] == pytest.approx(-1 / 3, abs=1e-15)
    # "expl": i1 (cat, cat), i2 (dog, dog): perfect agreement
    assert result["expl"]["alpha_nominal_guess"] == 1.0
    assert result["expl"]["fleiss_kappa"] == 1.0
    assert result["none"]["n_responses"] == 4 and result["none"]["raters_per_item_min"] == 2


def test_agreement_per_arm_matches_references() -> None:
    """Fully crossed arms (every participant rates every item): alpha and kappa vs the packages."""
    df = responses_simulate(
        seed=4, arm_logits={"none": 0.0, "expl": 1.0}, n_participants_per_arm=8, n_items=25, items_per_participant=25
    )
    df = df.drop(index=df.sample(frac=0.15, random_state=1).index)  # missing cells for alpha
    result = agreement(df)
    for arm, rows in df[df["phase"] == "test"].groupby("condition"):
        guesses = rows.pivot(index="participant", columns="item", values="guess")
        codes = guesses.apply(lambda column: column.map({"c0": 0.0, "c1": 1.0, "c2": 2.0})).to_numpy(dtype=float)
        confidence = rows.pivot(index="participant", columns="item", values="confidence").to_numpy(dtype=float)
        assert result[arm]["alpha_nominal_guess"] == pytest.approx(
            krippendorff.alpha(reliability_data=codes, level_of_measurement="nominal"), abs=1e-12
        )
        assert result[arm]["alpha_ordinal_confidence"] == pytest.approx(
            krippendorff.alpha(reliability_data=confidence, level_of_measurement="ordinal"), abs=1e-12
        )
        assert result[arm]["fleiss_kappa"] is None
        assert "unequal" in result[arm]["reasons"]["fleiss_kappa"]

    crossed = responses_simulate(seed=5, n_participants_per_arm=6, n_items=20, items_per_participant=20)
    result = agreement(crossed)
    for arm, rows in crossed.groupby("condition"):
        table, _ = aggregate_raters(
            rows.pivot(index="item", columns="participant", values="guess")
            .apply(lambda column: column.map({"c0": 0, "c1": 1, "c2": 2}))
            .to_numpy()
        )
        assert result[arm]["fleiss_kappa"] == pytest.approx(statsmodels_fleiss_kappa(table), abs=1e-12)


def _simulated_crowd(
    seed: int, *, accuracies: list[float], n_items: int, raters_per_item: int, n_classes: int = 3
) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_items)
    rows = []
    for item in range(n_items):
        for rater in rng.choice(len(accuracies), raters_per_item, replace=False):
            right = rng.random() < accuracies[rater]
            label = truth[item] if right else (truth[item] + 1 + rng.integers(0, n_classes - 1)) % n_classes
            rows.append((f"i{item:03d}", f"r{rater:02d}", f"c{label}"))
    return pd.DataFrame(rows, columns=["item", "participant", "guess"]), truth


def test_dawid_skene_beats_majority_vote_with_spammers() -> None:
    accuracies = [0.9] * 3 + [1 / 3] * 12  # three careful raters, twelve random clickers
    df, truth = _simulated_crowd(0, accuracies=accuracies, n_items=300, raters_per_item=5)
    result = dawid_skene(df)
    truth_label = {f"i{item:03d}": f"c{label}" for item, label in enumerate(truth)}
    ds = np.mean([result.consensus[item] == label for item, label in truth_label.items()])
    mv = np.mean([result.majority_vote[item] == label for item, label in truth_label.items()])
    assert ds > mv + 0.1
    assert result.converged
    careful = [result.rater_accuracy[f"r{rater:02d}"] for rater in range(3)]
    random = [result.rater_accuracy[f"r{rater:02d}"] for rater in range(3, 15)]
    assert min(careful) > 0.75 and np.mean(random) < 0.5
    assert result.posterior.shape == (300, 3) and result.confusion.shape == (15, 3, 3)
    np.testing.assert_allclose(result.confusion.sum(axis=2), 1.0)


def test_dawid_skene_recovers_truth_with_good_raters() -> None:
    df, truth = _simulated_crowd(1, accuracies=[0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55], n_items=200, raters_per_item=7)
    result = dawid_skene(df)
    ds = np.mean([result.consensus[f"i{item:03d}"] == f"c{label}" for item, label in enumerate(truth)])
    mv = np.mean([result.majority_vote[f"i{item:03d}"] == f"c{label}" for item, label in enumerate(truth)])
    assert ds >= 0.95 and ds >= mv
    estimated = [result.rater_accuracy[f"r{rater:02d}"] for rater in range(7)]
    assert np.corrcoef(estimated, [0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55])[0, 1] > 0.9


def _crowd_kit_dawid_skene(df: pd.DataFrame, *, n_iter: int) -> pd.DataFrame:
    """crowd-kit 1.4.2's ``DawidSkene.fit`` step by step (its pandas operations, its 1e-10 clips,
    its base-2 logs), run for exactly ``n_iter`` rounds; returns the task × label posteriors.

    crowd-kit itself pulls in transformers, nltk and scikit-learn, so CI checks against this
    transcription; ``docs/STATISTICS.md`` reports the one-off comparison with the package."""
    eps = 1e-10
    data = pd.DataFrame(
        {"task": df["item"].astype(str), "worker": df["participant"].astype(str), "label": df["guess"].astype(str)}
    )
    counts = data.groupby(["task", "label"]).size().unstack(fill_value=0).astype(float)
    probas = counts.div(counts.sum(axis=1), axis=0)  # MajorityVote.fit_predict_proba

    def m_step(probas: pd.DataFrame) -> pd.DataFrame:
        joined = data.join(probas, on="task").drop(columns=["task"])
        errors = joined.groupby(["worker", "label"], sort=False).sum().clip(lower=eps)
        return errors / errors.groupby("worker", sort=False).sum()

    def e_step(priors: pd.Series, errors: pd.DataFrame) -> pd.DataFrame:
        joined = data.join(np.log2(errors), on=["worker", "label"]).drop(columns=["worker", "label"])
        log_likelihoods = np.log2(priors.clip(lower=eps)) + joined.groupby("task", sort=False).sum()
        scaled = np.exp2(log_likelihoods.sub(log_likelihoods.max(axis=1), axis=0))
        return scaled.div(scaled.sum(axis=1), axis=0)

    priors, errors = probas.mean(), m_step(probas)
    for _ in range(n_iter):
        probas = e_step(priors, errors)
        priors, errors = probas.mean(), m_step(probas)
        probas = probas.clip(lower=eps)  # crowd-kit's ELBO clips the posteriors in place
    return probas


def _crowd_kit_dawid_skene_arrays(df: pd.DataFrame, *, n_iter: int) -> pd.DataFrame:
    """The same rounds as :func:`_crowd_kit_dawid_skene` (crowd-kit's steps, clips and base-2
    logs), on arrays: ``errors[worker, answered label, true label]`` holds crowd-kit's error
    table, with zeros where the worker never gave the label (crowd-kit has no row there)."""
    eps = 1e-10
    tasks, task = np.unique(df["item"].astype(str).to_numpy(), return_inverse=True)
    _, worker = np.unique(df["participant"].astype(str).to_numpy(), return_inverse=True)
    labels, label = np.unique(df["guess"].astype(str).to_numpy(), return_inverse=True)
    n_tasks, n_labels, n_workers = len(tasks), len(labels), int(worker.max()) + 1
    counts = np.zeros((n_tasks, n_labels))
    np.add.at(counts, (task, label), 1.0)
    probas = counts / counts.sum(axis=1, keepdims=True)  # MajorityVote.fit_predict_proba
    given = np.zeros((n_workers, n_labels, 1), dtype=bool)
    given[worker, label] = True

    def m_step(probas: np.ndarray) -> np.ndarray:
        errors = np.zeros((n_workers, n_labels, n_labels))
        np.add.at(errors, (worker, label), probas[task])
        errors = np.where(given, np.maximum(errors, eps), 0.0)
        return errors / errors.sum(axis=1, keepdims=True)

    def e_step(priors: np.ndarray, errors: np.ndarray) -> np.ndarray:
        log_likelihoods = np.zeros((n_tasks, n_labels))
        np.add.at(log_likelihoods, task, np.log2(errors[worker, label]))
        log_likelihoods += np.log2(np.maximum(priors, eps))
        scaled = np.exp2(log_likelihoods - log_likelihoods.max(axis=1, keepdims=True))
        return scaled / scaled.sum(axis=1, keepdims=True)

    priors, errors = probas.mean(axis=0), m_step(probas)
    for _ in range(n_iter):
        probas = e_step(priors, errors)
        priors, errors = probas.mean(axis=0), m_step(probas)
        probas = np.maximum(probas, eps)  # crowd-kit's ELBO clips the posteriors in place
    return pd.DataFrame(probas, index=tasks, columns=labels)


def _crowd_case(case: int) -> pd.DataFrame:
    if case < 3:
        accuracies, n_items, raters = [
            ([0.9] * 3 + [1 / 3] * 12, 120, 5),
            ([0.85, 0.8, 0.75, 0.7, 0.65, 0.6], 80, 4),
            ([0.8, 0.6, 0.5, 0.4], 50, 3),
        ][case]
        return _simulated_crowd(10 + case, accuracies=accuracies, n_items=n_items, raters_per_item=raters)[0]
    # one arm of a simulated study: sparse raters, 20 answers each
    study = responses_simulate(seed=3, n_participants_per_arm=30, n_items=30, items_per_participant=15)
    return study[(study["phase"] == "test") & (study["condition"] == "baseline")]


@pytest.mark.parametrize(("case", "n_iter"), [(0, 30), (3, 60)])
def test_the_array_transcription_takes_crowd_kits_pandas_steps(case: int, n_iter: int) -> None:
    """The pandas transcription costs about 15 ms a round, so the runs to convergence below use
    the array one; here both take the same rounds (case 3: past convergence, case 0: the first
    30 of its 700) and agree to rounding."""
    df = _crowd_case(case)
    pandas_steps = _crowd_kit_dawid_skene(df, n_iter=n_iter)
    array_steps = _crowd_kit_dawid_skene_arrays(df, n_iter=n_iter)
    assert sorted(array_steps.index) == sorted(pandas_steps.index)
    np.testing.assert_allclose(
        array_steps.reindex(index=pandas_steps.index, columns=pandas_steps.columns).to_numpy(),
        pandas_steps.to_numpy(),
        rtol=0,
        atol=1e-13,
    )


@pytest.mark.parametrize("case", range(4))
def test_dawid_skene_agrees_with_crowd_kit_run_to_convergence(case: int) -> None:
    df = _crowd_case(case)
    ours = dawid_skene(df, tol=1e-13)
    assert ours.converged and ours.max_posterior_change <= 1e-13
    theirs = _crowd_kit_dawid_skene_arrays(df, n_iter=ours.n_iter + 50)
    theirs = theirs.reindex(index=list(ours.items), columns=list(ours.classes)).fillna(0.0).to_numpy()
    np.testing.assert_allclose(ours.posterior, theirs, rtol=0, atol=1e-9)


def test_dawid_skene_reports_an_unconverged_fit() -> None:
    df, _ = _simulated_crowd(2, accuracies=[0.8, 0.6, 0.5, 0.4], n_items=50, raters_per_item=3)
    capped = dawid_skene(df, max_iter=5)
    assert capped.n_iter == 5 and not capped.converged and capped.max_posterior_change > 1e-10
    full = dawid_skene(df)
    assert full.converged and full.n_iter > 5 and full.max_posterior_change <= 1e-10
    # a fixed point: one more round from the converged posteriors moves nothing beyond tol
    again = dawid_skene(df, tol=1e-13)
    np.testing.assert_allclose(full.posterior, again.posterior, rtol=0, atol=1e-8)
    study = responses_simulate(seed=3, n_participants_per_arm=30, n_items=30, items_per_participant=15)
    reported = agreement(study, max_iter=2)
    assert any(not found["dawid_skene"]["converged"] for found in reported.values())
    for found in reported.values():
        if not found["dawid_skene"]["converged"]:
            assert found["reasons"]["dawid_skene"].startswith("not converged: posteriors still moved by")


def test_dawid_skene_unanimous_raters_and_smoothing() -> None:
    """Raters who always agree: the posteriors are the agreed class (up to the 1e-10 floor).
    Smoothing is a Dirichlet prior: it pulls the estimates towards uniform confusion."""
    rows = [(f"i{item}", f"r{rater}", f"c{item % 3}") for item in range(12) for rater in range(4)]
    df = pd.DataFrame(rows, columns=["item", "participant", "guess"])
    result = dawid_skene(df)
    assert result.converged and result.n_iter <= 3
    assert result.consensus == {f"i{item}": f"c{item % 3}" for item in range(12)}
    np.testing.assert_allclose(result.posterior.max(axis=1), 1.0, rtol=0, atol=1e-9)
    assert min(result.rater_accuracy.values()) > 1 - 1e-9
    smoothed = dawid_skene(df, smoothing=1.0)
    assert smoothed.consensus == result.consensus
    assert max(smoothed.rater_accuracy.values()) < 0.99  # 4 + 1 over 4 + 3: the prior's pull
    with pytest.raises(ValueError, match="smoothing"):
        dawid_skene(df, smoothing=-1.0)


def test_dawid_skene_deterministic_and_row_order_free() -> None:
    df, _ = _simulated_crowd(2, accuracies=[0.8, 0.6, 0.5, 0.4], n_items=50, raters_per_item=3)
    first = dawid_skene(df, max_iter=50, tol=1e-9)
    second = dawid_skene(df.sample(frac=1.0, random_state=3), max_iter=50, tol=1e-9)
    assert first.consensus == second.consensus and first.rater_accuracy == second.rater_accuracy
    np.testing.assert_array_equal(first.posterior, second.posterior)
    assert dawid_skene(df, max_iter=1).n_iter == 1
