"""Max-pooling units are not charged neuron updates by ``ops`` cost models
either (issue 22): a spiking max pool passes on its strongest input's spikes
and keeps no membrane potential, so ``loihi`` (``neuron_update`` 81 pJ per
unit and step) charges only conv, dense and average-pooling units, as the
access-based presets already did (``LayerWork.has_membrane``).

Real pipeline, no TensorFlow: :func:`effmodel.testing.tiny_network` through
the numpy reference simulator and the driver, stored with the built-in
``loihi`` preset.

Hand count for :func:`effmodel.testing.tiny_spec` (input 10x10x1):
conv1 4 filters, same padding: 10 x 10 x 4 = 400 units;
pool 2x2: 5 x 5 x 4 = 100 units;
conv2 6 filters 3x3 valid: 3 x 3 x 6 = 54 units;
hidden 12 units; output 4 units.
Units with a membrane: 400 + 54 + 12 + 4 = 470 with a max pool,
470 + 100 = 570 with an average pool.
"""

from __future__ import annotations

import pytest

from effmodel.testing import store_item, tiny_network

T, N = 8, 4
LOIHI_SYNOP, LOIHI_UPDATE = 23.6, 81.0  # pJ, Davies et al. 2018, Table 1 (data/cost_models.toml)


@pytest.fixture
def tiny_plugins(tiny_dataset_plugins):
    return tiny_dataset_plugins(N)


@pytest.mark.parametrize("pooling, membranes", [("max", 470), ("avg", 570)])
def test_loihi_charges_membrane_units_only(tiny_plugins, tmp_path, pooling, membranes):
    from effmodel.pipeline import RunSettings
    from effmodel.store import Store

    settings = RunSettings(simulator="numpy", cost_model="loihi", output=tmp_path / "out", num_test=N, duration=T,
                           batch_size=N, record_layers=False)
    network = tiny_network(pooling=pooling)
    with Store(settings.output) as store:
        row = store_item(network.spec, settings, store, "r1", network)
    assert row["neuron_updates_total"] == membranes * T
    step, synops = row["threshold_step"], row["synops_at_threshold"]
    assert 0 < step <= T and synops > 0
    assert row["snn_costs"] == pytest.approx(synops * LOIHI_SYNOP + membranes * step * LOIHI_UPDATE, rel=1e-12)
    # the report's repricing of stored rows (analysis.robustness.reprice) charges the same units
    import pandas as pd

    from effmodel.analysis.robustness import reprice

    again = reprice(pd.DataFrame([row]), "loihi", timesteps=pd.DataFrame(), layers=pd.DataFrame())
    assert again["snn_costs"].iloc[0] == pytest.approx(row["snn_costs"], rel=1e-12)
    as_synops = reprice(pd.DataFrame([row]), "loihi", neuron_updates="synop", timesteps=pd.DataFrame(),
                        layers=pd.DataFrame())  # each update charged as one SynOp
    assert as_synops["snn_costs"].iloc[0] == pytest.approx((synops + membranes * step) * LOIHI_SYNOP, rel=1e-12)
