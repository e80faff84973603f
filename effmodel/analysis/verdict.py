"""The verdict: does depth or size drive the efficiency factor?

The primary specification (``docs/analysis.md``) in code.  One row per
architecture, ``log_factor ~ depth + log(size) + C(dataset) [+ C(protocol)]``;
each effect is standardised by its predictor's **within-dataset** SD, and the
contrast ``|b_depth sd_depth| - |b_size sd_size|`` gets a 95 % interval from
a cluster bootstrap: architectures resampled with replacement, each drawn
architecture's seeds resampled within it, the model refitted and both SDs
recomputed per replicate (vectorised: every replicate is one slice of a
stacked least-squares solve).  :func:`verdict_rule` turns that interval into
the verdict; LMG (Shapley) shares of R^2 come from the same replicates.

Results are objects carrying their intervals; text lives in their
``.sentence()`` and ``.table()`` methods, not in the statistics.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from .frame import PRIMARY_SIZE, SIZE_MEASURES, Prepared, prepare

BOOTSTRAP = 2000
SEED = 0
LEVEL = 0.95
MIN_ARCHES = 6
# The 2019 report: the factor falls with depth ("this factor decreases
# rapidly"); for size it names no direction ("stable" as parameters grow).
HYPOTHESIS_2019 = {"depth": -1, "size": 0}
VERDICTS = ("depth dominates", "size dominates", "undetermined")


def verdict_rule(low: float, high: float) -> str:
    """The verdict from the CI of ``|b_depth sd_depth| - |b_size sd_size|``:
    above 0 -> depth dominates, below 0 -> size dominates, else (touching or
    straddling 0, or not finite) undetermined."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "undetermined"
    if low > 0:
        return "depth dominates"
    if high < 0:
        return "size dominates"
    return "undetermined"


