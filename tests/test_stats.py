"""Statistics on synthetic data with known coefficients."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from effmodel.analysis import regressions as stats

TRUTH = {"depth": -0.45, "log_params": 0.2, "mnist": 0.5, "mean_spike_rate": -3.0, "Intercept": 1.0}


def synthetic(n, seed, b_depth=-0.45, b_size=0.2, noise=0.3, hetero=False, collinear=False):
    """Result rows whose log(factor) follows a known linear model."""
    rng = np.random.default_rng(seed)
    conv = rng.integers(1, 7, n)
    dense = rng.integers(1, 4, n)
    depth = conv + dense
    if collinear:  # size follows depth almost exactly, as in the reference set
        logp = 16 - 0.8 * depth + rng.normal(0, 0.05, n)
    else:
        logp = rng.uniform(9, 16, n)
    ds = np.where(np.arange(n) % 2 == 0, "mnist", "cifar10")
    rate = rng.uniform(0.01, 0.2, n)
    sd = noise * (0.2 + 0.5 * depth / depth.max()) if hetero else noise
    y = (TRUTH["Intercept"] + b_depth * depth + b_size * logp + TRUTH["mnist"] * (ds == "mnist")
         + TRUTH["mean_spike_rate"] * rate + rng.normal(0, 1, n) * sd)
    return pd.DataFrame({"model": [f"m{i}" for i in range(n)], "dataset": ds, "simulator": "fake", "depth": depth,
                         "conv_layers": conv, "dense_layers": dense, "params": np.round(np.exp(logp)),
                         "mean_spike_rate": rate, "factor": np.exp(y)})


def _truth_name(term):
    return "mnist" if term.startswith("C(dataset)") else term


def test_hc3_intervals_contain_the_true_coefficients():
    a = stats.analyse(stats.prepare(synthetic(400, seed=7, hetero=True)))
    assert a.main.cov_type == "HC3" and a.main.n == 400
    for t in a.main.terms:
        truth = TRUTH[_truth_name(t.name)]
        assert t.ci_low < truth < t.ci_high, (t.name, t.ci_low, truth, t.ci_high)
        assert t.ci_high - t.ci_low < 1.5  # informative, not just wide
    # Standardised coefficient, by a second method: least squares on z-scored
    # depth and log(factor) (the other terms as they are) gives it directly.
    df = stats.prepare(synthetic(400, seed=7, hetero=True))
    z = lambda v: (v - v.mean()) / v.std()  # noqa: E731
    X = np.column_stack([np.ones(len(df)), z(df["depth"]), df["log_params"], df["dataset"] == "mnist",
                         df["mean_spike_rate"]]).astype(float)
    beta = np.linalg.lstsq(X, z(df["log_factor"]).to_numpy(float), rcond=None)[0]
    assert a.main.term("depth").std_coef == pytest.approx(beta[1], rel=1e-9)


def test_hc3_interval_coverage_is_nominal_under_heteroskedasticity():
    """Across 150 synthetic data sets the 95% HC3 interval of depth covers the
    truth close to 95% of the time (plain OLS SEs would not be guaranteed to)."""
    hits = 0
    reps = 150
    for s in range(reps):
        df = stats.prepare(synthetic(80, seed=1000 + s, hetero=True))
        fit, _ = stats._model_fit("t", "log_factor ~ depth + log_params + C(dataset) + mean_spike_rate", df)
        t = fit.term("depth")
        hits += t.ci_low < TRUTH["depth"] < t.ci_high
    assert 0.89 <= hits / reps <= 0.99


def test_nested_comparison_picks_depth_when_truth_is_depth_only():
    df = stats.prepare(synthetic(150, seed=3, b_size=0.0))
    d = stats.dominance(df)
    assert d.verdict == "depth dominates"
    assert d.f_depth[1] < 1e-6 and d.f_size[1] > 0.05 and d.lr_size[1] > 0.05
    assert d.partial_r2_depth > 0.5 > d.partial_r2_size
    assert min(d.models, key=lambda k: d.models[k]["bic"]) == "depth-only"
    assert d.vif_depth < 2 and d.vif_size < 2


def test_nested_comparison_picks_size_and_both():
    d = stats.dominance(stats.prepare(synthetic(150, seed=4, b_depth=0.0, b_size=0.4)))
    assert d.verdict == "size dominates"
    assert min(d.models, key=lambda k: d.models[k]["bic"]) == "size-only"
    d = stats.dominance(stats.prepare(synthetic(150, seed=5, b_depth=-0.45, b_size=0.15)))
    assert d.verdict == "both matter, depth larger"
    d = stats.dominance(stats.prepare(synthetic(150, seed=6, b_depth=0.0, b_size=0.0)))
    assert d.verdict == "no effect detected"


def test_eight_collinear_points_cannot_be_separated():
    df = stats.prepare(synthetic(8, seed=11, b_size=0.0, noise=0.3, collinear=True))
    d = stats.dominance(df)
    assert d.verdict == "cannot separate"
    assert any("degrees of freedom" in r for r in d.reasons)
    assert max(d.vif_depth, d.vif_size) > 10
    # Even with 40 points, collinearity alone is enough to refuse a verdict.
    d40 = stats.dominance(stats.prepare(synthetic(40, seed=12, b_size=0.0, collinear=True)))
    assert d40.verdict == "cannot separate" and any("collinear" in r for r in d40.reasons)


def test_the_reports_eight_networks_cannot_separate(table2_path):
    table = pd.read_csv(table2_path)
    d = stats.dominance(stats.paper_frame(table, {"LargeCNN1": 68_282}))
    assert d.n == 8 and d.verdict == "cannot separate"
    assert d.models["both"]["df_resid"] == 4
    # Both standardised intervals include zero and are wide.
    for coef, lo, hi in (d.std_depth, d.std_size):
        assert lo < 0 < hi
    assert d.ci_width_depth > 1 and d.ci_width_size > 1


def test_prepare_averages_seeds_and_drops_infinite_factors():
    rows = pd.DataFrame({
        "model": ["a-s0", "a-s1", "b-s0", "c-s0"], "dataset": "mnist", "simulator": "x",
        "spec_json": ['{"name": "a-s0", "l": 1}', '{"name": "a-s1", "l": 1}', '{"name": "b-s0", "l": 2}',
                      '{"name": "c-s0", "l": 3}'], "depth": [2, 2, 3, 4], "conv_layers": [1, 1, 2, 3],
        "dense_layers": 1, "params": [100, 100, 200, 300], "mean_spike_rate": [0.1, 0.3, 0.1, 0.1],
        "factor": [2.0, 8.0, 1.0, math.inf]})
    df = stats.prepare(rows)
    assert df.attrs["dropped"] == 1 and len(df) == 2
    a = df[df["model"] == "a"].iloc[0]
    assert a["log_factor"] == pytest.approx(math.log(4.0)) and a["replicates"] == 2
    assert a["mean_spike_rate"] == pytest.approx(0.2)


def test_diagnostics_flag_heteroskedasticity_and_influence():
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(2)
    x = rng.uniform(0, 10, 200)
    y = 1 + 0.5 * x + rng.normal(0, 1, 200) * (0.1 + x)
    df = pd.DataFrame({"x": x, "y": y})
    g = stats.diagnostics(smf.ols("y ~ x", df).fit(), [f"p{i}" for i in range(200)])
    assert g.breusch_pagan[1] < 0.01
    df.loc[5, "y"] = 500.0  # one wild point dominates
    g = stats.diagnostics(smf.ols("y ~ x", df).fit(), [f"p{i}" for i in range(200)])
    assert g.cooks_model == "p5" and g.cooks_max > 0.1 and g.jarque_bera[1] < 1e-6


def test_summary_text_shows_tables_and_verdict():
    text = stats.analyse(stats.prepare(synthetic(60, seed=8, b_size=0.0))).summary()
    assert "log_factor ~ depth + log_params + C(dataset) + mean_spike_rate" in text
    assert "conv_layers" in text and "Verdict:" in text and "Breusch-Pagan" in text


@pytest.mark.parametrize("n", [4, 5, 6])
def test_tiny_samples_fit_without_crashing_and_refuse_a_verdict(n, recwarn):
    a = stats.analyse(stats.prepare(synthetic(n, seed=n)))
    assert a.dominance.verdict == "cannot separate"
    assert any("too few points" in note for note in a.notes)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    with pytest.raises(ValueError, match="at least 4"):
        stats.analyse(stats.prepare(synthetic(3, seed=0)))


def test_partial_correlation_is_given_the_dataset(table2_path):
    """The eight networks' partial correlation of depth and log(params) given
    the dataset, by hand: correlate the residuals of both after removing each
    dataset's mean (the raw correlation is another number)."""
    table = pd.read_csv(table2_path)
    df = stats.paper_frame(table, {"LargeCNN1": 68_282})
    d = stats.dominance(df)
    res = lambda c: df[c] - df.groupby("dataset")[c].transform("mean")  # noqa: E731
    want = float(np.corrcoef(res("depth"), res("log_params"))[0, 1])
    assert d.partial_corr == pytest.approx(want, rel=1e-9)
    assert abs(d.corr_depth_log_params - want) > 0.1  # so a raw correlation would not pass


def test_a_point_of_leverage_one_falls_back_to_hc1():
    """One network alone in its dataset has leverage 1 under C(dataset): HC3
    divides by 1 - h = 0, so the fit must say HC1 and keep finite SEs."""
    df = stats.prepare(synthetic(30, seed=21))
    df.loc[0, "dataset"] = "alone"
    fit, _ = stats._model_fit("t", "log_factor ~ depth + log_params + C(dataset)", df)
    assert fit.cov_type == "HC1" and any("leverage 1" in n for n in fit.notes)
    assert all(math.isfinite(t.se) for t in fit.terms if not t.name.startswith("C(dataset)"))
