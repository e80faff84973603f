"""One INIsim simulation: parse and convert once, then simulate batch by batch.

:class:`InisimSession` drives snntoolbox programmatically: its keras model
parser, (optionally) its normaliser, and the INI ``SNN`` of
``snntoolbox.simulation.target_simulators.INI_temporal_mean_rate_target_sim``.
Each batch is stepped here, one ``predict_on_batch`` per time step exactly as
``SNN.simulate`` does, so that per-step figures are read from the simulator's
layer variables (``spiketrain``) instead of from its cumulative logs, and
memory stays bounded by the batch size.

Per step and spiking layer (conv, dense and pooling: pooling neurons spike in
INIsim too) it records spikes, exact SynOps (spikes x
:func:`effmodel.counting.fanout_map`) and snntoolbox's own SynOps (spikes x
its border-blind fan-out, via its ``get_layer_synaptic_operations``).
snntoolbox's layers are renamed (``00Conv2D_26x26x32``...); they are mapped to
the spec's spiking layers by order and checked by shape.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from effmodel.counting import fanout_map, spiking_layer_indices
from effmodel.errors import SimulationError, UsageError
from effmodel.simulation import BatchResult, ConvertedNetwork, SimulationConfig

from .simulator import NORMALISATION_MODES
from .workdir import WorkDir


class InisimSession:
    """A converted INIsim network in a fresh working directory."""

    def __init__(self, network: ConvertedNetwork, config: SimulationConfig):
        if config.readout != "spikes":
            raise UsageError(f"inisim supports only --readout spikes (snntoolbox's rule), not {config.readout!r}")
        opts = dict(config.options)
        mode = str(opts.get("normalisation", "effmodel"))
        if mode not in NORMALISATION_MODES:
            raise UsageError(f"inisim: unknown normalisation {mode!r} (use {', '.join(NORMALISATION_MODES)})")
        if mode != "effmodel" and network.model_path is None:
            raise UsageError(f"inisim: normalisation {mode!r} needs the trained model file (network.model_path)")
        if mode != "effmodel" and network.norm_images is None:
            raise UsageError(f"inisim: normalisation {mode!r} needs the normalisation images (network.norm_images)")
        self.network = network
        self.config = config
        self.mode = mode
        self.softmax_to_relu = bool(opts.get("softmax_to_relu", True))
        self.keep_workdir = bool(opts.get("keep_workdir", False))
        self.spec = network.simulated_spec
        self.workdir = WorkDir(config.workdir)
        self._log = open(self.workdir.path / "snntoolbox.log", "w") if opts.get("log_file", True) else None
        self._batches = 0
        try:
            with self._quiet():
                self._open()
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> Path:
        """The working directory of this simulation."""
        return self.workdir.path

    # --- opening: write the ANN, parse, (normalise), convert ---------------------------

    def _quiet(self):
        return contextlib.redirect_stdout(self._log) if self._log is not None else contextlib.nullcontext()

    def _open(self) -> None:
        from . import compat

        compat.apply()
        from effmodel.keras_compat import import_keras

        keras = import_keras()
        from snntoolbox.bin.utils import import_target_sim
        from snntoolbox.parsing.model_libs import keras_input_lib

        from .toolbox_config import build_config

        keras.utils.set_random_seed(int(self.config.seed))
        net = self.network
        self.tb_config = build_config(
            self.path,
            duration=self.config.duration,
            batch_size=self.config.batch_size,
            poisson=self.config.input_encoding == "poisson",
            normalize=self.mode != "effmodel",
            percentile=net.normalisation.percentile,
            online=self.mode == "online",
            # The effmodel model is built from simulated_spec (pooling already swapped).
            max2avg_pool=net.normalisation.max2avg_pool and self.mode != "effmodel",
            softmax_to_relu=self.softmax_to_relu,
        )
        self._write_ann(keras)
        # Not keras_input_lib.load: it compiles with ``model.loss``, which a model
        # saved without its training configuration lacks (AttributeError).
        input_model = keras.models.load_model(str(self.path / "ann.h5"), compile=False)
        parser = keras_input_lib.ModelParser(input_model, self.tb_config)
        parser.parse()
        parsed = parser.build_parsed_model()
        if self.mode != "effmodel":
            from snntoolbox.conversion.utils import normalize_parameters

            normalize_parameters(parsed, self.tb_config, x_norm=np.asarray(net.norm_images, np.float32),
                                 path=str(self.path / "normalization"))
        self.parsed_model = parsed
        target_sim = import_target_sim(self.tb_config)
        snn = target_sim.SNN(self.tb_config)
        snn.build(parsed)
        self.snn = snn
        self._map_layers()

    def _write_ann(self, keras) -> None:
        """``<workdir>/ann.h5``: the effmodel-normalised network, or the trained one."""
        if self.mode == "effmodel":
            from effmodel.training import build_model

            model = build_model(self.spec)
            for layer in self.spec.weight_layers:
                w = self.network.normalised_weights[layer.name]
                model.get_layer(layer.name).set_weights([w.kernel] + ([w.bias] if w.bias is not None else []))
            with warnings.catch_warnings():  # snntoolbox reads .h5 only: the "legacy format" warning is moot
                warnings.simplefilter("ignore", UserWarning)
                model.save(str(self.path / "ann.h5"), include_optimizer=False)
        else:  # possibly a user's file: refuse code and unsupported layers before snntoolbox's parser loads it
            from effmodel.model_import import check_model_file

            check_model_file(self.network.model_path)
            shutil.copyfile(self.network.model_path, self.path / "ann.h5")

    def _map_layers(self) -> None:
        """Pair snntoolbox's spiking layers with the spec's, by order and shape."""
        sim_layers = [l for l in self.snn.snn.layers if getattr(l, "spiketrain", None) is not None]
        indices = spiking_layer_indices(self.spec)
        shapes = self.spec.shapes()
        if len(sim_layers) != len(indices):
            raise SimulationError(
                f"inisim: snntoolbox built {len(sim_layers)} spiking layers, the spec {self.spec.name!r} has {len(indices)}"
            )
        self.layers = []  # (spec name, spec index, snntoolbox layer, exact fan-out, snntoolbox fan-out)
        for pos, (layer, index) in enumerate(zip(sim_layers, indices)):
            expected = tuple(shapes[index][1])
            got = tuple(int(s) for s in layer.output_shape[1:])
            if got != expected:
                raise SimulationError(
                    f"inisim: snntoolbox layer {layer.name!r} has shape {got}, spec layer "
                    f"{self.spec.layers[index].name!r} has {expected}"
                )
            fan = fanout_map(self.spec, index).reshape(-1).astype(np.int64)
            self.layers.append((self.spec.layers[index].name, index, layer, fan, self.snn.fanout[pos + 1]))
        self.input_fanout = fanout_map(self.spec, -1).reshape(-1).astype(np.int64)

    # --- simulating ---------------------------------------------------------------------

    def run_batch(self, x: np.ndarray, y: np.ndarray) -> BatchResult:
        """Simulate ``x`` (NHWC in [0, 1]) for ``duration`` steps; chunks of ``batch_size``."""
        x = np.asarray(x, np.float32)
        y = np.asarray(y).astype(np.int64).reshape(-1)
        if len(x) != len(y):
            raise UsageError(f"inisim: {len(x)} images but {len(y)} labels")
        if len(x) == 0:
            raise UsageError("inisim: empty batch")
        if tuple(x.shape[1:]) != tuple(self.spec.input_shape):
            raise UsageError(f"inisim: images of shape {x.shape[1:]}, {self.spec.name} expects {self.spec.input_shape}")
        parts = []
        with self._quiet():
            for start in range(0, len(x), self.config.batch_size):
                parts.append(self._run_chunk(x[start : start + self.config.batch_size], y[start : start + self.config.batch_size]))
        return parts[0] if len(parts) == 1 else _merge(parts)

    def _run_chunk(self, x: np.ndarray, y: np.ndarray) -> BatchResult:
        import tensorflow as tf
        from snntoolbox.simulation.utils import get_layer_synaptic_operations

        snn = self.snn
        n, b, T = len(x), snn.batch_size, self.config.duration
        if n < b:  # the INI model has a fixed batch size: pad, and ignore the padding below
            x = np.concatenate([x, np.zeros((b - n, *x.shape[1:]), np.float32)])
        dt = snn._dt
        poisson = self.config.input_encoding == "poisson"
        snn.reset(self._batches)
        snn._input_spikecount = 0
        names = [l[0] for l in self.layers]
        spikes = {k: np.zeros(T, np.int64) for k in names}
        synops = {k: np.zeros(T, np.int64) for k in names}
        tb_synops = np.zeros(T, np.int64)
        counts = {k: np.zeros((n, *l.output_shape[1:]), np.int64) for k, _, l, _, _ in self.layers} \
            if self.config.record_spiketrains else None
        if poisson:
            spikes["input"] = np.zeros(T, np.int64)
            synops["input"] = np.zeros(T, np.int64)
        out_counts = np.zeros((n, snn.num_classes), np.int64)
        output_spikes = np.zeros((n, T, snn.num_classes), np.int8)  # per image, step and class; padding dropped
        correct = np.zeros(T, np.int64)
        analog = x * dt
        for t in range(T):
            snn.set_time((t + 1) * dt)
            inp = snn.get_poisson_frame_batch(x) if poisson else analog
            out = snn.snn.predict_on_batch(inp)
            output_spikes[:, t] = np.asarray(out)[:n] > 0
            out_counts += output_spikes[:, t]
            for name, _, layer, fan, tb_fan in self.layers:
                s = tf.keras.backend.get_value(layer.spiketrain)[:n] != 0
                per_neuron = s.reshape(n, -1).sum(axis=0, dtype=np.int64)
                spikes[name][t] = per_neuron.sum()
                synops[name][t] = per_neuron @ fan
                tb_synops[t] += int(np.sum(get_layer_synaptic_operations(s, tb_fan)))
                if counts is not None:
                    counts[name] += s
            if poisson:
                s_in = np.asarray(inp)[:n] != 0
                per_in = s_in.reshape(n, -1).sum(axis=0, dtype=np.int64)
                spikes["input"][t] = per_in.sum()
                synops["input"][t] = per_in @ self.input_fanout
                tb_synops[t] += int(np.sum(get_layer_synaptic_operations(s_in, snn.fanout[0])))
            guess = np.where(out_counts.sum(axis=1) == 0, -1, np.argmax(out_counts, axis=1))
            correct[t] = int(np.sum(guess == y))
        self._batches += 1
        ann_pred = np.argmax(self.parsed_model.predict_on_batch(x), axis=1)[:n]
        extra: dict[str, Any] = {
            "snntoolbox_synops_t": tb_synops,
            "snntoolbox_ann_ops": int(snn.operations_ann),
            "parsed_ann_correct": int(np.sum(ann_pred == y)),
            "normalisation": self.mode,
            "softmax_to_relu": self.softmax_to_relu,
        }
        return BatchResult(
            correct_t=correct,
            synops_t=synops,
            spikes_t=spikes,
            predictions=guess,
            spike_counts=counts,
            extra=extra,
            output_spikes_t=output_spikes,
        )

    def close(self) -> None:
        """Release the model and remove a temporary working directory."""
        self.snn = None
        self.parsed_model = None
        if self._log is not None and not self._log.closed:
            self._log.close()
        self.workdir.cleanup(keep=self.keep_workdir)


def _merge(parts: list[BatchResult]) -> BatchResult:
    """Concatenate the results of consecutive chunks of one batch."""
    def add(key: str) -> dict[str, np.ndarray]:
        return {k: np.sum([getattr(p, key)[k] for p in parts], axis=0) for k in getattr(parts[0], key)}

    extra = dict(parts[0].extra)
    extra["snntoolbox_synops_t"] = np.sum([p.extra["snntoolbox_synops_t"] for p in parts], axis=0)
    extra["parsed_ann_correct"] = int(sum(p.extra["parsed_ann_correct"] for p in parts))
    counts = None
    if parts[0].spike_counts is not None:
        counts = {k: np.concatenate([p.spike_counts[k] for p in parts]) for k in parts[0].spike_counts}
    return BatchResult(
        correct_t=np.sum([p.correct_t for p in parts], axis=0),
        synops_t=add("synops_t"),
        spikes_t=add("spikes_t"),
        predictions=np.concatenate([p.predictions for p in parts]),
        spike_counts=counts,
        extra=extra,
        output_spikes_t=np.concatenate([p.output_spikes_t for p in parts]),
    )