def sign_word(v: float) -> str:
    return "+" if v > 0 else "-" if v < 0 else "0"


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval."""

    estimate: float
    low: float
    high: float

    def __str__(self) -> str:
        if self.estimate != self.estimate:  # not estimable (too few architectures): no number to show
            return "-"
        return f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


NAN = Interval(float("nan"), float("nan"), float("nan"))


@dataclass(frozen=True)
class Contrast:
    """One depth-vs-size contrast (one size measure): standardised effects
    (signed: coefficient x within-dataset SD), their contrast, LMG shares of
    R^2 and the verdict."""

    size: str
    n: int  # architectures
    rows: int  # seed-level rows
    formula: str
    depth: Interval
    size_effect: Interval
    contrast: Interval
    lmg_depth: Interval
    lmg_size: Interval
    r2: float
    verdict: str
    note: str = ""
    bootstrap: int = BOOTSTRAP

    @property
    def depth_matches_2019(self) -> bool:
        return math.copysign(1, self.depth.estimate) == HYPOTHESIS_2019["depth"]

    def signs(self) -> str:
        return (f"depth {sign_word(self.depth.estimate)} ({'as' if self.depth_matches_2019 else 'against'} 2019), "
                f"{self.size} {sign_word(self.size_effect.estimate)} (2019: no direction)")

    def sentence(self) -> str:
        if self.note:
            return f"{self.verdict} (n = {self.n}; {self.note})"
        return (f"{self.verdict} (n = {self.n} architectures, {self.rows} results): |depth| - |{self.size}| "
                f"standardised = {self.contrast}; depth {self.depth}, log {self.size} {self.size_effect} per "
                f"within-dataset SD; signs: {self.signs()}")

    def row(self) -> list[str]:
        return [f"log {self.size}", str(self.n), str(self.depth), str(self.size_effect), str(self.contrast),
                str(self.lmg_depth), str(self.lmg_size), self.verdict]


CONTRAST_HEAD = ["size measure", "n", "depth effect [95% CI]", "size effect [95% CI]",
                 "|depth| - |size| [95% CI]", "LMG R^2 depth", "LMG R^2 size", "verdict"]


@dataclass(frozen=True)
class LayerSplit:
    """Conv and dense depth as separate terms (size: the primary measure)."""

    n: int
    conv: Interval
    dense: Interval
    contrast: Interval  # |conv| - |dense|

    def sentence(self) -> str:
        return (f"conv layers {self.conv}, dense layers {self.dense} per within-dataset SD; "
                f"|conv| - |dense| = {self.contrast} (n = {self.n})")


@dataclass(frozen=True)
class Verdict:
    """The verdict of one simulator's results: the primary contrast and one
    row per size measure, the conv/dense split, and what was left out."""

    simulator: str
    primary: Contrast
    rows: tuple[Contrast, ...]
    layers: LayerSplit | None
    flagged: tuple[str, ...] = ()
    censored: int = 0
    dropped: int = 0
    protocols: tuple[str, ...] = ()
    guarded: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return self.primary.verdict

    @property
    def contrast(self) -> Interval:
        return self.primary.contrast

    @property
    def n(self) -> int:
        return self.primary.n

    def sentence(self) -> str:
        left = []
        if self.flagged:
            left.append(f"{len(self.flagged)} network(s) flagged by the accuracy guard left out")
        if self.censored:
            left.append(f"{self.censored} result(s) censored (cost point not reached)")
        if self.dropped:
            left.append(f"{self.dropped} result(s) without a finite factor")
        pooled = f"; protocols pooled with a protocol term: {', '.join(self.protocols)}" if len(self.protocols) > 1 else ""
        return (f"{self.simulator}: {self.primary.sentence()}{pooled}" + (f" ({'; '.join(left)})" if left else "") + ".")

    def table(self) -> str:
        """The contrast rows as a plain-text table (what ``print`` shows)."""
        return text_table(CONTRAST_HEAD, [c.row() for c in self.rows])

    def to_frame(self) -> Any:
        """The contrast rows as a pandas DataFrame of numbers (one row per size
        measure; ``<quantity>``, ``<quantity>_low``, ``<quantity>_high``)."""
        import pandas as pd

        out = []
        for c in self.rows:
            row: dict[str, Any] = {"simulator": self.simulator, "size": c.size, "n": c.n, "results": c.rows,
                                   "verdict": c.verdict, "r2": c.r2, "note": c.note}
            for name in ("depth", "size_effect", "contrast", "lmg_depth", "lmg_size"):
                iv = getattr(c, name)
                row |= {name: iv.estimate, f"{name}_low": iv.low, f"{name}_high": iv.high}
            out.append(row)
        return pd.DataFrame(out)

    def __str__(self) -> str:
        return self.sentence() + "\n" + self.table()


def text_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(h).ljust(n) for h, n in zip(head, w))]
    lines += ["  ".join(str(c).ljust(n) for c, n in zip(r, w)) for r in rows]
    return "\n".join(lines)


# --- the bootstrap engine --------------------------------------------------------------


@dataclass(frozen=True)
class Design:
    """The arrays of one fit: seed-level outcomes padded per architecture
    (``y``: A x K, NaN beyond ``k``), the design matrix (A x p) with the
    controls first and the terms last, the dataset one-hot (A x g)."""

    y: Any
    k: Any
    X: Any
    datasets: Any
    terms: tuple[str, ...]
    controls: int  # number of leading control columns (intercept included)
    formula: str


def design(prep: Prepared, terms: Sequence[str]) -> Design:
    """Build :class:`Design` from the architecture rows (covariates) and the
    seed rows (outcomes) of ``prep``; dataset and protocol dummies as controls."""
    import numpy as np
    import pandas as pd

    a = prep.arches
    rows = prep.rows[prep.rows["arch"].isin(set(a["arch"]))]
    by_arch = rows.groupby("arch", sort=False)["log_factor"].apply(list)
    lists = [by_arch[arch] for arch in a["arch"]]
    kmax = max((len(v) for v in lists), default=1)
    y = np.full((len(a), kmax), np.nan)
    for i, v in enumerate(lists):
        y[i, : len(v)] = v
    k = np.array([len(v) for v in lists], dtype=int)
    ds = pd.get_dummies(a["dataset"].astype(str)).to_numpy(float)
    cols = [np.ones(len(a))]
    formula_controls = []
    if ds.shape[1] > 1:
        cols += list(ds[:, 1:].T)
        formula_controls.append("C(dataset)")
    protocols = a["protocol"].astype(str) if "protocol" in a else pd.Series(["one"] * len(a))
    if protocols.nunique() > 1:
        pr = pd.get_dummies(protocols).to_numpy(float)
        cols += list(pr[:, 1:].T)
        formula_controls.append("C(protocol)")
    controls = len(cols)
    cols += [a[t].to_numpy(float) for t in terms]
    X = np.column_stack(cols)
    formula = "log_factor ~ " + " + ".join(list(terms) + formula_controls)
    return Design(y, k, X, ds, tuple(terms), controls, formula)


def _ols(X: Any, y: Any) -> tuple[Any, Any]:
    """Stacked least squares: X (B, A, p), y (B, A) -> beta (B, p), SSR (B,)."""
    import numpy as np

    xtx = np.einsum("bap,baq->bpq", X, X)
    xty = np.einsum("bap,ba->bp", X, y)
    beta = np.einsum("bpq,bq->bp", np.linalg.pinv(xtx, rcond=1e-10), xty)
    r = y - np.einsum("bap,bp->ba", X, beta)
    return beta, np.einsum("ba,ba->b", r, r)


def _within_sd(x: Any, D: Any) -> Any:
    """Per replicate, the SD of ``x`` (B, A) around its dataset means (D: B, A, g)."""
    import numpy as np

    counts = D.sum(axis=1)
    sums = np.einsum("bag,ba->bg", D, x)
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    r = x - np.einsum("bag,bg->ba", D, means)
    dof = x.shape[1] - (counts > 0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(np.einsum("ba,ba->b", r, r) / dof)


def replicate_stats(d: Design, idx: Any, y: Any) -> dict[str, Any]:
    """Standardised effects of every term and their LMG shares of R^2 for
    replicates ``idx`` (B, A: architecture indices) with outcomes ``y`` (B, A)."""
    import numpy as np

    X = d.X[idx]
    D = d.datasets[idx]
    beta, ssr = _ols(X, y)
    sst = np.einsum("ba,ba->b", y - y.mean(1, keepdims=True), y - y.mean(1, keepdims=True))
    t = len(d.terms)
    effects = np.column_stack([beta[:, d.controls + j] * _within_sd(X[:, :, d.controls + j], D) for j in range(t)])
    r2 = {}
    for size in range(t + 1):
        for subset in itertools.combinations(range(t), size):
            cols = list(range(d.controls)) + [d.controls + j for j in subset]
            r2[subset] = 1 - _ols(X[:, :, cols], y)[1] / sst
    lmg = np.zeros((len(idx), t))
    for j in range(t):
        for subset, value in r2.items():
            if j in subset:
                continue
            s = len(subset)
            w = math.factorial(s) * math.factorial(t - s - 1) / math.factorial(t)
            lmg[:, j] += w * (r2[tuple(sorted(subset + (j,)))] - value)
    return {"effects": effects, "lmg": lmg, "r2": r2[tuple(range(t))]}


def resample(d: Design, B: int, rng: Any) -> tuple[Any, Any]:
    """Cluster bootstrap indices and outcomes: architectures with replacement,
    each one's seeds with replacement within it, averaged on the log scale."""
    import numpy as np

    A, K = d.y.shape
    idx = rng.integers(0, A, size=(B, A))
    kk = d.k[idx]
    pick = np.floor(rng.random((B, A, K)) * kk[..., None]).astype(int)
    vals = d.y[idx[..., None], pick]
    valid = np.arange(K) < kk[..., None]
    y = np.where(valid, vals, 0.0).sum(-1) / kk
    return idx, y


