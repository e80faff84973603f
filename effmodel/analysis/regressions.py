"""Supporting regressions of efficiency vs depth and size (the older dominance analysis).

The report concludes that "the depth of the network had more impact on the
efficiency than the total number of neurons", from eight networks.  This
module tests that claim on any set of stored results.

Outcome: ``log(factor)`` (factor = ANN cost / SNN cost).  One observation per
architecture and simulator: seeds of the same network (same ``spec_json``)
are averaged on the log scale, so replicates do not pass for independent
architectures.

Models (OLS, statsmodels formula API; standard errors and 95% confidence
intervals are heteroskedasticity-robust HC3; if a point has leverage 1, HC3
is undefined and HC1 is used, which is said in the notes):

* main: ``log_factor ~ depth + log_params + C(dataset) + mean_spike_rate``
* layers: ``log_factor ~ conv_layers + dense_layers + log_params + ...``
  (conv and dense depth separately; depth = conv + dense, so they cannot
  sit in one model with depth)
* nested, for the dominance test, with the dataset as the only control
  (spike rate is left out there because depth may act through it):
  controls-only, depth-only, size-only (``log_params``) and both.

Dominance test: standardised coefficients (coefficient x sd(x) / sd(y)) with
their HC3 intervals, partial R^2 of each term (share of the residual sum of
squares of the model without it that it explains), nested F and
likelihood-ratio tests of "both" against "depth-only" (does size add?) and
against "size-only" (does depth add?).  A term counts as significant when
its nested F test and its HC3 Wald test are both below alpha (0.05).

Verdicts: "cannot separate" when the data cannot tell the two apart: the
variance inflation factor of depth or log_params in the "both" model is at
least 10, the "both" model has fewer than 5 residual degrees of freedom, or
the two together are significant (F against controls-only) while neither is
on its own; otherwise "depth dominates" / "size dominates" (one significant,
the other not), "both matter, depth larger" / "both matter, size larger"
(by partial R^2) or "no effect detected".

Diagnostics of the main model: Breusch-Pagan (heteroskedasticity),
Jarque-Bera and Shapiro-Wilk (normality of residuals), maximum Cook's
distance and leverage.

This module is supporting evidence; the verdict itself is
:mod:`effmodel.analysis.verdict` (a bootstrap contrast of standardised
effects, docs/analysis.md), and the sensitivity to pricing conventions is
:mod:`effmodel.analysis.robustness`, which reprices stored counts through the
cost models.  (An earlier version said here that the MAC:SynOp ratio "cannot
change slopes or the verdict".  That held only while the SNN's analog first
layer was priced as nothing; priced as the MACs it is, the ratio moves each
network's SNN cost differently and can flip the depth slope.  The sentence is
withdrawn.)

statsmodels, scipy and pandas are imported inside functions so that the
command line stays fast.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .frame import arch_key, base_name
from .render import Contribution, Section, Table, Text

if TYPE_CHECKING:
    from .report import Context

ALPHA = 0.05
VIF_CAP = 10.0
MIN_DF_RESID = 5



def _quiet(func):
    """Silence numpy/statsmodels RuntimeWarnings of saturated fits (division
    by zero residual degrees of freedom): they are reported in notes and
    verdict reasons instead."""
    import functools
    import warnings

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return func(*args, **kwargs)

    return wrapper


# --- data --------------------------------------------------------------------------


def prepare(results: Any, factor_column: str = "factor", aggregate: bool = True) -> Any:
    """One row per architecture and simulator, ready for the formulas.

    ``results``: rows or a DataFrame with the store's RESULT_COLUMNS (at least
    model, dataset, simulator, depth, conv_layers, dense_layers, params and the
    factor column).  Rows with a non-finite or non-positive factor are dropped
    (counted in ``df.attrs['dropped']``).
    """
    import numpy as np
    import pandas as pd

    df = pd.DataFrame(results).copy()
    if df.empty:
        out = pd.DataFrame(columns=["arch", "model", "dataset", "simulator", "depth", "conv_layers", "dense_layers",
                                    "params", "log_params", "mean_spike_rate", "log_factor", "replicates"])
        out.attrs["dropped"] = 0
        return out
    f = pd.to_numeric(df[factor_column], errors="coerce")
    ok = np.isfinite(f) & (f > 0)
    dropped = int((~ok).sum())
    df = df[ok].copy()
    df["log_factor"] = np.log(f[ok].astype(float))
    for c in ("depth", "conv_layers", "dense_layers", "params"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["log_params"] = np.log(df["params"])
    if "mean_spike_rate" not in df:
        df["mean_spike_rate"] = np.nan
    df["mean_spike_rate"] = pd.to_numeric(df["mean_spike_rate"], errors="coerce").astype(float)
    if "simulator" not in df:
        df["simulator"] = "?"
    df["model"] = df["model"].astype(str)
    names = df["model"].map(lambda m: base_name(m))
    specs = df["spec_json"] if "spec_json" in df else [None] * len(df)
    df["arch"] = df["dataset"].astype(str) + "|" + [arch_key(j, n) for j, n in zip(specs, names)]
    if aggregate:
        g = df.groupby(["simulator", "arch"], sort=False)
        out = g.agg(model=("model", "first"), dataset=("dataset", "first"), depth=("depth", "first"),
                    conv_layers=("conv_layers", "first"), dense_layers=("dense_layers", "first"),
                    params=("params", "first"), log_params=("log_params", "first"),
                    mean_spike_rate=("mean_spike_rate", "mean"), log_factor=("log_factor", "mean"),
                    replicates=("log_factor", "size")).reset_index()
        out["model"] = out["model"].map(lambda m: base_name(m))
    else:
        out = df.assign(replicates=1).reset_index(drop=True)
    out["dataset"] = out["dataset"].astype(str)
    out.attrs["dropped"] = dropped
    return out


# --- fitting -----------------------------------------------------------------------


@dataclass
class Term:
    """One coefficient with its HC3 interval and standardised value."""

    name: str
    coef: float
    se: float
    ci_low: float
    ci_high: float
    p: float
    std_coef: float | None = None
    std_ci_low: float | None = None
    std_ci_high: float | None = None


@dataclass
class ModelFit:
    """A fitted OLS model in plain numbers."""

    label: str
    formula: str
    n: int
    df_resid: float
    r2: float
    adj_r2: float
    cov_type: str
    terms: list[Term]
    aic: float
    bic: float
    notes: list[str] = field(default_factory=list)

    def term(self, name: str) -> Term:
        for t in self.terms:
            if t.name == name:
                return t
        raise KeyError(name)


def _varies(df: Any, col: str) -> bool:
    return col in df and df[col].notna().all() and df[col].nunique() > 1


def _fit(formula: str, df: Any, robust: bool = True) -> tuple[Any, str, list[str]]:
    """OLS fit with HC3 (or HC1 if some leverage is 1, or plain if df_resid is 0)."""
    import numpy as np
    import statsmodels.formula.api as smf

    plain = smf.ols(formula, data=df).fit()
    notes: list[str] = []
    if not robust:
        return plain, "nonrobust", notes
    if plain.df_resid < 1:
        notes.append(f"{formula}: no residual degrees of freedom; standard errors undefined")
        return plain, "nonrobust", notes
    h = plain.get_influence().hat_matrix_diag
    if np.any(h > 1 - 1e-8):
        notes.append(f"{formula}: a point has leverage 1, so HC3 is undefined; HC1 used")
        return smf.ols(formula, data=df).fit(cov_type="HC1"), "HC1", notes
    return smf.ols(formula, data=df).fit(cov_type="HC3"), "HC3", notes


def _model_fit(label: str, formula: str, df: Any, standardise: Sequence[str] = ()) -> tuple[ModelFit, Any]:
    import numpy as np

    res, cov, notes = _fit(formula, df)
    ci = res.conf_int(alpha=ALPHA)
    sd_y = float(df["log_factor"].std(ddof=1))
    terms = []
    for name in res.params.index:
        coef, se = float(res.params[name]), float(res.bse[name])
        lo, hi = float(ci.loc[name, 0]), float(ci.loc[name, 1])
        t = Term(name, coef, se, lo, hi, float(res.pvalues[name]))
        if name in standardise and sd_y > 0:
            k = float(df[name].std(ddof=1)) / sd_y
            t.std_coef, t.std_ci_low, t.std_ci_high = coef * k, lo * k, hi * k
        terms.append(t)
    if np.linalg.matrix_rank(res.model.exog) < res.model.exog.shape[1]:
        notes.append(f"{label}: the design is rank deficient; coefficients are not identified")
    fit = ModelFit(label, formula, int(res.nobs), float(res.df_resid), float(res.rsquared), float(res.rsquared_adj),
                   cov, terms, float(res.aic), float(res.bic), notes)
    return fit, res


def _controls(df: Any) -> list[str]:
    return ["C(dataset)"] if _varies(df, "dataset") else []


def _rhs(terms: Iterable[str]) -> str:
    t = list(terms)
    return " + ".join(t) if t else "1"


def main_formula(df: Any, layers: bool = False) -> tuple[str, list[str]]:
    """The main (or conv/dense) formula with the extra terms the data allow.

    Optional terms are dropped, spike rate first, while fewer than two
    residual degrees of freedom would remain; each drop is noted.
    """
    core = ["conv_layers", "dense_layers", "log_params"] if layers else ["depth", "log_params"]
    extra = _controls(df) + (["mean_spike_rate"] if _varies(df, "mean_spike_rate") else [])
    notes = []
    if not _varies(df, "dataset"):
        notes.append("one dataset only: no dataset term")
    if "mean_spike_rate" not in extra:
        notes.append("mean_spike_rate missing or constant: no spike-rate term")
    n_levels = df["dataset"].nunique() if "dataset" in df else 1
    while extra:
        k = 1 + len(core) + sum((n_levels - 1) if e == "C(dataset)" else 1 for e in extra)
        if len(df) - k >= 2:
            break
        dropped = extra.pop()  # spike rate goes first, then the dataset
        notes.append(f"{dropped} dropped: too few points ({len(df)}) for it")
    return f"log_factor ~ {_rhs(core + extra)}", notes


@dataclass
class Dominance:
    """The test of "depth dominates size"."""

    n: int
    controls: list[str]
    corr_depth_log_params: float
    partial_corr: float
    vif_depth: float
    vif_size: float
    std_depth: tuple[float, float, float]  # coef, ci low, ci high
    std_size: tuple[float, float, float]
    ci_width_depth: float
    ci_width_size: float
    partial_r2_depth: float
    partial_r2_size: float
    f_depth: tuple[float, float]  # F, p: does depth add to size-only?
    f_size: tuple[float, float]
    lr_depth: tuple[float, float]  # LR statistic, p
    lr_size: tuple[float, float]
    wald_p_depth: float
    wald_p_size: float
    f_joint: tuple[float, float]  # both vs controls-only
    models: dict[str, dict[str, float]]  # label -> r2, adj_r2, aic, bic, df_resid
    verdict: str
    reasons: list[str]
    both: ModelFit | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@_quiet
def dominance(df: Any, alpha: float = ALPHA, vif_cap: float = VIF_CAP, min_df_resid: int = MIN_DF_RESID) -> Dominance:
    """Depth-only vs size-only vs both, with the dataset as control."""
    import numpy as np
    import statsmodels.formula.api as smf
    from statsmodels.stats.outliers_influence import variance_inflation_factor

    if len(df) < 4:
        raise ValueError(f"need at least 4 architectures for the dominance test, got {len(df)}")
    ctrl = _controls(df)
    ols = lambda rhs: smf.ols(f"log_factor ~ {_rhs(rhs)}", data=df).fit()  # noqa: E731
    m0, md, ms, mb = ols(ctrl), ols(["depth"] + ctrl), ols(["log_params"] + ctrl), ols(["depth", "log_params"] + ctrl)
    both, rob = _model_fit("both", f"log_factor ~ {_rhs(['depth', 'log_params'] + ctrl)}", df,
                           standardise=("depth", "log_params"))
    exog = mb.model.exog
    names = mb.model.exog_names
    with np.errstate(divide="ignore", invalid="ignore"):
        vif = {n: float(variance_inflation_factor(exog, names.index(n))) for n in ("depth", "log_params")}
    # Partial correlation of depth and log_params given the controls.
    rd = smf.ols(f"depth ~ {_rhs(ctrl)}", data=df).fit().resid
    rs = smf.ols(f"log_params ~ {_rhs(ctrl)}", data=df).fit().resid
    pc = float(np.corrcoef(rd, rs)[0, 1]) if rd.std() > 0 and rs.std() > 0 else float("nan")

    def ftest(big, small):
        if big.df_resid < 1:
            return (float("nan"), float("nan"))
        f, p, _ = big.compare_f_test(small)
        return (float(f), float(p))

    def lrtest(big, small):
        lr, p, _ = big.compare_lr_test(small)
        return (float(lr), float(p))

    def pr2(small):
        return float((small.ssr - mb.ssr) / small.ssr) if small.ssr > 0 else float("nan")

    td, ts = both.term("depth"), both.term("log_params")
    f_d, f_s, f_j = ftest(mb, ms), ftest(mb, md), ftest(mb, m0)
    sig_d = f_d[1] < alpha and td.p < alpha
    sig_s = f_s[1] < alpha and ts.p < alpha
    reasons: list[str] = []
    if mb.df_resid < min_df_resid:
        reasons.append(f"only {mb.df_resid:.0f} residual degrees of freedom (n = {int(mb.nobs)}; need {min_df_resid})")
    worst = max(vif.values())
    if not math.isfinite(worst) or worst >= vif_cap:
        reasons.append(f"depth and log(params) are collinear: VIF {worst:.1f} >= {vif_cap:g} "
                       f"(partial correlation {pc:+.2f})")
    if reasons:
        verdict = "cannot separate"
    elif sig_d and not sig_s:
        verdict = "depth dominates"
    elif sig_s and not sig_d:
        verdict = "size dominates"
    elif sig_d and sig_s:
        verdict = "both matter, depth larger" if pr2(ms) >= pr2(md) else "both matter, size larger"
    elif f_j[1] < alpha:
        verdict = "cannot separate"
        reasons.append("depth and size together explain the factor (joint F p = "
                       f"{f_j[1]:.3g}) but neither does on its own: their effects are confounded")
    else:
        verdict = "no effect detected"
    if not reasons:
        reasons.append(f"depth adds to size: F p = {pfmt(f_d[1])}, HC3 p = {pfmt(td.p)}; "
                       f"size adds to depth: F p = {pfmt(f_s[1])}, HC3 p = {pfmt(ts.p)} (alpha {alpha:g})")
    models = {lbl: {"r2": float(m.rsquared), "adj_r2": float(m.rsquared_adj), "aic": float(m.aic), "bic": float(m.bic),
                    "df_resid": float(m.df_resid)}
              for lbl, m in (("controls", m0), ("depth-only", md), ("size-only", ms), ("both", mb))}
    return Dominance(
        n=int(mb.nobs), controls=ctrl,
        corr_depth_log_params=float(np.corrcoef(df["depth"], df["log_params"])[0, 1]),
        partial_corr=pc, vif_depth=vif["depth"], vif_size=vif["log_params"],
        std_depth=(td.std_coef, td.std_ci_low, td.std_ci_high), std_size=(ts.std_coef, ts.std_ci_low, ts.std_ci_high),
        ci_width_depth=float(td.std_ci_high - td.std_ci_low), ci_width_size=float(ts.std_ci_high - ts.std_ci_low),
        partial_r2_depth=pr2(ms), partial_r2_size=pr2(md), f_depth=f_d, f_size=f_s,
        lr_depth=lrtest(mb, ms), lr_size=lrtest(mb, md), wald_p_depth=td.p, wald_p_size=ts.p, f_joint=f_j,
        models=models, verdict=verdict, reasons=reasons, both=both,
    )


@dataclass
class Diagnostics:
    """Residual checks of a fitted model."""

    breusch_pagan: tuple[float, float]  # LM statistic, p
    jarque_bera: tuple[float, float]
    shapiro: tuple[float, float] | None
    cooks_max: float
    cooks_model: str
    leverage_max: float


def diagnostics(res: Any, models: Sequence[str]) -> Diagnostics:
    """Breusch-Pagan, Jarque-Bera, Shapiro-Wilk and influence of a fit."""
    import numpy as np
    from scipy import stats as sps
    from statsmodels.stats.diagnostic import het_breuschpagan
    from statsmodels.stats.stattools import jarque_bera

    resid = np.asarray(res.resid)
    try:
        lm, lm_p, _, _ = het_breuschpagan(resid, res.model.exog)
    except (ValueError, np.linalg.LinAlgError):
        lm, lm_p = float("nan"), float("nan")
    jb, jb_p, _, _ = jarque_bera(resid)
    sh = tuple(float(v) for v in sps.shapiro(resid)) if 3 <= len(resid) <= 5000 and resid.std() > 0 else None
    infl = res.get_influence()
    with np.errstate(divide="ignore", invalid="ignore"):
        cooks = np.asarray(infl.cooks_distance[0])
    i = int(np.nanargmax(cooks)) if np.isfinite(cooks).any() else 0
    return Diagnostics((float(lm), float(lm_p)), (float(jb), float(jb_p)), sh,  # type: ignore[arg-type]
                       float(cooks[i]) if cooks.size else float("nan"), str(models[i]) if len(models) else "",
                       float(np.max(infl.hat_matrix_diag)))


@dataclass
class Analysis:
    """Everything the report shows about one simulator's results."""

    simulator: str
    n: int
    dropped: int
    main: ModelFit
    layers: ModelFit | None
    dominance: Dominance | None
    diagnostics: Diagnostics | None
    notes: list[str]

    def summary(self) -> str:
        """A plain-text summary (what ``print`` shows)."""
        return summary_text(self)


