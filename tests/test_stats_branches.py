"""Every verdict branch and boundary of :func:`effmodel.stats.dominance`, each
with a synthetic data set that lands on it.

The statistics that decide the branch (nested F tests, HC3 Wald p-values,
partial R^2, VIF, residual df) are recomputed here with plain numpy/scipy
least squares, so a test checks both that the data land where claimed and
that the module follows its documented rules:

* a term is significant when its nested F test AND its HC3 Wald test are
  below alpha;
* "cannot separate" when VIF >= 10, fewer than 5 residual df, or the two
  together are significant while neither is alone (confounded);
* "both matter, depth/size larger" by partial R^2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from effmodel.analysis import regressions as stats

ALPHA = 0.05


def frame(depth, log_params, y) -> pd.DataFrame:
    """A prepared one-dataset frame, as :func:`stats.prepare` returns it."""
    n = len(y)
    return pd.DataFrame({"model": [f"m{i}" for i in range(n)], "dataset": "mnist", "simulator": "x",
                         "depth": np.asarray(depth, float), "log_params": np.asarray(log_params, float),
                         "log_factor": np.asarray(y, float)})


def _design(df, *cols):
    return np.column_stack([np.ones(len(df))] + [df[c].to_numpy(float) for c in cols])


def _ssr(X, y):
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    r = y - X @ beta
    return float(r @ r), beta, r


def by_hand(df) -> dict:
    """Nested F p-values, HC3 Wald p-values, partial R^2 and VIF, from scratch."""
    y = df["log_factor"].to_numpy(float)
    Xb = _design(df, "depth", "log_params")
    n, k = Xb.shape
    ssr_b, beta, r = _ssr(Xb, y)
    ssr_d, _, _ = _ssr(_design(df, "depth"), y)
    ssr_s, _, _ = _ssr(_design(df, "log_params"), y)
    ssr_0, _, _ = _ssr(_design(df), y)
    dfr = n - k

    def f_p(ssr_small, q):
        return float(sps.f.sf(((ssr_small - ssr_b) / q) / (ssr_b / dfr), q, dfr))

    xtx_inv = np.linalg.inv(Xb.T @ Xb)
    h = np.einsum("ij,jk,ik->i", Xb, xtx_inv, Xb)
    meat = Xb.T @ (Xb * (r**2 / (1 - h) ** 2)[:, None])
    se = np.sqrt(np.diag(xtx_inv @ meat @ xtx_inv))
    wald = 2 * sps.norm.sf(np.abs(beta / se))  # statsmodels' robust tests are z tests
    rho = np.corrcoef(df["depth"], df["log_params"])[0, 1]
    return {"f_depth": f_p(ssr_s, 1), "f_size": f_p(ssr_d, 1), "f_joint": f_p(ssr_0, 2),
            "wald_depth": float(wald[1]), "wald_size": float(wald[2]),
            "pr2_depth": (ssr_s - ssr_b) / ssr_s, "pr2_size": (ssr_d - ssr_b) / ssr_d,
            "vif": 1 / (1 - rho**2), "df_resid": dfr}


def _agrees(d: stats.Dominance, h: dict) -> None:
    assert d.f_depth[1] == pytest.approx(h["f_depth"], rel=1e-6)
    assert d.f_size[1] == pytest.approx(h["f_size"], rel=1e-6)
    assert d.f_joint[1] == pytest.approx(h["f_joint"], rel=1e-6)
    assert d.wald_p_depth == pytest.approx(h["wald_depth"], rel=1e-6)
    assert d.wald_p_size == pytest.approx(h["wald_size"], rel=1e-6)
    assert d.vif_depth == pytest.approx(h["vif"], rel=1e-9)


def test_both_matter_size_larger():
    rng = np.random.default_rng(0)
    depth = np.tile(np.arange(1, 9), 5).astype(float)
    lp = rng.uniform(9, 14, 40)
    df = frame(depth, lp, 0.2 * depth + 0.8 * lp + rng.normal(0, 0.3, 40))
    h = by_hand(df)
    assert max(h["f_depth"], h["f_size"], h["wald_depth"], h["wald_size"]) < ALPHA  # both significant both ways
    assert h["pr2_size"] > h["pr2_depth"] and h["vif"] < 10 and h["df_resid"] >= 5
    d = stats.dominance(df)
    _agrees(d, h)
    assert d.partial_r2_size == pytest.approx(h["pr2_size"]) and d.partial_r2_depth == pytest.approx(h["pr2_depth"])
    assert d.verdict == "both matter, size larger"


def test_confounded_effects_cannot_be_separated():
    """Depth and size track each other (VIF 7.7, below the cap): together they
    explain the factor, neither adds to the other."""
    rng = np.random.default_rng(12)
    depth = np.tile(np.arange(1, 9), 2).astype(float)
    lp = 10 + depth + rng.normal(0, 0.8, 16)
    df = frame(depth, lp, 0.3 * depth + 0.3 * lp + rng.normal(0, 1.0, 16))
    h = by_hand(df)
    assert h["f_joint"] < ALPHA and h["f_depth"] > ALPHA and h["f_size"] > ALPHA
    assert h["vif"] < 10 and h["df_resid"] >= 5  # so no other rule applies
    d = stats.dominance(df)
    _agrees(d, h)
    assert d.verdict == "cannot separate"
    assert len(d.reasons) == 1 and "confounded" in d.reasons[0]


def test_a_term_needs_both_its_f_and_its_hc3_wald_test():
    """Depth's effect rests on a few noisy deep networks: its nested F test
    is significant (p 0.014) but its HC3 Wald test is not (p 0.20).  An
    F-only rule would say "both matter"; the documented rule says size
    dominates."""
    rng = np.random.default_rng(12)
    depth = rng.integers(1, 9, 20).astype(float)
    lp = rng.uniform(9, 14, 20)
    noise = rng.normal(0, 1, 20) * (0.05 + 0.6 * (depth >= 7))
    df = frame(depth, lp, 0.15 * depth + 0.5 * lp + noise)
    h = by_hand(df)
    assert h["f_depth"] < ALPHA <= h["wald_depth"]
    assert h["f_size"] < ALPHA and h["wald_size"] < ALPHA
    d = stats.dominance(df)
    _agrees(d, h)
    assert d.verdict == "size dominates"


def _vif10_frame() -> pd.DataFrame:
    """corr(depth, log_params)^2 = 0.9 exactly in construction, so VIF = 10."""
    n = 24
    depth = np.tile(np.arange(1, 9), 3).astype(float)
    u = (depth - depth.mean()) / depth.std()
    z = np.random.default_rng(3).normal(size=n)
    z -= z.mean()
    z -= (z @ u) / (u @ u) * u  # orthogonal to depth
    z /= z.std()
    lp = 11 + np.sqrt(0.9) * u + np.sqrt(0.1) * z
    y = 0.2 * depth + 0.2 * lp + np.random.default_rng(4).normal(0, 0.2, n)
    return frame(depth, lp, y)


def test_vif_of_ten_is_the_boundary():
    df = _vif10_frame()
    h = by_hand(df)
    assert h["vif"] == pytest.approx(10, rel=1e-9) and h["df_resid"] >= 5
    d = stats.dominance(df)
    assert d.vif_depth == pytest.approx(h["vif"], rel=1e-9)
    assert d.verdict == "cannot separate" and "VIF" in d.reasons[0]  # at the default cap of 10
    # exactly at the cap counts ("at least 10"); just above it does not
    at = stats.dominance(df, vif_cap=d.vif_depth)
    assert at.verdict == "cannot separate" and any("VIF" in r for r in at.reasons)
    above = stats.dominance(df, vif_cap=float(np.nextafter(max(d.vif_depth, d.vif_size), np.inf)))
    assert not any("VIF" in r for r in above.reasons)


def test_five_residual_df_is_the_boundary():
    """The "both" model has 3 coefficients: 8 points leave 5 residual df
    (enough), 7 points leave 4 (cannot separate)."""
    rng = np.random.default_rng(5)
    depth = np.array([1, 2, 3, 4, 5, 6, 7, 8], float)
    lp = np.array([12, 9, 13, 10, 14, 11, 9.5, 13.5])
    y = 0.5 * depth + 0.05 * lp + rng.normal(0, 0.05, 8)
    eight, seven = frame(depth, lp, y), frame(depth[:7], lp[:7], y[:7])
    assert by_hand(eight)["df_resid"] == 5 and by_hand(seven)["df_resid"] == 4
    d8, d7 = stats.dominance(eight), stats.dominance(seven)
    assert d8.models["both"]["df_resid"] == 5 and d7.models["both"]["df_resid"] == 4
    assert not any("residual degrees of freedom" in r for r in d8.reasons)
    assert d8.verdict != "cannot separate"
    assert d7.verdict == "cannot separate" and "4 residual degrees of freedom" in d7.reasons[0]
