"""Write a translated model as a ``channels_last`` tf_keras ``.h5`` (what snntoolbox parses)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Mapping

from ..digest import file_sha256
from ..simulation import LayerWeights
from ..specs import ArchitectureSpec




def write_h5(spec: ArchitectureSpec, weights: Mapping[str, LayerWeights], source: Path, workdir: str | Path | None) -> Path:
    """Save a tf_keras model built from ``spec`` with ``weights``; reused if present."""
    from ..training import build_model

    key = hashlib.sha256(f"{file_sha256(source)}:{spec.content_hash()}:{spec.name}".encode()).hexdigest()[:16]
    out_dir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="effmodel-import-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{source.stem}-{key}.h5"
    if target.is_file():
        return target
    from ..keras_compat import import_keras

    backend = import_keras().backend
    previous = backend.image_data_format()
    backend.set_image_data_format("channels_last")  # build_model relies on the global default
    try:
        model = build_model(spec)
    finally:
        backend.set_image_data_format(previous)
    for layer in spec.weight_layers:
        w = weights[layer.name]
        model.get_layer(layer.name).set_weights([w.kernel] if w.bias is None else [w.kernel, w.bias])
    tmp = out_dir / f".{target.name}.{os.getpid()}.tmp.h5"
    try:
        with warnings.catch_warnings():  # tf_keras calls .h5 "legacy"; snntoolbox needs it
            warnings.simplefilter("ignore", UserWarning)
            model.save(str(tmp), include_optimizer=False, save_format="h5")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