@_quiet
def analyse(df: Any, simulator: str = "") -> Analysis:
    """Fit the main and conv/dense models, the dominance test and diagnostics
    on a frame from :func:`prepare` (one simulator)."""
    from statsmodels.formula.api import ols

    notes: list[str] = []
    if "simulator" in df and df["simulator"].nunique() > 1:
        raise ValueError("analyse one simulator at a time (filter the frame first)")
    if len(df) < 4:
        raise ValueError(f"need at least 4 architectures, got {len(df)}")
    formula, n1 = main_formula(df)
    notes += n1
    main, _ = _model_fit("main", formula, df, standardise=("depth", "log_params", "mean_spike_rate"))
    notes += main.notes
    layers = None
    if _varies(df, "conv_layers") and _varies(df, "dense_layers"):
        f2, _ = main_formula(df, layers=True)
        layers, _ = _model_fit("conv/dense", f2, df,
                               standardise=("conv_layers", "dense_layers", "log_params", "mean_spike_rate"))
        notes += layers.notes
    else:
        notes.append("conv_layers or dense_layers constant: no conv/dense model")
    dom = dominance(df) if _varies(df, "depth") and _varies(df, "log_params") else None
    diag = None
    plain = ols(formula, data=df).fit()
    if plain.df_resid >= 1:
        diag = diagnostics(plain, list(df["model"]))
    return Analysis(simulator or str(df["simulator"].iloc[0]) if "simulator" in df and len(df) else simulator,
                    len(df), int(df.attrs.get("dropped", 0)), main, layers, dom, diag, notes)


