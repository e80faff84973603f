"""The report's numbers against the stored rows, recomputed by another route.

Two synthetic stores (the eight reference models plus a two-seed sweep),
one with a planted depth effect and one with a planted size effect, go
through ``effmodel report``.  The first screen, Table 2's "ours" cells and
every repriceable robustness row are parsed from the Markdown and compared
with values computed here from the stored rows with plain numpy: the hand
formula of the report-14x pricing with the first layer's real synapses at
15 units (exact FLOPs of a biased conv layer = 2 x its synapses), least
squares on architecture means, within-dataset SDs, and a cluster bootstrap
written independently (a loop of ``np.linalg.lstsq``)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from effmodel.analysis.report import generate
from effmodel.store import Store
from effmodel.testing import synthetic_store

B = 400  # the report's bootstrap replicates in these tests


def build(directory: Path, b_depth: float, b_size: float, n_sweep: int = 16) -> Path:
    """The eight reference models and a two-seed sweep whose log(factor) is
    2.5 + b_depth depth + b_size (log(neurons) - 9) + N(0, 0.2)."""
    return synthetic_store(directory, lambda spec, c, rng: (2.5 + b_depth * spec.depth + b_size * (math.log(c.neurons) - 9)
                                                            + rng.normal(0, 0.2)), n_sweep=n_sweep, seed=1)


@pytest.fixture(scope="module", params=[(-0.6, 0.05), (0.0, 0.9)], ids=["depth-planted", "size-planted"])
def case(request, tmp_path_factory):
    d = build(tmp_path_factory.mktemp("numbers"), *request.param)
    out = d / "out"
    generate(d, out, formats=["md"], bootstrap=B)
    with Store(d) as store:
        rows = pd.DataFrame(store.results())
    return rows, (out / "report.md").read_text()


def test_the_synthetic_store_plants_what_it_is_told(tmp_path):
    """Every stored factor is exp(the planted log factor) and agrees with its
    own row: exact FLOPs x 7.5 over the SynOps at the settle step of the
    stored error series (tolerance 1 point), found here by a plain loop."""
    d = synthetic_store(tmp_path, lambda spec, c, rng: 1.0 + 0.1 * spec.depth + 0.01 * math.log(c.neurons), n_sweep=3)
    with Store(d) as store:
        rows, steps = pd.DataFrame(store.results()), pd.DataFrame(store.timesteps())
    assert len(rows) == 8 + 3 * 2 and set(rows["family"]) == {"reference", "sweep"}
    for r in rows.to_dict("records"):
        assert r["factor"] == pytest.approx(math.exp(1.0 + 0.1 * r["depth"] + 0.01 * math.log(r["neurons"])), rel=1e-9)
        s = steps[steps["model"] == r["model"]].sort_values("t")
        err, syn = s["error"].to_numpy(), s["synops_cumulative"].to_numpy()
        settle = max([t + 2 for t in range(len(err)) if err[t] > err[-1] + 0.01], default=1)
        assert r["threshold_step"] == settle
        assert r["factor"] == pytest.approx(r["ann_flops"] * 7.5 / syn[settle - 1], rel=1e-9)


# --- the independent route ---------------------------------------------------------------


def hand_factor(rows: pd.DataFrame, ratio: float = 14.0, first: str = "once", updates: bool = False) -> np.ndarray:
    """report-14x by hand: ANN = FLOPs/2 x ratio + FLOPs/2; the SNN pays its
    SynOps, its first layer's synapses x (ratio + 1) once or every step, and
    one SynOp per unit with a membrane (not max pools) and step when ``updates``."""
    f = rows["ann_flops"].to_numpy(float)
    so = rows["synops_at_threshold"].to_numpy(float)
    first_cost = rows["synops_input_layer"].to_numpy(float) * (ratio + 1)
    step = rows["threshold_step"].to_numpy(float)
    snn = so + {"once": first_cost, "every-step": first_cost * step, "excluded": 0.0}[first]
    if updates:
        snn = snn + rows["neuron_updates_total"].to_numpy(float) / rows["duration"].to_numpy(float) * step
    return (f / 2 * ratio + f / 2) / snn


def arch_table(rows: pd.DataFrame, factor: np.ndarray) -> pd.DataFrame:
    """One row per architecture (spec without its name), log factor averaged over seeds."""
    key = [json.dumps({k: v for k, v in json.loads(s).items() if k not in ("name", "description")}, sort_keys=True)
           for s in rows["spec_json"]]
    t = rows.assign(key=key, lf=np.log(factor), logn=np.log(rows["neurons"].astype(float)))
    return t.groupby("key").agg(depth=("depth", "first"), logn=("logn", "first"), ds=("dataset", "first"),
                                fam=("family", "first"), lf=("lf", "mean"), lfs=("lf", list)).reset_index()


def contrast(a: pd.DataFrame, y: np.ndarray) -> float:
    mn = (a["ds"] == "mnist").to_numpy(float)
    ref = (a["fam"] == "reference").to_numpy(float)
    d, s = a["depth"].to_numpy(float), a["logn"].to_numpy(float)
    X = np.column_stack([np.ones(len(a)), mn, ref, d, s])
    beta = np.linalg.lstsq(X, y, rcond=None)[0]

    def sd(x):
        groups = [x[mn == g] for g in (0, 1) if (mn == g).any()]
        return math.sqrt(sum(((g - g.mean()) ** 2).sum() for g in groups) / (len(x) - len(groups)))

    return abs(beta[3] * sd(d)) - abs(beta[4] * sd(s))


def bootstrap_ci(a: pd.DataFrame, reps: int = 1500) -> tuple[float, float]:
    rng = np.random.default_rng(12345)
    out = []
    for _ in range(reps):
        pick = rng.integers(0, len(a), len(a))
        b = a.iloc[pick].reset_index(drop=True)
        y = np.array([np.mean(rng.choice(v, len(v))) for v in b["lfs"]])
        out.append(contrast(b, y))
    lo, hi = np.nanquantile(out, [0.025, 0.975])
    return float(lo), float(hi)


def rule(lo: float, hi: float) -> str:
    return "depth dominates" if lo > 0 else "size dominates" if hi < 0 else "undetermined"


# --- parsing ------------------------------------------------------------------------------

NUM = r"([+-]?[0-9.]+(?:e[+-]?\d+)?)"


def md_section(md: str, title: str) -> str:
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def md_table(text: str, first_header: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(f"| {first_header} |"))
    rows = []
    for l in lines[start + 2:]:
        if not l.startswith("|"):
            break
        rows.append([c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", l)[1:-1]])
    return rows


# --- the tests --------------------------------------------------------------------------------


def test_first_screen_verdict_matches_the_stored_rows(case):
    rows, md = case
    summary = md_section(md, "Summary")
    m = re.search(r"Verdict: fake: (depth dominates|size dominates|undetermined) \(n = (\d+) architectures, (\d+) "
                  rf"results\): \|depth\| - \|neurons\| standardised = {NUM} \[{NUM}, {NUM}\]", summary)
    assert m, summary[:600]
    word, n, r, est, lo, hi = m.group(1), int(m.group(2)), int(m.group(3)), *map(float, m.groups()[3:])
    a = arch_table(rows, hand_factor(rows))
    assert n == len(a) == 8 + 16 and r == len(rows)
    assert est == pytest.approx(contrast(a, a["lf"].to_numpy()), abs=6e-4)
    ilo, ihi = bootstrap_ci(a)
    width = ihi - ilo
    assert lo == pytest.approx(ilo, abs=0.12 * width + 0.02) and hi == pytest.approx(ihi, abs=0.12 * width + 0.02)
    assert word == rule(lo, hi)
    k = re.search(r"SNN cheaper in (\d+) of (\d+) architectures", summary)
    assert (int(k.group(1)), int(k.group(2))) == (int((a["lf"] > 0).sum()), len(a))


def test_the_planted_effect_is_what_the_first_screen_says(case):
    rows, md = case
    word = re.search(r"Verdict: fake: ([a-z ]+) \(", md_section(md, "Summary")).group(1)
    planted_depth = rows["factor"].corr(rows["depth"]) < -0.5  # the depth-planted store
    assert word == ("depth dominates" if planted_depth else "size dominates")


def test_table2_ours_cells_are_the_stored_rows(case):
    rows, md = case
    t2 = md_table(md_section(md, "Table 2: the report beside ours"), "model")
    assert len(t2) == 8
    stored = rows.set_index("model")
    for cells in t2:
        r = stored.loc[cells[0]]
        assert cells[10].split("|")[1].strip() == f"{r['factor']:.3g}"
        assert cells[8].split("|")[1].strip() == f"{r['synops_at_threshold'] / 1e6:.3g}"


ROBUST = {  # convention label -> the hand pricing of the stored rows
    "primary: report-14x, first layer once, settle 1 pt, size neurons": {},
    "MAC:SynOp 5": {"ratio": 5.0},
    "MAC:SynOp 32": {"ratio": 32.0},
    "first layer excluded (the 2019 rule, report-14x as published)": {"first": "excluded"},
    "first layer every step (as INIsim computes it)": {"first": "every-step"},
    "neuron updates charged (1 SynOp each)": {"updates": True},
}


def test_every_repriceable_robustness_row_matches(case):
    rows, md = case
    table = {r[0]: r for r in md_table(md_section(md, "Robustness: the verdict under every convention"), "convention")}
    assert len(table) == 19
    readout = table["readout: potential (highest membrane potential)"]  # no result recorded the potential readout
    assert readout[2] == "-" and readout[3].startswith("no data (") and "lack the potential readout's" in readout[3]
    for label, how in ROBUST.items():
        cells = table[label]
        a = arch_table(rows, hand_factor(rows, **how))
        assert int(cells[1]) == len(a), label
        assert cells[5] == f"{float(np.exp(np.median(a['lf']))):.3g}", label
        assert cells[6] == f"{100 * np.mean(a['lf'] > 0):.0f} %", label
        est, lo, hi = map(float, re.match(rf"{NUM} \[{NUM}, {NUM}\]", cells[2]).groups())
        assert est == pytest.approx(contrast(a, a["lf"].to_numpy()), abs=6e-4), label
        assert cells[3].startswith(rule(lo, hi)), label
    for label, cells in table.items():  # every row with an interval states the verdict its interval gives
        m = re.match(rf"{NUM} \[{NUM}, {NUM}\]", cells[2])
        if m:
            assert cells[3].startswith(rule(float(m.group(2)), float(m.group(3)))), label


def test_seed_spread_matches_the_stored_rows(case):
    rows, md = case
    m = re.search(rf"Seeds: fake: (\d+) architectures with two or more seeds; the median range of their seeds' log "
                  rf"factor is {NUM} \(largest {NUM}\), against an SD of {NUM} between architectures", md)
    assert m, "no seed line on the first screen"
    a = arch_table(rows, hand_factor(rows))
    spreads = np.array([max(v) - min(v) for v in a["lfs"] if len(v) >= 2])
    assert int(m.group(1)) == len(spreads) == 16
    assert float(m.group(2)) == pytest.approx(float(np.median(spreads)), abs=6e-4)
    assert float(m.group(3)) == pytest.approx(float(spreads.max()), abs=6e-4)
    assert float(m.group(4)) == pytest.approx(float(np.std(a["lf"], ddof=1)), abs=6e-4)


def test_the_survival_line_counts_the_robustness_rows(case):
    _, md = case
    table = md_table(md_section(md, "Robustness: the verdict under every convention"), "convention")
    m = re.search(r"Under the (\d+) other conventions of the robustness table: depth dominates in (\d+), size "
                  r"dominates in (\d+), undetermined in (\d+)(?:, no data in (\d+))? \(primary: ([a-z ]+)\)\.", md)
    assert m, "no survival line on the first screen"
    verdicts = [re.match(r"(depth dominates|size dominates|undetermined|no data|not available)", r[3]).group(1)
                for r in table[1:]]
    assert int(m.group(1)) == len(table) - 1
    assert [int(m.group(i)) for i in (2, 3, 4)] == [verdicts.count(v) for v in
                                                    ("depth dominates", "size dominates", "undetermined")]
    assert int(m.group(5) or 0) == len(verdicts) - sum(verdicts.count(v) for v in
                                                      ("depth dominates", "size dominates", "undetermined"))
    assert table[0][3].startswith(m.group(6))
