"""``effmodel report``: HTML and Markdown report of an output directory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def report_command(
    input: str = typer.Option(..., "--input", "-i", help="Output directory of `effmodel run`/`sweep` (effmodel.sqlite or results.csv); several, comma-separated, are combined."),
    format: str = typer.Option("html,md", "--format", help="Comma-separated formats: html (self-contained), md (PNG files beside it)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write report.html/report.md (default: the input directory)."),
    bootstrap: int = typer.Option(2000, "--bootstrap", help="Cluster-bootstrap replicates behind every interval (at least 200; docs/analysis.md)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap draws."),
) -> None:
    """Write the report: the verdict (depth vs size) with its CI, robustness, Table 2 vs the paper, figures, methods."""
    from ..analysis.report import generate

    formats = [f.strip().lower() for f in format.split(",") if f.strip()]
    inputs = [Path(p.strip()) for p in input.split(",") if p.strip()]
    for path in generate(inputs, output, formats, bootstrap=bootstrap, seed=seed):
        if path.suffix in (".html", ".md"):
            typer.echo(f"wrote {path}")