def verdicts_by_cost(results: Any, factor_columns: Sequence[str]) -> dict[str, dict[str, str]]:
    """The depth-vs-size verdict per simulator for each factor column (e.g.
    the report's ``factor`` beside a fair preset's), fitted the same way:
    ``{column: {simulator: verdict}}``; a column that cannot be fitted says why."""
    import numpy as np

    out: dict[str, dict[str, str]] = {}
    for col in factor_columns:
        out[col] = {}
        if col not in getattr(results, "columns", ()):
            continue
        frame = prepare(results, factor_column=col)
        for sim, df in frame.groupby("simulator", sort=True):
            df = df.reset_index(drop=True)
            try:
                a = analyse(df, str(sim))
            except (ValueError, np.linalg.LinAlgError) as exc:
                out[col][str(sim)] = f"not fitted ({exc})"
                continue
            out[col][str(sim)] = f"{a.dominance.verdict} (n = {a.n})" if a.dominance else f"no dominance test (n = {a.n})"
    return out


# --- the reference set -------------------------------------------------------------


def paper_frame(table2: Any, true_params: dict[str, int] | None = None) -> Any:
    """The report's Table 2 as a frame for :func:`dominance` (n = 8).

    ``true_params`` replaces ``params_reported`` per model (the report has a
    typo for LargeCNN1: 136,238 printed, 68,282 true).
    """
    import numpy as np
    import pandas as pd

    t = pd.DataFrame(table2).copy()
    params = [float((true_params or {}).get(m, p)) for m, p in zip(t["model"], t["params_reported"])]
    out = pd.DataFrame({
        "model": t["model"].astype(str), "dataset": t["dataset"].astype(str), "simulator": "report",
        "depth": pd.to_numeric(t["depth_trainable"]).astype(float),
        "conv_layers": pd.to_numeric(t["conv_layers"]).astype(float),
        "dense_layers": pd.to_numeric(t["dense_layers"]).astype(float),
        "params": params, "log_params": np.log(params), "mean_spike_rate": np.nan,
        "log_factor": np.log(pd.to_numeric(t["factor"]).astype(float)), "replicates": 1,
    })
    out.attrs["dropped"] = 0
    return out


