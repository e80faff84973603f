"""One INIsim simulation: parse and convert once, then simulate batch by batch.

:class:`InisimSession` drives snntoolbox programmatically: its keras model
parser, (optionally) its normaliser, and the INI ``SNN`` of
``snntoolbox.simulation.target_simulators.INI_<code>_target_sim``, where the
code is ``temporal_mean_rate`` (``--coding rate``) or ``ttfs`` (``--coding
ttfs``; :mod:`.toolbox_config`, :mod:`.ttfs_gate`).  Each batch is stepped
here, one ``predict_on_batch`` per time step exactly as ``SNN.simulate``
does, so that per-step figures are read from the simulator's layer variables
(``spiketrain``) instead of from its cumulative logs, and memory stays
bounded by the batch size.

Per step and spiking layer (conv, dense and pooling: pooling neurons spike in
INIsim too) it records spikes, exact SynOps (spikes x
:func:`effmodel.counting.fanout_map`) and snntoolbox's own SynOps (spikes x
its border-blind fan-out, via its ``get_layer_synaptic_operations``).
snntoolbox's layers are renamed (``00Conv2D_26x26x32``...); they are mapped to
the spec's spiking layers by order and checked by shape.  The output
layer's spikes give ``output_spikes_t``, which :mod:`effmodel.readout` reads
with the coding's rule for ``correct_t`` and ``predictions``.
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
from effmodel.readout import decisions
from effmodel.simulation import BatchResult, ConvertedNetwork, SimulationConfig

from .simulator import NORMALISATION_MODES
from .toolbox_config import SPIKE_CODES
from .ttfs_gate import GATES
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
        self.coding = config.coding
        self.gate = str(opts.get("ttfs_gate", "image"))
        _check_coding(self.coding, mode, self.softmax_to_relu, self.gate)
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
        from .ttfs_gate import image_gated_backend

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
            spike_code=SPIKE_CODES[self.coding],
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
        if self.coding == "ttfs" and self.gate == "image":
            snn.sim = image_gated_backend()  # the layers it builds gate their input per image
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
        output_spikes = np.zeros((n, T, snn.num_classes), np.int8)  # per image, step and class; padding dropped
        output_name = names[-1]
        ttfs = self.coding == "ttfs"
        synops_image = np.zeros((n, T), np.int64) if ttfs else None  # for the SynOps up to each image's decision
        analog = x * dt
        for t in range(T):
            snn.set_time((t + 1) * dt)
            inp = snn.get_poisson_frame_batch(x) if poisson else analog
            snn.snn.predict_on_batch(inp)  # its output is the spikes (rate) or the persistent current (ttfs)
            for name, _, layer, fan, tb_fan in self.layers:
                s = tf.keras.backend.get_value(layer.spiketrain)[:n] != 0
                per_neuron = s.reshape(n, -1).sum(axis=0, dtype=np.int64)
                spikes[name][t] = per_neuron.sum()
                synops[name][t] = per_neuron @ fan
                if ttfs:
                    synops_image[:, t] += s.reshape(n, -1) @ fan
                if name == output_name:
                    output_spikes[:, t] = s.reshape(n, -1)
                tb_synops[t] += int(np.sum(get_layer_synaptic_operations(s, tb_fan)))
                if counts is not None:
                    counts[name] += s
            if poisson:
                s_in = np.asarray(inp)[:n] != 0
                per_in = s_in.reshape(n, -1).sum(axis=0, dtype=np.int64)
                spikes["input"][t] = per_in.sum()
                synops["input"][t] = per_in @ self.input_fanout
                tb_synops[t] += int(np.sum(get_layer_synaptic_operations(s_in, snn.fanout[0])))
                if ttfs:
                    synops_image[:, t] += s_in.reshape(n, -1) @ self.input_fanout
        self._batches += 1
        classes = decisions(output_spikes, self.coding)  # (n, T): the core's readout rule of this code
        correct = np.sum(classes == y[:, None], axis=0)
        guess = classes[:, -1]
        ann_pred = np.argmax(self.parsed_model.predict_on_batch(x), axis=1)[:n]
        extra: dict[str, Any] = {
            "snntoolbox_synops_t": tb_synops,
            "snntoolbox_ann_ops": int(snn.operations_ann),
            "parsed_ann_correct": int(np.sum(ann_pred == y)),
            "normalisation": self.mode,
            "softmax_to_relu": self.softmax_to_relu,
        }
        if ttfs:
            extra.update(decision_figures(output_spikes, synops_image))
            extra["ttfs_gate"] = self.gate
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


def _check_coding(coding: str, mode: str, softmax_to_relu: bool, gate: str) -> None:
    """Refuse, in one line, a code snntoolbox's backends cannot simulate with these options."""
    if coding not in SPIKE_CODES:
        raise UsageError(f"inisim: no snntoolbox backend for --coding {coding!r} (use {' or '.join(SPIKE_CODES)})")
    if gate not in GATES:
        raise UsageError(f"inisim: unknown ttfs_gate {gate!r} (use {' or '.join(GATES)})")
    if coding != "ttfs":
        return
    if not softmax_to_relu:
        raise UsageError("inisim: --coding ttfs needs softmax_to_relu=true (snntoolbox's spiking softmax output "
                         "is never refractory: it would fire more than once)")
    if mode == "online":
        raise UsageError("inisim: --coding ttfs has no online normalisation (snntoolbox's ttfs backend lacks it); "
                         "use normalisation=effmodel or snntoolbox")


def decision_figures(output_spikes: np.ndarray, synops_image: np.ndarray) -> dict[str, Any]:
    """The decision-time figures of a TTFS batch, as the numpy reference reports them.

    ``output_spikes``: ``(B, T, K)``; ``synops_image``: ``(B, T)`` each image's
    SynOps per step.  ``decisions_t``: images deciding (first output spike)
    at each step; ``synops_to_decision``: each decided image's SynOps up to
    and including its decision step, summed; ``undecided_images``: images
    without an output spike."""
    fired = output_spikes.any(axis=2)  # (B, T)
    decided = fired.any(axis=1)
    first = np.argmax(fired, axis=1)[decided]
    to_decision = np.cumsum(synops_image, axis=1)[np.flatnonzero(decided), first]
    return {
        "decisions_t": np.bincount(first, minlength=fired.shape[1]).astype(np.int64),
        "synops_to_decision": int(to_decision.sum()),
        "undecided_images": int(np.sum(~decided)),
    }


SUMMED_EXTRAS = ("snntoolbox_synops_t", "parsed_ann_correct", "decisions_t", "synops_to_decision", "undecided_images")
"""Per-image figures in ``extra`` that add up over the chunks of one batch (the rest describe the run)."""


def _merge(parts: list[BatchResult]) -> BatchResult:
    """Concatenate the results of consecutive chunks of one batch."""
    def add(key: str) -> dict[str, np.ndarray]:
        return {k: np.sum([getattr(p, key)[k] for p in parts], axis=0) for k in getattr(parts[0], key)}

    extra = dict(parts[0].extra)
    for key in SUMMED_EXTRAS:
        if key in extra:
            extra[key] = sum((p.extra[key] for p in parts[1:]), start=parts[0].extra[key])
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
