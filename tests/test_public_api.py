"""effmodel's stable public API: every name documented in docs/hooks.md
("The stable API") is exported, resolvable, and importing them all pulls in
no heavy framework."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import effmodel

DOC = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"


def documented_names() -> list[str]:
    """The backticked names in the first column of the stable-API table."""
    text = DOC.read_text()
    section = text.split("## The stable API", 1)[1].split("\n## ", 1)[0]
    names = []
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names += re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", first_cell)
    return names


def test_the_documented_list_is_not_empty():
    names = documented_names()
    # the minimum: hookimpl, spec/network/config/result/cost types, counting helpers, errors
    for must in ("hookimpl", "ArchitectureSpec", "ConvertedNetwork", "SimulationConfig", "BatchResult",
                 "CostModel", "fanout_map", "spiking_layer_indices", "UsageError", "HOOK_API_VERSION"):
        assert must in names


def test_every_documented_name_is_exported_and_resolves():
    missing = [n for n in documented_names() if n not in effmodel.__all__]
    assert not missing, f"documented but not in effmodel.__all__: {missing}"
    for name in documented_names():
        assert getattr(effmodel, name) is not None, name
        assert name in dir(effmodel)


def test_exports_are_the_objects_of_their_modules():
    from effmodel import counting, errors, simulation, specs

    assert effmodel.ConvertedNetwork is simulation.ConvertedNetwork
    assert effmodel.fanout_map is counting.fanout_map
    assert effmodel.validate_spec is specs.validate
    assert effmodel.UsageError is errors.UsageError


def test_hook_api_version_is_a_major_minor_pair():
    major, minor = effmodel.HOOK_API_VERSION
    assert (major, minor) >= (1, 0) and all(isinstance(v, int) for v in (major, minor))


def test_unknown_name_is_an_attribute_error():
    try:
        effmodel.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("effmodel.NoSuchThing resolved")


def test_the_whole_api_imports_no_heavy_framework():
    code = ("import sys, effmodel\n"
            "[getattr(effmodel, n) for n in effmodel.__all__]\n"
            "heavy = [m for m in ('tensorflow', 'torch', 'snntoolbox', 'norse', 'ray') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing effmodel's public API imported {out}"
