"""Export a converted network as a NIR graph (https://neuroir.org).

The graph holds the same normalised weights the ``norse`` simulator uses, in
torch layout (conv OIHW, dense rows permuted to NCHW flatten order; see
:mod:`effmodel_norse.network`): ``Input -> [Conv2d | SumPool2d | Flatten ->
Affine] -> IF -> ... -> Output``, one ``IF`` node (``r = 1``, threshold 1,
``v_reset = 0``) per spiking layer.

What NIR (and ``norse.torch.from_nir``) cannot express, and what is done:

* reset by subtraction: a NIR ``IF`` resets to ``v_reset``.  The graph is
  therefore the ``iaf`` neuron variant of the simulator (Norse's IAF, strict
  threshold, reset to zero); the round trip is exact against
  ``options={"neuron": "iaf"}``, not against the default ``if``.
* spiking max pooling (count-gated): no NIR node; export refuses networks
  with max pooling unless they were normalised with ``max2avg_pool``.
* average pooling: ``from_nir`` knows ``SumPool2d`` but not ``AvgPool2d``, so
  a ``k x k`` average pool is written as ``SumPool2d`` followed by an ``IF``
  with threshold ``k*k`` (the same dynamics scaled by ``k*k``: exact in
  floating point when ``k*k`` is a power of two, e.g. 2x2 pools).  Padded
  (Keras 'same') pooling is refused (border windows divide by fewer taps).
* asymmetric 'same' padding of a convolution (even kernels, strides > 1) has
  no NIR encoding and is refused.
* ``Flatten`` is written with ``start_dim = 0`` over the per-sample shape
  ``(C, H, W)`` (NIR shapes exclude the batch axis); ``norse.torch.from_nir``
  hands ``start_dim`` to ``torch.nn.Flatten`` unchanged, so a batched module
  needs ``start_dim = 1``: :func:`load_norse` fixes that after loading.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from effmodel.counting import spiking_layer_indices
from effmodel.errors import UsageError
from effmodel.simulation import ConvertedNetwork
from effmodel.specs import same_padding


def _chw(shape: tuple[int, ...]) -> np.ndarray:
    return np.array([shape[2], shape[0], shape[1]]) if len(shape) == 3 else np.array(shape)


def to_nir_graph(network: ConvertedNetwork):
    """The :class:`nir.NIRGraph` of ``network.simulated_spec``.

    :raises UsageError: for what NIR cannot express (see the module docstring).
    """
    import nir

    spec = network.simulated_spec
    shapes = spec.shapes()
    spiking = set(spiking_layer_indices(spec))
    nodes: dict = {"input": nir.Input(input_type={"input": _chw(spec.input_shape)})}
    edges: list[tuple[str, str]] = []
    prev = "input"

    def add(name: str, node) -> None:
        nonlocal prev
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    def add_if(name: str, shape: tuple[int, ...], threshold: float) -> None:
        s = _chw(shape)
        add(name, nir.IF(r=np.ones(s, np.float32), v_threshold=np.full(s, threshold, np.float32), v_reset=np.zeros(s, np.float32)))

    flat_from: tuple[int, int, int] | None = None
    for i, layer in enumerate(spec.layers):
        in_shape, out_shape = shapes[i]
        if layer.type == "flatten":
            if len(in_shape) == 3:
                flat_from = (in_shape[2], in_shape[0], in_shape[1])
                add(layer.name, nir.Flatten(input_type={"input": _chw(in_shape)}, start_dim=0, end_dim=-1))
            continue
        if i not in spiking:
            continue
        if layer.type == "maxpool":
            raise UsageError(
                f"layer {layer.name!r}: NIR has no spiking max pooling; export with --max2avg-pool "
                "(max pooling replaced by average pooling before normalisation)"
            )
        if layer.type == "conv2d":
            h, w, _ = in_shape
            ph, pw = (same_padding(h, layer.kernel, layer.stride), same_padding(w, layer.kernel, layer.stride)) if layer.padding == "same" else ((0, 0), (0, 0))
            if ph[0] != ph[1] or pw[0] != pw[1]:
                raise UsageError(f"layer {layer.name!r}: asymmetric 'same' padding {ph}, {pw} cannot be written to NIR")
            lw = network.normalised_weights[layer.name]
            weight = np.ascontiguousarray(lw.kernel.transpose(3, 2, 0, 1)).astype(np.float32)
            bias = np.zeros(layer.filters, np.float32) if lw.bias is None else np.asarray(lw.bias, np.float32)
            add(layer.name, nir.Conv2d(input_shape=(h, w), weight=weight, stride=(layer.stride, layer.stride),
                                       padding=(ph[0], pw[0]), dilation=(1, 1), groups=1, bias=bias))
            add_if(f"{layer.name}_if", out_shape, 1.0)
        elif layer.type == "dense":
            lw = network.normalised_weights[layer.name]
            k = np.asarray(lw.kernel)
            if flat_from is not None:
                c, h, w = flat_from
                k = k.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
                flat_from = None
            bias = np.zeros(layer.units, np.float32) if lw.bias is None else np.asarray(lw.bias, np.float32)
            add(layer.name, nir.Affine(weight=np.ascontiguousarray(k.T).astype(np.float32), bias=bias))
            add_if(f"{layer.name}_if", out_shape, 1.0)
        else:  # avgpool
            if layer.padding == "same" and any(same_padding(n, layer.pool, layer.pool_stride) != (0, 0) for n in in_shape[:2]):
                raise UsageError(f"layer {layer.name!r}: padded average pooling cannot be written to NIR")
            k, s = layer.pool, layer.pool_stride
            add(layer.name, nir.SumPool2d(kernel_size=np.array([k, k]), stride=np.array([s, s]), padding=np.array([0, 0])))
            add_if(f"{layer.name}_if", out_shape, float(k * k))
    add("output", nir.Output(output_type={"output": _chw(shapes[-1][1])}))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"source": "effmodel-norse", "model": spec.name})


def export_nir(network: ConvertedNetwork, path: str | Path) -> Path:
    """Write ``network`` as a NIR (HDF5) file at ``path``; returns the path."""
    import nir

    path = Path(path)
    graph = to_nir_graph(network)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    return path


def load_norse(path_or_graph, dt: float = 1e-3):
    """``norse.torch.from_nir`` on a file or graph, with batched ``Flatten``
    (``start_dim = 1``, see the module docstring).  Call the module once per
    time step: ``out, state = module(x, state)``."""
    import nir
    import torch

    from .network import import_norse

    nt = import_norse()
    graph = nir.read(str(path_or_graph)) if isinstance(path_or_graph, (str, Path)) else path_or_graph
    module = nt.from_nir(graph, dt=dt)
    for m in module.modules():
        if isinstance(m, torch.nn.Flatten) and m.start_dim == 0:
            m.start_dim = 1
    return module