def point(d: Design) -> dict[str, Any]:
    """The estimates on the data as they are (seed means)."""
    import numpy as np

    idx = np.arange(d.y.shape[0])[None, :]
    y = np.nanmean(d.y, axis=1)[None, :]
    return replicate_stats(d, idx, y)


def _interval(est: float, draws: Any, level: float = LEVEL) -> Interval:
    import numpy as np

    draws = draws[np.isfinite(draws)]
    if draws.size == 0 or not math.isfinite(est):
        return Interval(est, float("nan"), float("nan"))
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(est), float(lo), float(hi))


def bootstrap(d: Design, B: int = BOOTSTRAP, seed: int = SEED) -> tuple[dict[str, Any], dict[str, Any]]:
    """Point estimates and ``B`` cluster-bootstrap replicates of :func:`replicate_stats`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    idx, y = resample(d, B, rng)
    return point(d), replicate_stats(d, idx, y)


def contrast_of(effects: Any, i: int = 0, j: int = 1) -> Any:
    import numpy as np

    return np.abs(effects[:, i]) - np.abs(effects[:, j])


def size_contrast(prep: Prepared, size: str = PRIMARY_SIZE, B: int = BOOTSTRAP, seed: int = SEED) -> Contrast:
    """The depth-vs-``size`` contrast of one simulator's prepared rows."""
    import numpy as np

    term = f"log_{size}"
    a = prep.arches
    n, rows = len(a), int(prep.rows["arch"].isin(set(a["arch"])).sum()) if len(a) else 0
    if n == 0:
        return Contrast(size, 0, 0, "", NAN, NAN, NAN, NAN, NAN, float("nan"), "undetermined", "no architectures", B)
    d = design(prep, ("depth", term))
    p = d.X.shape[1]
    why = ""
    if a[term].isna().any():
        why = f"{SIZE_MEASURES[size]} missing for some rows"
    elif n < max(MIN_ARCHES, p + 3):
        why = f"too few architectures for {p} coefficients (need {max(MIN_ARCHES, p + 3)})"
    else:
        sds = [float(_within_sd(d.X[None, :, j], d.datasets[None])[0]) for j in (-2, -1)]
        if not all(v > 0 for v in sds):
            why = "depth or size does not vary within a dataset"
    if why:
        return Contrast(size, n, rows, d.formula, NAN, NAN, NAN, NAN, NAN, float("nan"), "undetermined", why, B)
    est, reps = bootstrap(d, B, seed)
    c_est = float(contrast_of(est["effects"])[0])
    contrast = _interval(c_est, contrast_of(reps["effects"]))
    return Contrast(
        size=size, n=n, rows=rows, formula=d.formula,
        depth=_interval(float(est["effects"][0, 0]), reps["effects"][:, 0]),
        size_effect=_interval(float(est["effects"][0, 1]), reps["effects"][:, 1]),
        contrast=contrast,
        lmg_depth=_interval(float(est["lmg"][0, 0]), reps["lmg"][:, 0]),
        lmg_size=_interval(float(est["lmg"][0, 1]), reps["lmg"][:, 1]),
        r2=float(est["r2"][0]), verdict=verdict_rule(contrast.low, contrast.high), bootstrap=B)


