"""The verdict (effmodel.analysis.verdict), the analysis frame and repricing
(effmodel.analysis.robustness), checked against hand work and independent
numpy computations: the verdict rule's truth table, planted effects, the
bootstrap's coverage, the accuracy guard, censoring, and the notebook API."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import effmodel
from effmodel.analysis import frame as fr
from effmodel.analysis import verdict as vd
from effmodel.errors import UsageError

SD_DEPTH = math.sqrt((5**2 - 1) / 12 + (3**2 - 1) / 12)  # conv uniform on 1..5 plus dense uniform on 1..3
SD_SIZE = 1.0  # log(neurons) ~ N(mean per dataset, 1)


def planted(b_depth: float, b_size: float, n_arch: int = 60, seeds: int = 2, seed: int = 0, noise: float = 0.25,
            seed_noise: float = 0.1) -> pd.DataFrame:
    """Result rows whose log(factor) follows a known model: per architecture
    1 + b_depth depth + b_size log(neurons) + 0.5 [mnist] + noise, each seed
    adding its own noise.  Depth and log(neurons) are independent with
    within-dataset SDs SD_DEPTH and SD_SIZE."""
    rng = np.random.default_rng(seed)
    conv, dense = rng.integers(1, 6, n_arch), rng.integers(1, 4, n_arch)
    depth = conv + dense
    ds = np.where(np.arange(n_arch) % 2 == 0, "mnist", "cifar10")
    logn = rng.normal(10, SD_SIZE, n_arch) + 2 * (ds == "cifar10")
    mu = 1 + b_depth * depth + b_size * logn + 0.5 * (ds == "mnist") + rng.normal(0, noise, n_arch)
    rows = []
    for i in range(n_arch):
        for s in range(seeds):
            rows.append({"model": f"net{i}-s{s}", "seed": s, "dataset": ds[i], "depth": depth[i], "conv_layers": conv[i],
                         "dense_layers": dense[i], "params": 3 * np.exp(logn[i]), "neurons": np.exp(logn[i]),
                         "ann_macs": 40 * np.exp(logn[i]) * (1 + rng.random()),
                         "factor": math.exp(mu[i] + rng.normal(0, seed_noise))})
    return pd.DataFrame(rows)


# --- the rule -------------------------------------------------------------------------


@pytest.mark.parametrize("low, high, want", [
    (0.1, 0.5, "depth dominates"),
    (1e-12, 3.0, "depth dominates"),
    (-0.5, -0.1, "size dominates"),
    (-3.0, -1e-12, "size dominates"),
    (-0.1, 0.2, "undetermined"),
    (0.0, 0.3, "undetermined"),  # touching 0 is not above it
    (-0.3, 0.0, "undetermined"),
    (0.0, 0.0, "undetermined"),
    (float("nan"), 1.0, "undetermined"),
    (float("-inf"), -1.0, "undetermined"),
])
def test_verdict_rule_truth_table(low, high, want):
    assert vd.verdict_rule(low, high) == want


# --- planted effects --------------------------------------------------------------------


def test_depth_twice_size_gives_depth_dominates():
    # standardised: depth 0.4 x 1.63 = 0.65, size 0.33 x 1 = 0.33
    v = effmodel.verdict(planted(-0.4, 0.33))
    assert v.verdict == "depth dominates" and v.contrast.low > 0
    assert v.primary.depth.estimate < 0 and v.primary.depth_matches_2019
    truth = 0.4 * SD_DEPTH - 0.33 * SD_SIZE
    assert v.contrast.low < truth < v.contrast.high


def test_to_frame_holds_the_numbers_of_the_table():
    v = effmodel.verdict(planted(-0.4, 0.33), bootstrap=300)
    f = v.to_frame()
    assert list(f["size"]) == ["neurons", "params", "macs"] and list(f["verdict"]) == [c.verdict for c in v.rows]
    assert (f.loc[0, "contrast_low"], f.loc[0, "contrast_high"]) == (v.contrast.low, v.contrast.high)
    assert f.loc[0, "n"] == 60 and f.loc[0, "results"] == 120


def test_equal_effects_are_undetermined():
    v = effmodel.verdict(planted(-0.3, 0.3 * SD_DEPTH))
    assert v.verdict == "undetermined" and v.contrast.low < 0 < v.contrast.high


def test_size_only_gives_size_dominates():
    v = effmodel.verdict(planted(0.0, 0.5))
    assert v.verdict == "size dominates" and v.contrast.high < 0
    assert v.primary.size_effect.low > 0  # planted positive


def test_point_estimates_match_an_independent_least_squares():
    """Effects, contrast and LMG shares by hand: OLS on architecture means
    with a dataset dummy, SDs around the dataset means (ddof = number of
    datasets), LMG of two terms as the mean of their two increments."""
    df = planted(-0.4, 0.2, n_arch=30, seed=5)
    v = effmodel.verdict(df, bootstrap=50)
    arch = df.assign(arch=df["model"].str.replace(r"-s\d+$", "", regex=True), lf=np.log(df["factor"]))
    a = arch.groupby("arch").agg(depth=("depth", "first"), logn=("neurons", lambda s: math.log(s.iloc[0])),
                                 ds=("dataset", "first"), lf=("lf", "mean"))
    mn = (a["ds"] == "mnist").to_numpy(float)
    y = a["lf"].to_numpy()

    def r2(*cols):
        X = np.column_stack([np.ones(len(a)), mn, *cols])
        beta = np.linalg.lstsq(X, y, rcond=None)[0]
        r = y - X @ beta
        return 1 - r @ r / ((y - y.mean()) @ (y - y.mean())), beta

    d, s = a["depth"].to_numpy(float), a["logn"].to_numpy(float)
    full, beta = r2(d, s)

    def within_sd(x):
        m = np.where(mn == 1, x[mn == 1].mean(), x[mn == 0].mean())
        return math.sqrt(((x - m) ** 2).sum() / (len(x) - 2))

    e_d, e_s = beta[2] * within_sd(d), beta[3] * within_sd(s)
    assert v.primary.depth.estimate == pytest.approx(e_d, rel=1e-9)
    assert v.primary.size_effect.estimate == pytest.approx(e_s, rel=1e-9)
    assert v.contrast.estimate == pytest.approx(abs(e_d) - abs(e_s), rel=1e-9)
    c = r2()[0]
    lmg_d = ((r2(d)[0] - c) + (full - r2(s)[0])) / 2
    assert v.primary.lmg_depth.estimate == pytest.approx(lmg_d, rel=1e-9)
    assert v.primary.lmg_depth.estimate + v.primary.lmg_size.estimate == pytest.approx(full - c, rel=1e-9)
    assert v.primary.n == 30 and v.primary.rows == 60  # seeds are not architectures


def test_bootstrap_coverage_is_at_least_ninety_percent():
    """200 replications of a known model, each a fresh random design: the
    95 % cluster-bootstrap CI of the contrast covers the truth >= 90 %."""
    truth = 0.35 * SD_DEPTH - 0.25 * SD_SIZE
    hits = 0
    for rep in range(200):
        df = planted(-0.35, 0.25, n_arch=40, seed=1000 + rep, noise=0.4)
        prep = fr.prepare(df)["-"]
        c = vd.size_contrast(prep, "neurons", B=300, seed=rep)
        hits += c.contrast.low <= truth <= c.contrast.high
    assert hits / 200 >= 0.90, hits


def test_seeds_are_resampled_within_their_architecture():
    """Two identical seeds per architecture carry no more information than
    one: the same bootstrap draws give the same interval, and n counts
    architectures."""
    one = planted(-0.3, 0.2, seeds=1, seed_noise=0.0, seed=9)
    two = pd.concat([one, one.assign(seed=1, model=one["model"].str.replace("-s0", "-s1"))], ignore_index=True)
    v1, v2 = effmodel.verdict(one, bootstrap=400), effmodel.verdict(two, bootstrap=400)
    assert v2.n == v1.n == 60 and v2.primary.rows == 120
    assert (v2.contrast.low, v2.contrast.high) == pytest.approx((v1.contrast.low, v1.contrast.high), rel=1e-12)


# --- the frame --------------------------------------------------------------------------


def test_missing_columns_are_one_line_naming_them():
    df = planted(-0.4, 0.2).drop(columns=["neurons", "ann_macs"])
    with pytest.raises(UsageError) as exc:
        effmodel.verdict(df)
    msg = str(exc.value)
    assert "\n" not in msg and "lacks column(s) neurons, ann_macs (" in msg


def test_accuracy_guard_flags_networks_five_points_below_their_group():
    df = planted(-0.4, 0.2, n_arch=12, seeds=1)
    df["depth"] = 4
    df["ann_accuracy"] = 0.99
    df["snn_accuracy"] = 0.985
    df.loc[0, "ann_accuracy"] = 0.93  # 6 points below the mnist median 0.99: flagged
    df.loc[2, "ann_accuracy"] = 0.95  # 4 points below: kept
    df.loc[1, "snn_accuracy"] = 0.90  # the SNN 8.5 points below its cifar10 median: flagged
    preps = fr.prepare(df)
    assert preps["-"].flagged_models == ("net0", "net1")
    assert len(preps["-"].arches) == 10 and len(fr.prepare(df, guard=False)["-"].arches) == 12


def test_unreached_cost_points_are_censored():
    df = planted(-0.4, 0.2, n_arch=10, seeds=1)
    df["cost_point_reached"] = 1
    df.loc[[3, 7], "cost_point_reached"] = 0
    p = fr.prepare(df)["-"]
    assert p.censored == 2 and len(p.arches) == 8 and not {"net3", "net7"} & set(p.arches["model"])


def test_protocol_term_whenever_protocols_are_pooled():
    df = planted(-0.4, 0.2, n_arch=20)
    assert "C(protocol)" not in effmodel.verdict(df, bootstrap=50).primary.formula
    df["family"] = np.where(df.index < 10, "reference", "sweep")
    assert effmodel.verdict(df, bootstrap=50).primary.formula.endswith("C(dataset) + C(protocol)")


def test_too_few_architectures_are_undetermined_with_n():
    v = effmodel.verdict(planted(-0.4, 0.2, n_arch=5), bootstrap=50)
    assert v.verdict == "undetermined" and v.n == 5 and "too few" in v.sentence()


# --- repricing by hand ----------------------------------------------------------------------


def _hand_row(**extra):
    """A tiny dense network: 16 inputs -> 3 -> 2.  Exact FLOPs (one mul and
    one add per synapse, minus one add per neuron, plus the bias): 96 + 12 =
    108; snntoolbox (2 x MACs + biases): 99 + 14 = 113."""
    spec = {"name": "hand", "dataset": "mnist", "input_shape": [4, 4, 1],
            "layers": [{"type": "flatten", "name": "f"}, {"type": "dense", "name": "h", "units": 3},
                       {"type": "dense", "name": "out", "units": 2, "activation": "softmax"}]}
    return {"run_id": "r", "model": "hand", "simulator": "x", "spec_json": json.dumps(spec), "threshold_step": 5,
            "synops_at_threshold": 100.0, "threshold_tolerance": 0.01, "ann_accuracy": 0.88} | extra


HAND_TS = pd.DataFrame({"run_id": "r", "model": "hand", "simulator": "x", "t": range(1, 7),
                        "error": [0.5, 0.3, 0.12, 0.105, 0.1, 0.1], "synops_cumulative": [10.0, 20, 30, 40, 50, 60]})


@pytest.mark.parametrize("options, ann, snn", [
    ({}, 810, 100),  # 108/2 x 14 + 108/2
    ({"first_layer": "once"}, 810, 100 + 720),  # the first layer's 96 FLOPs priced as the ANN pays them
    ({"first_layer": "every-step"}, 810, 100 + 720 * 5),
    ({"neuron_updates": "synop"}, 810, 100 + 5 * 5),  # 5 spiking neurons x 5 steps
    ({"first_layer": "once", "mac": 5.0}, 54 * 6, 100 + 48 * 6),
    ({"flop_convention": "snntoolbox"}, 113 / 2 * 15, 100),
    ({"tolerance": 0.02}, 810, 30),  # 0.3 at step 2 is the last above 0.12: step 3
    ({"cost_point": "iso-accuracy", "delta": 0.005}, 810, 30),  # first error <= 0.125: step 3
])
def test_reprice_by_hand(options, ann, snn):
    out = effmodel.reprice(pd.DataFrame([_hand_row()]), "report-14x", timesteps=HAND_TS, **options)
    r = out.iloc[0]
    assert r["total_costs"] == pytest.approx(ann) and r["snn_costs"] == pytest.approx(snn)
    assert r["factor"] == pytest.approx(ann / snn)


def test_two_standard_error_settle_by_hand():
    """Final error 0.1 over 100 images: SE = sqrt(0.09 / 100) = 0.03, so the
    tolerance is 0.06 (bound 0.16): 0.3 at step 2 is the last above, step 3.
    Over 10,000 images 2 SE = 0.006 < 1 point: the 1-point rule, step 4."""
    from effmodel.analysis.robustness import two_se_tolerance

    assert two_se_tolerance(0.1, 100) == pytest.approx(0.06)
    assert two_se_tolerance(0.1, 10_000) == 0.01
    few = effmodel.reprice(pd.DataFrame([_hand_row(num_test=100)]), "report-14x", timesteps=HAND_TS, tolerance="2se")
    many = effmodel.reprice(pd.DataFrame([_hand_row(num_test=10_000)]), "report-14x", timesteps=HAND_TS, tolerance="2se")
    assert few.iloc[0]["threshold_step"] == 3 and few.iloc[0]["snn_costs"] == 30
    assert many.iloc[0]["threshold_step"] == 4 and many.iloc[0]["snn_costs"] == 40


def test_an_iso_accuracy_point_never_reached_is_censored():
    row = _hand_row(ann_accuracy=0.95)  # error 0.05: the SNN never gets within 0.005
    r = effmodel.reprice(pd.DataFrame([row]), "report-14x", timesteps=HAND_TS, cost_point="iso-accuracy",
                         delta=0.005).iloc[0]
    assert r["cost_point_reached"] == 0 and r["threshold_step"] == 6


POTENTIAL = [60, 85, 89, 90, 90, 90]  # images correct per step under the potential readout, of 100


def _potential_row(hidden: int = 3, counts=POTENTIAL, **extra):
    """``_hand_row`` with ``hidden`` hidden units and the potential readout's
    correct counts recorded as Norse records them (extra correct_t_potential)."""
    r = _hand_row(num_test=100, **extra)
    spec = json.loads(r["spec_json"])
    spec["layers"][1]["units"] = hidden
    extra_json = "{}" if counts is None else json.dumps({"simulator": {"correct_t_potential": counts}})
    return r | {"model": f"hand{hidden}", "spec_json": json.dumps(spec), "extra_json": extra_json, "seed": 0,
                "dataset": "mnist", "depth": 2 + hidden % 2, "conv_layers": 0, "dense_layers": 2,
                "params": 18 * hidden + hidden + 2, "neurons": hidden + 2, "ann_macs": 18 * hidden}


def test_the_potential_readout_reprices_from_its_recorded_counts():
    """Potential errors 0.4, 0.15, 0.11, 0.10, 0.10, 0.10: within 1 point of
    the final 0.10 from step 3, so 30 SynOps (the stored spike readout's
    series settles at step 4: 40).  A row without the counts gets no factor;
    a row run with --readout potential keeps its own series."""
    ts = pd.concat([HAND_TS.assign(model=m) for m in ("hand3", "hand4")], ignore_index=True)
    frame = pd.DataFrame([_potential_row(3), _potential_row(4, counts=None)])
    out = effmodel.reprice(frame, "report-14x", timesteps=ts, readout="potential")
    assert out.iloc[0]["threshold_step"] == 3 and out.iloc[0]["snn_costs"] == 30
    assert out.iloc[0]["factor"] == pytest.approx(810 / 30)
    assert math.isnan(out.iloc[1]["factor"])
    own = effmodel.reprice(pd.DataFrame([_potential_row(4, counts=None, readout="potential")]).assign(model="hand3"),
                           "report-14x", timesteps=ts, readout="potential")
    assert own.iloc[0]["threshold_step"] == 4 and own.iloc[0]["snn_costs"] == 40
    with pytest.raises(UsageError, match="readout must be 'potential'"):
        effmodel.reprice(frame, "report-14x", timesteps=ts, readout="spikes")


def test_the_readout_robustness_row_by_hand():
    """Four networks 16 -> h -> 2 (h = 3..6): ANN = 36 h / 2 x 15 = 270 h;
    the primary pricing charges the first layer's 32 h FLOPs once (240 h) and
    the potential readout's 30 SynOps: factor 270 h / (30 + 240 h).  Without
    the recorded counts the row says what is missing instead of a number."""
    from effmodel.analysis.robustness import conventions, robustness

    (conv,) = [c for c in conventions() if c.label.startswith("readout: potential")]
    hs = (3, 4, 5, 6)
    ts = pd.concat([HAND_TS.assign(model=f"hand{h}") for h in hs], ignore_index=True)
    (row,) = robustness(pd.DataFrame([_potential_row(h) for h in hs]), ts, None, B=200, convs=[conv])
    want = np.array([270 * h / (30 + 240 * h) for h in hs])
    assert row.n == 4 and row.median_factor == pytest.approx(math.exp(np.median(np.log(want))))
    assert row.share_cheaper == 1.0 and "lack" not in row.note
    (none,) = robustness(pd.DataFrame([_potential_row(h, counts=None) for h in hs]), ts, None, B=200, convs=[conv])
    assert none.verdict == "no data" and none.row()[2] == "-"
    assert "4 of 4 result(s) lack the potential readout's correct counts per step" in none.note
    (some,) = robustness(pd.DataFrame([_potential_row(h, counts=None if h == 6 else POTENTIAL) for h in hs]), ts,
                         None, B=200, convs=[conv])
    assert some.n == 3 and "1 of 4 result(s) lack" in some.note


def test_unknown_cost_model_and_missing_columns_are_one_line():
    with pytest.raises(UsageError, match="unknown cost model 'nope'"):
        effmodel.reprice(pd.DataFrame([_hand_row()]), "nope")
    with pytest.raises(UsageError, match="lacks column\\(s\\) spec_json"):
        effmodel.reprice(pd.DataFrame([_hand_row()]).drop(columns=["spec_json"]), "report-14x")


def test_the_ratio_moves_slopes_only_once_the_first_layer_is_priced(tmp_path):
    """With the first layer free, MAC:SynOp 5 vs 32 multiplies every factor
    by 33/6 (the withdrawn sentence's case); priced as MACs, it does not."""
    from tests.test_report import build_store

    frame = effmodel.load_results(build_store(tmp_path, n_sweep=8))

    def ratio(first):
        lo = effmodel.reprice(frame, "report-14x", mac=5.0, first_layer=first)["factor"].to_numpy()
        hi = effmodel.reprice(frame, "report-14x", mac=32.0, first_layer=first)["factor"].to_numpy()
        return hi / lo

    assert ratio("excluded") == pytest.approx(np.full(len(frame), 33 / 6), rel=1e-12)
    assert np.ptp(ratio("once")) > 0.1


# --- the notebook API from a plain python -c ------------------------------------------------


def test_notebook_api_from_plain_python(tmp_path):
    """``import effmodel`` stays cheap, and the verdict itself needs only
    numpy and pandas; it works on a hand-made CSV."""
    path = tmp_path / "mine.csv"
    planted(-0.4, 0.2, n_arch=20).to_csv(path, index=False)
    code = ("import sys, effmodel, pandas as pd\n"
            f"v = effmodel.verdict(pd.read_csv({str(path)!r}), bootstrap=200)\n"
            "heavy = [m for m in ('statsmodels', 'matplotlib', 'tensorflow', 'torch') if m in sys.modules]\n"
            "print(heavy, v.verdict, v.n)\nprint(v.table())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first == "[] depth dominates 20"
    assert "log neurons" in out.stdout and "log params" in out.stdout and "log macs" in out.stdout


# --- pooling fresh rows with committed evidence ---------------------------------------------


def _reference_eight() -> pd.DataFrame:
    """The 2019 report's eight networks with their Table 2 factors (our exact counts)."""
    from effmodel.counting import count_network
    from effmodel.paths import architectures_dir, table2_csv
    from effmodel.specs import load_spec_dir

    t = pd.read_csv(table2_csv()).set_index("model")
    rows = []
    for s in load_spec_dir(architectures_dir()):
        c = count_network(s)
        rows.append({"model": s.name, "seed": 0, "dataset": s.dataset, "depth": s.depth, "conv_layers": s.conv_layers,
                     "dense_layers": s.dense_layers, "params": c.params, "neurons": c.neurons, "ann_macs": c.macs,
                     "factor": float(t.loc[s.name, "factor"]), "family": "reference"})
    return pd.DataFrame(rows)


def test_eight_networks_alone_are_undetermined_with_their_ci():
    v = effmodel.verdict(_reference_eight())
    assert v.verdict == "undetermined" and v.n == 8
    assert v.contrast.low < 0 < v.contrast.high
    assert v.sentence().startswith("-: undetermined (n = 8 architectures") and str(v.contrast) in v.sentence()


def test_fresh_rows_pool_with_committed_evidence_under_a_protocol_term():
    fresh = _reference_eight().assign(source_folder="out/reference")
    committed = planted(-0.4, 0.2, n_arch=30).assign(family="sweep", source_folder="reports/evidence")
    again = _reference_eight().assign(source_folder="reports/evidence")  # the same networks, committed earlier
    frame = pd.concat([fresh, committed, again], ignore_index=True)
    frame["protocol"] = fr.protocol_of(frame)
    v = effmodel.verdict(frame, bootstrap=200)
    assert v.protocols == ("reference (evidence)", "reference (reference)", "sweep (evidence)")
    assert v.n == 8 + 30 + 8  # one unit per network and protocol
    assert v.primary.formula.endswith("C(dataset) + C(protocol)")
    assert "protocols pooled with a protocol term" in v.sentence()


# --- the mechanism --------------------------------------------------------------------------


def test_mechanism_finds_depth_in_the_steps_to_settle():
    """Planted: T* grows with depth (log T* = 1 + 0.3 depth), the SynOps per
    synapse per step do not depend on depth or size.  The steps fit finds
    depth (its effect by hand: 0.3 x within-dataset SD of depth), the
    activity fit does not."""
    from effmodel.analysis.mechanism import mechanism

    df = planted(-0.3, 0.1, n_arch=40, seeds=1, seed=3)
    rng = np.random.default_rng(4)
    steps = np.round(np.exp(1 + 0.3 * df["depth"] + rng.normal(0, 0.05, len(df))))
    synapses = df["ann_macs"] * 0.9
    activity = np.exp(-3 + rng.normal(0, 0.3, len(df)))
    df = df.assign(threshold_step=steps, ann_synapses=synapses, synops_input_layer=0.0,
                   synops_at_threshold=activity * synapses * steps)
    prep = fr.prepare(df)["-"]
    fits = {f.outcome: f for f in mechanism(prep, B=300)}
    y = np.log(steps.to_numpy())
    X = np.column_stack([np.ones(len(df)), df["dataset"] == "mnist", df["depth"], np.log(df["neurons"])]).astype(float)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    d = df["depth"].to_numpy(float)
    mn = (df["dataset"] == "mnist").to_numpy()
    sd = math.sqrt((((d[mn] - d[mn].mean()) ** 2).sum() + ((d[~mn] - d[~mn].mean()) ** 2).sum()) / (len(d) - 2))
    assert fits["log_steps"].depth.estimate == pytest.approx(beta[2] * sd, rel=1e-9)
    assert fits["log_steps"].depth.low > 0
    assert fits["log_activity"].depth.low < 0 < fits["log_activity"].depth.high


def test_accuracy_guard_compares_within_a_simulator():
    """A simulator that is 9 points worse everywhere flags nothing: its
    networks are compared with its own median, not the other simulator's."""
    df = planted(-0.4, 0.2, n_arch=12, seeds=1).assign(depth=4, ann_accuracy=0.99)
    other = df.head(6).assign(simulator="b", snn_accuracy=0.90, model=lambda d: "b-" + d["model"])
    both = pd.concat([df.assign(simulator="a", snn_accuracy=0.99), other], ignore_index=True)
    preps = fr.prepare(both)
    assert preps["a"].flagged_models == () and preps["b"].flagged_models == ()


# --- the cost step over a resample of the images ------------------------------------------


def test_cost_step_interval_by_hand():
    """Two images over four steps: A right from step 1, B from step 3.
    A resample draws A twice (p 1/4: error 0 everywhere, step 1), A and B
    (p 1/2: error 0.5, 0.5, 0, 0, step 3) or B twice (p 1/4: 1, 1, 0, 0,
    step 3).  So the 95 % interval of the step is [1, 3] around the point 3,
    and with cumulative SNN costs 10, 20, 30, 40 and an ANN cost of 120 the
    factor's is [4, 12] around 4."""
    from effmodel.analysis.coststep import cost_step

    correct = np.array([[1, 1, 1, 1], [0, 0, 1, 1]], bool)
    c = cost_step(correct, 0.01, snn_cost_cumulative=[10, 20, 30, 40], ann_cost=120.0, B=4000)
    assert (c.step.estimate, c.step.low, c.step.high) == (3, 1, 3)
    assert (c.factor.estimate, c.factor.low, c.factor.high) == (4, 4, 12)
    assert "cost step 3 [1, 3] over 2 images" in c.sentence()


def test_cost_step_interval_is_the_largest_of_n_draws():
    """100 images, image i right from step i + 1 on, tolerance 0: a resample's
    settle step is the largest i + 1 it draws, so P(step <= s) = (s / 100)^100.
    The 2.5 % quantile is the first s with that >= 0.025: 0.96^100 = 0.017,
    0.97^100 = 0.048, so 97; the 97.5 % one is 100 (0.99^100 = 0.37).  With
    4,000 resamples, about 68 +- 8 fall at or below 96 and 190 +- 14 at or
    below 97 against the 100 the quantile needs."""
    from effmodel.analysis.coststep import cost_step

    n = 100
    correct = np.arange(1, n + 2)[None, :] >= (np.arange(n) + 1)[:, None]  # (100, 101): row i from step i + 1
    assert 0.96 ** n < 0.025 < 0.97 ** n
    c = cost_step(correct, 0.0, B=4000)
    assert (c.step.estimate, c.step.low, c.step.high) == (100, 97, 100)


def test_vectorised_settle_steps_follow_the_threshold_rule():
    from effmodel.analysis.coststep import settle_steps
    from effmodel.threshold import threshold_step

    rng = np.random.default_rng(0)
    curves = np.clip(0.1 + np.cumsum(rng.normal(0, 0.05, (300, 40)), axis=1) * rng.choice([0, 1], (300, 1)), 0, 1)
    for tol in (0.0, 0.01, 0.05):
        want = [threshold_step(c, tol) for c in curves]
        assert list(settle_steps(curves, tol)) == want
