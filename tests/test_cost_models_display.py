"""``effmodel cost-models`` shows each cited field in its own unit (issue 22):
energies in the model's unit (pJ), buffer sizes in bytes, widths in bits,
counts and choices bare.  It used to print every cited value as ``{value:g}
{unit}`` ("pe_count = 168 pJ"), and crashed on a cited text field.  A
citation for a field a cost model does not have is a one-line error naming
the model.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from effmodel.accounting.pricing import RANGE_FIELDS, CostModel
from effmodel.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
CITED = re.compile(r"^ {27}(sram) = (.*? pJ): |^ {27}(\w+) = (.*?): ")  # "<27 spaces>field = value: source"
ENERGIES = set(RANGE_FIELDS) | {"sram"}


def _cited_lines(stdout: str) -> dict[tuple[str, str], str]:
    """{(model, field): shown value} of every cited-field line."""
    out, model = {}, None
    for line in stdout.splitlines():
        if line and not line.startswith(" "):
            model = line.split()[0]
        elif (m := CITED.match(line)) and model:
            field, shown = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            out[model, field] = shown
    return out


def test_every_preset_shows_cited_values_in_their_own_units(run_effmodel):
    r = run_effmodel("cost-models")
    assert r.returncode == 0, r.stderr
    cited = _cited_lines(r.stdout)
    assert len({m for m, _ in cited}) >= 8  # the fair, dataflow and quantised presets and loihi cite their numbers
    for (model, field), shown in cited.items():
        if field in ENERGIES:
            assert shown.endswith(" pJ"), (model, field, shown)
        else:
            assert "pJ" not in shown, (model, field, shown)
    # the row-stationary presets cite Eyeriss's buffer sizes: shown as sizes and a count
    assert cited["dataflow-45nm-fp32-row-stationary", "pe_count"] == "168"
    assert cited["dataflow-45nm-fp32-row-stationary", "rf_bytes"] == "512 B"
    assert cited["dataflow-45nm-fp32-row-stationary", "glb_bytes"] == "108 KB"  # 110,592 B = 108 x 1024
    assert cited["dataflow-45nm-fp32-row-stationary", "dram"] == "1950 [1300, 2600] pJ"
    assert cited["fair-45nm-fp32", "sram"] == "8 KB: 10, 32 KB: 20, 1024 KB: 100 pJ"


HAND = """
[models.hand-cited]
accounting = "access"
dataflow = "row-stationary"
mac = 4.0
add = 0.25
synop = 0.5
word_bits = 8
membrane_bits = 16
on_chip_bytes = 1572864
charge_width = true
citation = "made-up figures for a test"

[models.hand-cited.citations]
synop = "a"
word_bits = "b"
membrane_bits = "c"
on_chip_bytes = "d"
dataflow = "e"
charge_width = "f"
"""


def test_a_hand_model_citing_widths_sizes_and_choices(run_effmodel, clean_env, tmp_path):
    """Through the costs plugin's override folder (EFFMODEL_REFERENCE_DIR), a
    preset citing a width, a size, a text choice and a flag."""
    (tmp_path / "cost_models.toml").write_text(HAND)
    shutil.copytree(REPO / "data" / "architectures", tmp_path / "architectures")
    r = run_effmodel("cost-models", env=clean_env(EFFMODEL_REFERENCE_DIR=str(tmp_path)))
    assert r.returncode == 0, r.stderr
    cited = {f: v for (m, f), v in _cited_lines(r.stdout).items() if m == "hand-cited"}
    assert cited == {"synop": "0.5 pJ", "word_bits": "8 bits", "membrane_bits": "16 bits",
                     "on_chip_bytes": "1.5 MB",  # 1,572,864 B = 1.5 x 1024^2
                     "dataflow": "row-stationary", "charge_width": "True"}


def test_a_citation_of_a_field_the_model_lacks_is_refused():
    with pytest.raises(UsageError, match=r"cost model 'x': citations.wattage is not a field of a cost model"):
        CostModel(name="x", mac=1.0, add=1.0, synop=1.0, citations={"wattage": "nowhere"})