# --- marginal fits for plots ---------------------------------------------------------


@_quiet
def band(df: Any, x: str, points: int = 50) -> dict[str, Any]:
    """Fit ``log_factor ~ x`` and return the fitted line with its 95% band
    (HC3 where defined) on a grid of ``x``: keys x, fit, lo, hi, slope, slope_ci."""
    import numpy as np
    import pandas as pd

    res, cov, _ = _fit(f"log_factor ~ {x}", df)
    grid = np.linspace(float(df[x].min()), float(df[x].max()), points)
    pred = res.get_prediction(pd.DataFrame({x: grid})).summary_frame(alpha=ALPHA)
    ci = res.conf_int(alpha=ALPHA).loc[x]
    return {"x": grid, "fit": pred["mean"].to_numpy(), "lo": pred["mean_ci_lower"].to_numpy(),
            "hi": pred["mean_ci_upper"].to_numpy(), "slope": float(res.params[x]),
            "slope_ci": (float(ci[0]), float(ci[1])), "cov_type": cov, "n": int(res.nobs)}


# --- text ----------------------------------------------------------------------------


def fmt(v: Any, digits: int = 3) -> str:
    """Compact number formatting for tables."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}" if abs(v) >= 1 else f"{v:.{digits}f}"
    if isinstance(v, tuple):
        return "[" + ", ".join(fmt(x, digits) for x in v) + "]"
    return str(v)


def pfmt(p: float) -> str:
    """p-values, with underflow shown as a bound rather than 0."""
    return "<1e-16" if isinstance(p, float) and p < 1e-16 else fmt(p)


def term_table(fit: ModelFit) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a regression table."""
    head = ["term", "coef", "SE (" + fit.cov_type + ")", "95% CI", "p", "standardised (95% CI)"]
    rows = []
    for t in fit.terms:
        std = "-" if t.std_coef is None else f"{fmt(t.std_coef)} [{fmt(t.std_ci_low)}, {fmt(t.std_ci_high)}]"
        rows.append([t.name, fmt(t.coef), fmt(t.se), f"[{fmt(t.ci_low)}, {fmt(t.ci_high)}]", pfmt(t.p), std])
    return head, rows


