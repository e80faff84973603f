"""``effmodel new-plugin``: write a ready plugin distribution from a template.

The templates are package data (``effmodel/templates/new_plugin``): a shared
``pyproject.toml`` (with the ``effmodel`` entry point) and ``README.md``, and
per kind a module with the hook and a test that uses :mod:`effmodel.testing`.
``$name``-style placeholders are filled with :class:`string.Template`.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template
from typing import Optional

import typer

from ..errors import UsageError

KINDS = {
    # kind: (hook, what it registers, summary, next steps)
    "simulator": ("register_simulators", "the simulator `{name}`", "the simulator {name}",
                  "Edit `{module}/simulator.py` (as written it is a copy of effmodel's numpy reference\n"
                  "simulator) and keep `tests/` passing: `check_simulator` compares it with the reference."),
    "cost-model": ("register_cost_models", "the cost model `{name}`", "the cost model {name}",
                   "Put your per-operation costs and their source (`citation`) into `{module}/__init__.py`;\n"
                   "`effmodel cost-models` shows them, `effmodel run --cost-model {name}` uses them."),
    "architectures": ("register_architectures", "the architecture `{name}`", "the architecture {name}",
                      "Edit the layers in `{module}/__init__.py` and the hand count in `tests/`;\n"
                      "`effmodel architectures` shows the counts, `effmodel run --models {name}` runs it."),
    "dataset": ("register_datasets", "the dataset `{name}`", "the dataset {name}",
                "Put `{name}.npz` into your data folder (`--data-dir`) or change `load` in\n"
                "`{module}/__init__.py`; architectures name it in their `dataset` field."),
}
NAME_RULE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def plan(name: str, kind: str) -> dict[str, str]:
    """Distribution, module and template values for a plugin called ``name``."""
    if kind not in KINDS:
        raise UsageError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    short = name[len("effmodel-"):] if name.startswith("effmodel-") else name
    if not NAME_RULE.match(short):
        raise UsageError(f"plugin name {name!r} must be lower-case letters, digits and single hyphens, starting with a letter")
    from .. import __version__

    dist = f"effmodel-{short}"
    module = dist.replace("-", "_")
    hook, registers, summary, next_steps = KINDS[kind]
    fmt = {"name": short, "module": module}
    return {
        "name": short, "dist": dist, "module": module, "kind": kind, "hook": hook,
        "cls": "".join(part.capitalize() for part in short.split("-")),
        "registers": registers.format(**fmt), "summary": summary.format(**fmt),
        "next_steps": next_steps.format(**fmt), "effmodel_version": __version__,
    }


def files_for(values: dict[str, str]) -> dict[str, str]:
    """Relative path -> content of the distribution to write."""
    root = resources.files("effmodel") / "templates" / "new_plugin"
    module, kind = values["module"], values["kind"]
    sources = {
        "pyproject.toml": root / "common" / "pyproject.toml.tmpl",
        "README.md": root / "common" / "README.md.tmpl",
        f"{module}/__init__.py": root / kind / "__init__.py.tmpl",
        f"tests/test_{module}.py": root / kind / "test_plugin.py.tmpl",
    }
    if kind == "simulator":
        sources[f"{module}/simulator.py"] = root / kind / "simulator.py.tmpl"
    return {path: Template(src.read_text()).substitute(values) for path, src in sources.items()}


def new_plugin_command(
    name: str = typer.Argument(..., help="Plugin name, e.g. mysim (distribution effmodel-mysim, module effmodel_mysim)."),
    kind: str = typer.Option("simulator", "--kind", help="What the plugin registers: simulator, cost-model, architectures or dataset."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder to create (default: ./effmodel-NAME); must not exist or be empty."),
) -> None:
    """Write a ready plugin distribution: pyproject with the entry point, the hook, a README and a test."""
    values = plan(name, kind)
    target = output or Path(values["dist"])
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} already exists and is not an empty folder; choose another --output")
    files = files_for(values)  # everything rendered before anything is written
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    typer.echo(f"wrote {values['dist']} ({kind}) to {target}:")
    for rel in files:
        typer.echo(f"  {rel}")
    typer.echo(f"next: pip install -e {target} --no-deps && effmodel plugins && python -m pytest {target / 'tests'}")
