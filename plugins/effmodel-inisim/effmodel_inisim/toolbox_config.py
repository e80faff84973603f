"""snntoolbox's configuration, built in memory for one simulation.

snntoolbox reads a ``ConfigParser`` filled from its ``config_defaults``
file.  ``update_setup`` would validate a config *file* but also insists on a
data set on disk (``x_test.npz``), which effmodel streams instead; so this
module starts from the same defaults (``snntoolbox.bin.utils.load_config``),
sets what effmodel decides, and fills in the derived paths that
``update_setup`` would set.  The result is written to ``<workdir>/config``
for the record.
"""

from __future__ import annotations

import os
from pathlib import Path

SPIKE_CODES = {"rate": "temporal_mean_rate", "ttfs": "ttfs"}
"""effmodel's ``--coding`` -> snntoolbox's ``spike_code`` (its INI backend
``snntoolbox.simulation.backends.inisim.<code>``)."""


def build_config(
    workdir: Path,
    *,
    duration: int,
    batch_size: int,
    poisson: bool,
    normalize: bool,
    percentile: float,
    online: bool,
    max2avg_pool: bool,
    softmax_to_relu: bool,
    spike_code: str = "temporal_mean_rate",
    log_vars: tuple[str, ...] = ("synaptic_operations_b_t",),
):
    """A complete snntoolbox config for the INI simulator in ``workdir``.

    ``spike_code`` names snntoolbox's INI backend (:data:`SPIKE_CODES` maps
    effmodel's codings to it).  ``log_vars`` only has to name one key that
    makes the INI layers allocate their ``spiketrain`` variables, which is
    what effmodel reads each step.
    """
    import snntoolbox
    from snntoolbox.bin.utils import load_config

    config = load_config(os.path.join(os.path.dirname(snntoolbox.__file__), "config_defaults"))
    values = {
        "paths": {
            "path_wd": str(workdir),
            "dataset_path": str(workdir),
            "filename_ann": "ann",
            "runlabel": "effmodel",
        },
        "tools": {"evaluate_ann": False, "parse": True, "normalize": normalize, "convert": True, "simulate": True},
        "normalization": {"percentile": repr(float(percentile)), "online_normalization": online},
        "conversion": {"softmax_to_relu": softmax_to_relu, "max2avg_pool": max2avg_pool, "spike_code": spike_code},
        "simulation": {
            "simulator": "INI",
            "duration": int(duration),
            "dt": 1,
            "batch_size": int(batch_size),
            "num_to_test": int(batch_size),
            "keras_backend": "tensorflow",
            "top_k": 1,
        },
        "input": {"poisson_input": poisson, "model_lib": "keras", "dataset_format": "npz"},
        "output": {"log_vars": repr(set(log_vars)), "plot_vars": "{}", "verbose": 0, "overwrite": True},
    }
    for section, items in values.items():
        for key, value in items.items():
            config.set(section, key, str(value))
    # What update_setup derives from the above.
    if "ttfs" in spike_code:  # a ttfs neuron is refractory for the whole run: it fires at most once
        config.set("cell", "tau_refrac", str(int(duration)))
    log_dir = workdir / "log" / "gui" / config.get("paths", "runlabel")
    log_dir.mkdir(parents=True, exist_ok=True)
    config.set("paths", "log_dir_of_current_run", str(log_dir))
    config.set("paths", "filename_parsed_model", "ann_parsed")
    config.set("paths", "filename_snn", "ann_INI")
    with open(workdir / "config", "w") as f:
        config.write(f)
    return config