def dominance_table(d: Dominance) -> tuple[list[str], list[list[str]]]:
    head = ["quantity", "depth", "log(params)"]
    rows = [
        ["standardised coefficient [95% CI]", f"{fmt(d.std_depth[0])} [{fmt(d.std_depth[1])}, {fmt(d.std_depth[2])}]",
         f"{fmt(d.std_size[0])} [{fmt(d.std_size[1])}, {fmt(d.std_size[2])}]"],
        ["CI width (standardised)", fmt(d.ci_width_depth), fmt(d.ci_width_size)],
        ["partial R^2", fmt(d.partial_r2_depth), fmt(d.partial_r2_size)],
        ["nested F (adds to the other), p", f"{fmt(d.f_depth[0])}, p={pfmt(d.f_depth[1])}",
         f"{fmt(d.f_size[0])}, p={pfmt(d.f_size[1])}"],
        ["likelihood ratio, p", f"{fmt(d.lr_depth[0])}, p={pfmt(d.lr_depth[1])}",
         f"{fmt(d.lr_size[0])}, p={pfmt(d.lr_size[1])}"],
        ["HC3 Wald p (both model)", pfmt(d.wald_p_depth), pfmt(d.wald_p_size)],
        ["VIF (both model)", fmt(d.vif_depth), fmt(d.vif_size)],
    ]
    return head, rows


