"""Commands that describe what is installed: plugins, architectures, cost models."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from .. import plugins


KINDS = {"register_architectures": "architectures", "register_datasets": "datasets",
         "register_simulators": "simulators", "register_cost_models": "cost models"}


def simulator_details(sim) -> dict:
    """What ``effmodel plugins`` shows of a simulator: description, readouts, input encodings, neural codings,
    declared options."""
    from ..options import declared_options
    from ..simulation import INPUT_ENCODINGS, READOUTS, declared_codings

    declared = declared_options(sim)
    return {
        "description": sim.description,
        "readouts": list(getattr(sim, "readouts", READOUTS)),
        "input_encodings": list(getattr(sim, "input_encodings", INPUT_ENCODINGS)),
        "codings": list(declared_codings(sim)),
        "options": None if declared is None else [
            {"name": o.name, "type": o.type_names, "default": o.default, "choices": list(o.choices), "doc": o.doc}
            for o in declared],
    }


def plugins_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List loaded plugins: distribution, version, hooks, and what each contributes
    (simulators with their options, readouts, input encodings and codings; architectures; datasets; cost models)."""
    infos = plugins.plugin_infos()
    sims = plugins.get_simulators()
    if as_json:
        typer.echo(json.dumps([asdict(i) | {"hooks": list(i.hooks), "contributes": {h: list(n) for h, n in i.contributes.items()},
                                            "simulators": {n: simulator_details(sims[n]) for n in i.contributes.get("register_simulators", ())}}
                               for i in infos], indent=2, default=str))
        return
    for i in infos:
        typer.echo(f"{i.name:<12} {i.distribution} {i.version}  hooks: {', '.join(i.hooks)}")
        for hook, names in i.contributes.items():
            if hook != "register_simulators":
                typer.echo(f"  {KINDS[hook]}: {', '.join(names)}")
                continue
            for n in names:
                d = simulator_details(sims[n])
                typer.echo(f"  simulator {n}: {d['description']}")
                typer.echo(f"    readouts: {', '.join(d['readouts'])}; input encodings: {', '.join(d['input_encodings'])}; "
                           f"codings: {', '.join(d['codings'])}")
                if d["options"] is None:
                    typer.echo("    options: not declared (not checked before the run)")
                for o in d["options"] or ():
                    allowed = " | ".join(map(str, o["choices"])) if o["choices"] else o["type"]
                    typer.echo(f"    --option {o['name']}=...  ({allowed}; default {o['default']})  {o['doc']}".rstrip())
        if i.hooks and not i.contributes:
            typer.echo("  (registered nothing)")


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
        from ..keras_import import load_model_file

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
    typer.echo(aligned_table(
        ("name", "dataset", "depth", "conv", "dense", "params", "MACs", "neurons"),
        [(r["name"], r["dataset"], r["depth"], r["conv_layers"], r["dense_layers"], f"{r['params']:,}", f"{r['macs']:,}",
          f"{r['neurons']:,}") for r in rows]))
    if model_file is None and spec_file is None:
        from ..ensembles import EXAMPLE, SPELLING

        typer.echo(f"Ensembles: {SPELLING} (e.g. {EXAMPLE}) names n seeded copies of any of these, "
                   "their output spikes summed (README, \"Ensembles\").")


def aligned_table(header: tuple[str, ...], rows: list[tuple]) -> str:
    """Columns as wide as their longest entry, two spaces apart: text left, numbers right."""
    cells = [tuple(map(str, header))] + [tuple(map(str, r)) for r in rows]
    widths = [max(len(c[j]) for c in cells) for j in range(len(header))]
    numeric = [all(c[j].replace(",", "").isdigit() for c in cells[1:]) and len(cells) > 1 for j in range(len(header))]
    return "\n".join("  ".join(c[j].rjust(widths[j]) if numeric[j] else c[j].ljust(widths[j]) for j in range(len(header))).rstrip()
                     for c in cells)


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
            typer.echo(f"{'':<24}   {field} = {cited_value(m, field)}: {source}")


def cited_value(model, field: str) -> str:
    """A cited field's value in its own unit: energies (and the SRAM table's
    energies, capacities in KB) in the model's ``unit`` with their range, ``*_bytes`` sizes in
    B/KB/MB, ``*_bits`` widths in bits, anything else (a count, a choice) bare."""
    from ..accounting.pricing import RANGE_FIELDS

    value = getattr(model, field, None)
    if field == "sram":
        return ", ".join(f"{c / 1024:g} KB: {e:g}" for c, e in value) + f" {model.unit}"
    if field in RANGE_FIELDS:
        shown = f"{value:g}"
        if field in getattr(model, "ranges", {}):
            shown += " [{:g}, {:g}]".format(*model.ranges[field])
        return f"{shown} {model.unit}"
    if field.endswith("_bytes") and isinstance(value, (int, float)):
        return _size(value) if value else "0 (no limit)"
    if field.endswith("_bits") and isinstance(value, (int, float)):
        return f"{value:g} bits"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _size(nbytes: float) -> str:
    """Bytes as B, KB or MB (powers of 1024), e.g. 512 B, 108 KB, 1 MB."""
    for unit, scale in (("MB", 1024 ** 2), ("KB", 1024)):
        if nbytes >= scale and nbytes % (scale // 8) == 0:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes:g} B"