def layer_split(prep: Prepared, size: str = PRIMARY_SIZE, B: int = BOOTSTRAP, seed: int = SEED) -> LayerSplit | None:
    """Conv and dense depth as separate terms beside log(size)."""
    a = prep.arches
    if len(a) < MIN_ARCHES + 1 or a["conv_layers"].nunique() < 2 or a["dense_layers"].nunique() < 2:
        return None
    d = design(prep, ("conv_layers", "dense_layers", f"log_{size}"))
    est, reps = bootstrap(d, B, seed)
    return LayerSplit(len(a), _interval(float(est["effects"][0, 0]), reps["effects"][:, 0]),
                      _interval(float(est["effects"][0, 1]), reps["effects"][:, 1]),
                      _interval(float(contrast_of(est["effects"])[0]), contrast_of(reps["effects"])))


def verdict_of(prep: Prepared, sizes: Sequence[str] = tuple(SIZE_MEASURES), B: int = BOOTSTRAP, seed: int = SEED,
               guarded: bool = True) -> Verdict:
    """The primary contrast (first of ``sizes``) and one row per size measure."""
    rows = tuple(size_contrast(prep, s, B, seed) for s in sizes)
    protocols = tuple(sorted(set(prep.arches["protocol"].astype(str)))) if "protocol" in prep.arches else ()
    return Verdict(prep.simulator, rows[0], rows, layer_split(prep, sizes[0], B, seed), prep.flagged_models,
                   prep.censored, prep.dropped, protocols, guarded)


def verdict(frame: Any, *, size: str = PRIMARY_SIZE, simulator: str | None = None, bootstrap: int = BOOTSTRAP,
            seed: int = SEED, guard: bool = True, factor_column: str = "factor") -> Verdict:
    """The primary specification's verdict on ``frame`` (stored results or a
    hand-made table with the columns of :data:`effmodel.analysis.frame.REQUIRED`).

    ``simulator``: which simulator's rows (default: the one with the most
    architectures); ``size``: the primary size measure (neurons, params,
    macs), the other two follow as rows; ``guard``: leave out networks
    flagged by the accuracy guard."""
    from ..errors import UsageError

    if size not in SIZE_MEASURES:
        raise UsageError(f"verdict: unknown size measure {size!r} (use {', '.join(SIZE_MEASURES)})")
    preps = prepare(frame, factor_column=factor_column, guard=guard)
    if not preps:
        raise UsageError("verdict: the frame holds no rows")
    if simulator is None:
        simulator = headline_simulator(preps)
    if simulator not in preps:
        raise UsageError(f"verdict: no rows of simulator {simulator!r} (have {', '.join(preps)})")
    sizes = (size,) + tuple(s for s in SIZE_MEASURES if s != size)
    return verdict_of(preps[simulator], sizes, bootstrap, seed, guard)