def models_table(d: Dominance) -> tuple[list[str], list[list[str]]]:
    head = ["model", "R^2", "adj. R^2", "AIC", "BIC", "residual df"]
    return head, [[k, fmt(v["r2"]), fmt(v["adj_r2"]), fmt(v["aic"]), fmt(v["bic"]), fmt(v["df_resid"])]
                  for k, v in d.models.items()]


def dominance_sentence(d: Dominance) -> str:
    return (f"Verdict: {d.verdict.upper()} (n = {d.n}; corr(depth, log params) = {d.corr_depth_log_params:+.2f}, "
            f"partial {d.partial_corr:+.2f} given {', '.join(d.controls) or 'nothing'}). " + " ".join(d.reasons))


def summary_text(a: Analysis) -> str:
    """Regression tables and the verdict as plain text."""
    lines = [f"simulator {a.simulator}: {a.n} architectures ({a.dropped} rows dropped: factor not finite)"]
    for fit in (a.main, a.layers):
        if fit is None:
            continue
        lines.append(f"\n{fit.label}: {fit.formula}   n={fit.n}  R^2={fit.r2:.3f}  adj={fit.adj_r2:.3f}  SE {fit.cov_type}")
        head, rows = term_table(fit)
        lines += _text_table(head, rows)
    if a.dominance:
        lines.append("\ndepth vs size (controls: " + (", ".join(a.dominance.controls) or "none") + ")")
        lines += _text_table(*dominance_table(a.dominance))
        lines += _text_table(*models_table(a.dominance))
        lines.append(dominance_sentence(a.dominance))
    if a.diagnostics:
        g = a.diagnostics
        lines.append(f"\ndiagnostics: Breusch-Pagan p={fmt(g.breusch_pagan[1])}, Jarque-Bera p={fmt(g.jarque_bera[1])}, "
                     f"Shapiro p={fmt(g.shapiro[1]) if g.shapiro else '-'}, max Cook's D={fmt(g.cooks_max)} "
                     f"({g.cooks_model}), max leverage={fmt(g.leverage_max)}")
    if a.notes:
        lines.append("notes: " + "; ".join(a.notes))
    return "\n".join(lines)


