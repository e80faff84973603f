"""Commands that describe what is installed: plugins, architectures, cost models."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from .. import plugins


def plugins_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List loaded plugins with their distribution, version and hooks."""
    infos = plugins.plugin_infos()
    if as_json:
        typer.echo(json.dumps([asdict(i) | {"hooks": list(i.hooks)} for i in infos], indent=2))
        return
    for i in infos:
        typer.echo(f"{i.name:<12} {i.distribution} {i.version}  hooks: {', '.join(i.hooks)}")


def architecture_row(spec) -> dict:
    """The summary of one architecture that ``architectures --json`` prints."""
    from ..counting import count_network

    c = count_network(spec)
    return {
        "name": spec.name,
        "dataset": spec.dataset,
        "depth": spec.depth,
        "conv_layers": spec.conv_layers,
        "dense_layers": spec.dense_layers,
        "params": c.params,
        "macs": c.macs,
        "synapses": c.synapses,
        "flops_exact": c.flops_exact,
        "flops_snntoolbox": c.flops_snntoolbox,
        "neurons": c.neurons,
        "spiking_neurons": c.spiking_neurons,
        "epochs": spec.epochs,
        "source": spec.source,
    }


def architectures_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    spec_file: Optional[Path] = typer.Option(None, "--spec", help="Describe an architecture from a TOML/JSON spec file instead."),
    model_file: Optional[Path] = typer.Option(None, "--model-file", help="Describe a trained Keras model file (.h5/.keras) instead."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset of --model-file (default: inferred from its input shape)."),
    layers: bool = typer.Option(False, "--layers", help="Include the per-layer counts."),
) -> None:
    """List registered architectures with depth, parameters, MACs and neurons."""
    from ..counting import count_network
    from ..specs import load_spec_file

    if model_file is not None:
        from ..model_import import load_model_file

        specs = [load_model_file(model_file, dataset=dataset).spec]
    elif spec_file is not None:
        specs = [load_spec_file(spec_file)]
    else:
        specs = list(plugins.get_architectures().values())
    rows = []
    for spec in specs:
        row = architecture_row(spec)
        if layers:
            row["layers"] = [asdict(l) for l in count_network(spec).layers]
        rows.append(row)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'name':<14}{'dataset':<9}{'depth':>6}{'conv':>5}{'dense':>6}{'params':>12}{'MACs':>14}{'neurons':>10}")
    for r in rows:
        typer.echo(f"{r['name']:<14}{r['dataset']:<9}{r['depth']:>6}{r['conv_layers']:>5}{r['dense_layers']:>6}"
                   f"{r['params']:>12,}{r['macs']:>14,}{r['neurons']:>10,}")


def per_operation_costs(model) -> str:
    """Every per-operation cost of ``model``, read from its fields generically
    (so fields a plugin or a later CostModel adds are shown too): mac, add and
    synop always, any other non-zero float field too."""
    from dataclasses import fields

    shown = []
    for f in fields(model):
        value = getattr(model, f.name)
        if isinstance(value, float) and (f.name in ("mac", "add", "synop") or value != 0):
            shown.append(f"{f.name} {value:g}")
    return ", ".join(shown)


def cost_models_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List cost models with their per-operation costs and citations."""
    models = plugins.get_cost_models()
    if as_json:
        typer.echo(json.dumps([asdict(m) | {"mac_to_synop": m.mac_to_synop} for m in models.values()], indent=2))
        return
    for m in models.values():
        typer.echo(f"{m.name:<24} {per_operation_costs(m)} {m.unit} (MAC:SynOp x{m.mac_to_synop:.1f})  {m.citation}")
        if getattr(m, "comparison", ""):
            typer.echo(f"{'':<24} {m.comparison}")
        if getattr(m, "accounting", "ops") == "access":
            typer.echo(f"{'':<24} ANN {'zero-skipping' if m.zero_skipping else 'dense'}, SNN first layer "
                       f"{m.first_layer}, {m.word_bits}-bit values, memory included")
        for field, source in getattr(m, "citations", {}).items():
            value = getattr(m, field, None)
            shown = (", ".join(f"{c / 1024:g} KB: {e:g}" for c, e in value) if field == "sram" else f"{value:g}")
            if field in getattr(m, "ranges", {}):
                shown += " [{:g}, {:g}]".format(*m.ranges[field])
            typer.echo(f"{'':<24}   {field} = {shown} {m.unit}: {source}")