def headline_simulator(preps: dict[str, Prepared]) -> str:
    """The simulator with the most architectures (ties: alphabetical)."""
    return sorted(preps, key=lambda s: (-len(preps[s].arches), s))[0]


# --- supporting evidence: the mixed model -------------------------------------------


@dataclass(frozen=True)
class MixedFit:
    """Random intercept per architecture on the seed-level rows."""

    n_rows: int
    n_groups: int
    formula: str
    depth: tuple[float, float, float]  # coef, CI low, CI high
    size: tuple[float, float, float]
    group_var: float
    note: str = ""

    def sentence(self) -> str:
        if self.note:
            return f"mixed model not fitted: {self.note}"
        return (f"MixedLM {self.formula}, random intercept per architecture ({self.n_rows} results, {self.n_groups} "
                f"architectures): depth {self.depth[0]:+.3f} [{self.depth[1]:+.3f}, {self.depth[2]:+.3f}], "
                f"size {self.size[0]:+.3f} [{self.size[1]:+.3f}, {self.size[2]:+.3f}] per unit; "
                f"architecture variance {self.group_var:.3g}")


def mixed_model(prep: Prepared, size: str = PRIMARY_SIZE) -> MixedFit:
    """statsmodels ``MixedLM`` where at least one architecture has two seeds."""
    import warnings

    import statsmodels.formula.api as smf

    rows = prep.rows[prep.rows["arch"].isin(set(prep.arches["arch"]))].reset_index(drop=True)
    term = f"log_{size}"
    nan3 = (float("nan"),) * 3
    reps = rows.groupby("arch").size()
    if rows.empty or reps.empty or reps.max() < 2:
        return MixedFit(len(rows), len(reps), "", nan3, nan3, float("nan"), "no architecture has two seeds")
    controls = (["C(dataset)"] if rows["dataset"].nunique() > 1 else []) + \
        (["C(protocol)"] if "protocol" in rows and rows["protocol"].nunique() > 1 else [])
    formula = "log_factor ~ " + " + ".join(["depth", term] + controls)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = smf.mixedlm(formula, rows, groups=rows["arch"]).fit(reml=True)
        ci = res.conf_int()
        get = lambda t: (float(res.params[t]), float(ci.loc[t, 0]), float(ci.loc[t, 1]))  # noqa: E731
        return MixedFit(len(rows), len(reps), formula, get("depth"), get(term), float(res.cov_re.iloc[0, 0]))
    except (ValueError, ArithmeticError, KeyError) as exc:  # singular fits: said, not raised
        return MixedFit(len(rows), len(reps), formula, nan3, nan3, float("nan"), f"{type(exc).__name__}: {exc}")


# --- the report's section -------------------------------------------------------------


def verdict_contribution(ctx: Any) -> Any:
    """The verdict of every simulator in detail: the contrast per size
    measure, conv vs dense, the mixed model, what the guard left out."""
    from .render import Contribution, Section, Table, Text

    sec = Section("The verdict: depth vs size")
    sec.blocks.append(Text(
        "Primary specification (docs/analysis.md): log(factor) under report-14x with the analog first layer priced as "
        "MACs once per image, at the settle cost point (1 point), on depth and log(size) with dataset (and protocol, "
        "when pooled) terms, one row per architecture. Effects are coefficient x within-dataset SD; the contrast "
        "|depth| - |size| has a 95% cluster-bootstrap CI (architectures, seeds within them; "
        f"{ctx.bootstrap} replicates, seed {ctx.seed}). Depth dominates only if the CI lies above 0, size only if "
        "below; otherwise undetermined. LMG: Shapley shares of R^2 (controls entered first)."))
    for sim, v in ctx.verdicts.items():
        sec.blocks.append(Table(CONTRAST_HEAD, [c.row() for c in v.rows], f"{sim}: {v.primary.formula or '-'}"))
        sec.blocks.append(Text(v.sentence()))
        if v.layers is not None:
            sec.blocks.append(Text(f"{sim}, depth split: {v.layers.sentence()}."))
        if v.flagged:
            sec.blocks.append(Text(f"{sim}, flagged by the accuracy guard (more than 5 points below the median of "
                                   f"their dataset and depth; out of the primary fit): {', '.join(v.flagged)}."))
        sec.blocks.append(Text(f"{sim}, supporting: {mixed_model(ctx.preps[sim]).sentence()}."))
    return Contribution([sec])