def _text_table(head: list[str], rows: list[list[str]]) -> list[str]:
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    out = ["  ".join(str(h).ljust(n) for h, n in zip(head, w))]
    out += ["  ".join(str(c).ljust(n) for c, n in zip(r, w)) for r in rows]
    return out


# --- the report's sections --------------------------------------------------------------


def regressions_contribution(ctx: "Context") -> Contribution:
    """Efficiency plots, regressions, the older dominance test and
    diagnostics, one block per simulator (supporting evidence)."""
    from .figures import efficiency_figure
    from .verdict import mixed_model

    s_plot = Section("Efficiency against depth and size")
    s_reg = Section("Regressions: supporting evidence")
    frame = prepare(ctx.inputs.results)
    s_reg.blocks.append(Text(
        "Supporting evidence, not the verdict. log(factor) as stored is regressed on depth and log(parameters), with "
        "dataset, conv vs dense depth and mean spike rate as further terms; standard errors are HC3. The older "
        "dominance test compares depth-only, size-only and both (dataset as control); its labels rank significance, "
        "not effects. One point per architecture: seeds are averaged on the log scale."))
    for sim, df in frame.groupby("simulator", sort=True):
        df = df.reset_index(drop=True)
        df.attrs["dropped"] = frame.attrs.get("dropped", 0)
        fig = efficiency_figure(df, str(sim), ctx.paper_df)
        if fig:
            s_plot.blocks.append(fig)
        s_reg.blocks.append(Text(f"Simulator {sim}: {len(df)} architectures "
                                 f"({frame.attrs.get('dropped', 0)} result rows dropped for a non-finite factor)."))
        try:
            a = analyse(df, str(sim))
        except ValueError as exc:
            s_reg.blocks.append(Text(f"Not fitted: {exc}."))
            continue
        for fit in (a.main, a.layers):
            if fit is not None:
                head, rows = term_table(fit)
                s_reg.blocks.append(Table(head, rows, f"{fit.label}: {fit.formula} (n = {fit.n}, R^2 = {fit.r2:.3f}, "
                                                      f"adjusted {fit.adj_r2:.3f}, SE {fit.cov_type})"))
        if a.dominance:
            s_reg.blocks.append(Table(*dominance_table(a.dominance), caption="Depth vs size (older dominance test)"))
            s_reg.blocks.append(Table(*models_table(a.dominance), caption="Nested models"))
            s_reg.blocks.append(Text(dominance_sentence(a.dominance)))
        if a.diagnostics:
            g = a.diagnostics
            s_reg.blocks.append(Table(
                ["check", "statistic", "p / value"],
                [["Breusch-Pagan (heteroskedasticity)", fmt(g.breusch_pagan[0]), fmt(g.breusch_pagan[1])],
                 ["Jarque-Bera (normal residuals)", fmt(g.jarque_bera[0]), fmt(g.jarque_bera[1])],
                 ["Shapiro-Wilk (normal residuals)", fmt(g.shapiro[0]) if g.shapiro else "-",
                  fmt(g.shapiro[1]) if g.shapiro else "-"],
                 ["max Cook's distance", g.cooks_model, fmt(g.cooks_max)],
                 ["max leverage", "", fmt(g.leverage_max)]], "Residual diagnostics of the main model"))
        if a.notes:
            s_reg.blocks.append(Text("Notes: " + "; ".join(a.notes) + "."))
        if str(sim) in ctx.preps:
            s_reg.blocks.append(Text(mixed_model(ctx.preps[str(sim)]).sentence() + "."))
    return Contribution([s_plot, s_reg])


