"""The built-in cost-model plugin: presets from data/cost_models.toml through
the ``costs`` entry point."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from effmodel import plugins


@pytest.fixture
def only_costs(monkeypatch):
    monkeypatch.setenv("EFFMODEL_LOAD_PLUGINS", "costs")
    monkeypatch.delenv("EFFMODEL_BLOCK_PLUGINS", raising=False)
    plugins._reset_for_tests()
    try:
        yield plugins
    finally:
        plugins._reset_for_tests()


def test_entry_point_declared():
    eps = [ep for ep in entry_points(group="effmodel") if ep.name == "costs"]
    if not eps:
        pytest.skip("effmodel-costs is not installed: pip install -e plugins/effmodel-costs --no-deps")
    assert eps[0].value == "effmodel_costs"


def test_presets(only_costs):
    models = only_costs.get_cost_models()
    if not models:
        pytest.skip("effmodel-costs is not installed: pip install -e plugins/effmodel-costs --no-deps")
    assert {"report-14x", "report-14x-snntoolbox", "ratio-5x", "ratio-32x", "horowitz-fp32", "horowitz-int32",
            "loihi", "fair-45nm-fp32", "fair-45nm-fp32-zs"} <= set(models)
    assert models["report-14x"].mac_to_synop == 14.0
    assert models["ratio-5x"].mac_to_synop == 5.0 and models["ratio-32x"].mac_to_synop == 32.0
    assert models["horowitz-fp32"].mac == 4.6 and models["horowitz-fp32"].synop == 0.9
    assert round(models["horowitz-int32"].mac_to_synop, 9) == 32.0
    assert (models["loihi"].synop, models["loihi"].neuron_update) == (23.6, 81.0)
    assert all(m.citation for m in models.values())
    assert "spinnaker2" not in models  # dropped: its figure could not be checked against the paper
    assert {m.ann_convention for m in models.values()} <= {"macs", "half-flops"}
    assert {m.flop_convention for m in models.values()} <= {"exact", "snntoolbox", "2mac"}


def test_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, effmodel_costs, effmodel_reference; "
            "print([m for m in ('tensorflow', 'torch', 'tf_keras', 'snntoolbox', 'norse') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_second_pass_presets_declare_role_and_citations(only_costs):
    models = only_costs.get_cost_models()
    if not models:
        pytest.skip("effmodel-costs is not installed: pip install -e plugins/effmodel-costs --no-deps")
    dataflows = [m for m in models.values() if m.report_role == "dataflow"]
    assert {m.dataflow for m in dataflows} == {"no-reuse", "ideal-reuse", "row-stationary"}
    # the three differ only in the ANN's dataflow (and its buffer sizes), so their range is the dataflow's alone
    def rest(m):
        return {k: v for k, v in vars(m).items() if k not in ("name", "dataflow", "description", "citation", "counts",
                                                            "leaves_out", "citations")}
    assert rest(dataflows[0]) == rest(dataflows[1]) == rest(dataflows[2])
    for m in models.values():
        if m.accounting == "access":
            assert m.report_role and m.counts and m.leaves_out, m.name
    int8 = models["quant-45nm-int8-row-stationary"]
    # Horowitz 45 nm: 8-bit mult 0.2 + add 0.03 pJ; SNN: 8-bit weights, 16-bit membranes
    assert (int8.mac, int8.add, int8.weight_bits, int8.act_bits, int8.membrane_bits) == (0.23, 0.03, 8, 8, 16)
    assert "8-bit int mult 0.2 pJ" in int8.citations["mac"]
    rs = models["dataflow-45nm-fp32-row-stationary"]
    assert (rs.pe_count, rs.rf_bytes, rs.glb_bytes) == (168, 512, 108 * 1024) and "Eyeriss" in rs.citation
    assert models["quant-45nm-lowbit-row-stationary"].ann_act_bits_from_steps
    assert models["report-14x"].report_role == "headline" and models["fair-45nm-fp32"].report_role == "fair"
