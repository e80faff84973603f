"""``effmodel export``: write a converted network to an interchange format (NIR).

The network is obtained as for ``effmodel run`` (trained or taken from the
cache, then normalised) by :func:`effmodel.pipeline.converted_network`; the
NIR writer lives in the ``effmodel-norse`` plugin (it needs nir and norse),
imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError

FORMATS = ("nir",)


def export_command(
    model: Optional[str] = typer.Option(None, "--model", help="Architecture name (see `effmodel architectures`)."),
    model_file: Optional[Path] = typer.Option(None, "--model-file", help="A trained Keras model (.h5/.keras) instead of --model."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset of --model-file (default: inferred from its input shape)."),
    output: Path = typer.Option(..., "--output", help="File to write, e.g. smallcnn1.nir."),
    format: str = typer.Option("nir", "--format", help="Output format: nir."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Dataset folder (else EFFMODEL_DATA_DIR, else download)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Trained-model cache (else EFFMODEL_CACHE_DIR or ~/.cache/effmodel)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (default: the architecture's)."),
    seed: int = typer.Option(0, "--seed", help="Training seed."),
    max_train_images: Optional[int] = typer.Option(None, "--max-train-images", help="Train on the first N training images only."),
    percentile: float = typer.Option(99.9, "--percentile", help="Normalisation percentile."),
    max2avg_pool: bool = typer.Option(
        False, "--max2avg-pool/--no-max2avg-pool",
        help="Replace max by average pooling (NIR has no spiking max pooling).",
    ),
) -> None:
    """Export the converted (normalised) network as a NIR graph."""
    fmt = format.strip().lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {format!r} (supported: {', '.join(FORMATS)})")
    try:
        from effmodel_norse.nir_export import to_nir_graph
    except ModuleNotFoundError as exc:
        raise UsageError(f"NIR export needs the effmodel-norse plugin and nir ({exc.name} is not installed)") from None
    from ..pipeline import RunSettings, converted_from_file, converted_network
    from ..simulation import NormalisationSettings

    if (model is None) == (model_file is None):
        raise UsageError("give exactly one of --model NAME or --model-file PATH")
    norm = NormalisationSettings(percentile=percentile, max2avg_pool=max2avg_pool)
    if model_file is not None:
        settings = RunSettings(data_dir=data_dir, cache_dir=cache_dir, normalisation=norm)
        _, network = converted_from_file(model_file, dataset, settings)
    else:
        network = converted_network(model_name=model, data_dir=data_dir, cache_dir=cache_dir, epochs=epochs,
                                    seed=seed, normalisation=norm, max_train_images=max_train_images)
    graph = to_nir_graph(network)  # raises UsageError for what NIR cannot express, before writing anything
    import nir

    output.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(output), graph)
    typer.echo(f"wrote {output} ({fmt}, {len(graph.nodes)} nodes, model {network.spec.name})")