def eight_points_contribution(ctx: "Context") -> Contribution:
    """The older separability table of the report's eight networks, and the
    primary specification's verdict on its Table 2 factors."""
    from .table2 import paper_results
    from .verdict import verdict

    sec, old = eight_points_section(ctx.inputs, ctx.paper_df)
    lines = []
    if ctx.paper is not None:
        try:
            v = verdict(paper_results(ctx.paper), bootstrap=ctx.bootstrap, seed=ctx.seed)
        except ValueError as exc:
            line = f"not fitted ({exc})"
        else:
            line = v.sentence()
        sec.blocks.insert(0, Text(f"The primary specification on the report's own Table 2 factors: {line}"))
        lines.append(f"The report's eight networks (its Table 2 factors): {line}")
    if old:
        lines.append(f"Older dominance test on them: {old}.")
    return Contribution([sec], lines)


def eight_points_section(inp: Any, paper_df: Any) -> tuple[Section, str]:
    """Show that the report's eight networks cannot separate depth from size."""
    sec = Section("Why eight networks cannot answer the question")
    line = ""
    sets = []
    if paper_df is not None:
        sets.append(("the report's Table 2 factors", paper_df))
    res = inp.results
    frame = prepare(res[res["family"].astype(str) == "reference"] if "family" in res else res.iloc[0:0])
    for sim, df in frame.groupby("simulator"):
        if len(df) >= 4:
            sets.append((f"our reference runs ({sim})", df.reset_index(drop=True)))
    if not sets:
        sec.blocks.append(Text("Neither the report's table nor reference runs are available."))
        return sec, line
    sec.blocks.append(Text(
        "In the reference set, depth and size are tied: within each dataset the deeper networks are the smaller ones "
        "(more pooling shrinks the flattened map and with it the first dense layer), and the dataset shifts size by an "
        "order of magnitude. With eight points, a dataset term and two slopes, four residual degrees of freedom remain."))
    rows, texts = [], []
    for label, df in sets:
        try:
            d = dominance(df)
        except ValueError as exc:
            rows.append([label, str(len(df)), "-", "-", "-", "-", "-", f"not fitted: {exc}"])
            continue
        rows.append([label, str(d.n), f"{d.corr_depth_log_params:+.2f} / {d.partial_corr:+.2f}",
                     f"{d.vif_depth:.1f} / {d.vif_size:.1f}",
                     f"{fmt(d.std_depth[0])} [{fmt(d.std_depth[1])}, {fmt(d.std_depth[2])}]",
                     f"{fmt(d.std_size[0])} [{fmt(d.std_size[1])}, {fmt(d.std_size[2])}]",
                     f"{fmt(d.f_depth[1])} / {fmt(d.f_size[1])}", d.verdict])
        if not line:
            line = f"{label} (n = {d.n}): {d.verdict}"
        zero = [name for name, (_, lo, hi) in (("depth", d.std_depth), ("size", d.std_size)) if lo < 0 < hi]
        texts.append(f"On {label}, the standardised 95% intervals are {d.ci_width_depth:.2g} (depth) and "
                     f"{d.ci_width_size:.2g} (size) wide" + (f" and include zero for {' and '.join(zero)}" if zero else "")
                     + f"; verdict: {d.verdict} (" + "; ".join(d.reasons) + ").")
    sec.blocks.append(Table(["data", "n", "corr depth-log params (raw / given dataset)", "VIF depth / size",
                             "standardised depth [95% CI]", "standardised size [95% CI]", "F p depth / size", "verdict"],
                            rows, "Separability of depth and size in the reference set"))
    sec.blocks += [Text(t) for t in texts]
    sec.blocks.append(Text(
        "With four residual degrees of freedom and a variance inflation factor this high, an interval that happens to "
        "exclude zero is not evidence: HC3 intervals are unreliable so close to a saturated model, and the slope of "
        "one variable absorbs the other's. The report's conclusion is a hypothesis; a sweep that varies depth and "
        "size independently (effmodel sweep) is what can test it."))
    return sec, line
