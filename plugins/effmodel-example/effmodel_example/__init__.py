"""An example third-party effmodel plugin (see CONTRIBUTING.md for the walkthrough).

It contributes:

* ``TinyCNN``: a one-convolution MNIST network small enough to train in
  seconds (conv 8x3x3 'valid' -> 2x2 max pooling -> dense 10; 13,610
  parameters, 62,192 MACs);
* ``example-10x``: a **made-up** cost model (a MAC costs 10 SynOps), there
  only to show the hook; do not cite it.

Rules this module follows, and every plugin should:

* import only effmodel and the standard library at module level; anything
  heavy (TensorFlow, torch, a simulator) is imported inside the function that
  needs it, so ``effmodel --help`` stays fast;
* register frozen dataclasses (:class:`~effmodel.specs.ArchitectureSpec`,
  :class:`~effmodel.costs.CostModel`), never mutable state;
* let exceptions propagate: effmodel reports a failing hook in one line
  naming the plugin and carries on with the other plugins.
"""

from __future__ import annotations

from effmodel import hookimpl
from effmodel.costs import CostModel
from effmodel.specs import ArchitectureSpec, LayerSpec, validate

TINY_CNN = ArchitectureSpec(
    name="TinyCNN",
    dataset="mnist",
    input_shape=(28, 28, 1),
    layers=(
        LayerSpec(type="conv2d", name="conv", filters=8, kernel=3, padding="valid", activation="relu"),
        LayerSpec(type="maxpool", name="pool", pool=2),
        LayerSpec(type="flatten", name="flatten"),
        LayerSpec(type="dense", name="output", units=10, activation="softmax"),
    ),
    epochs=2,
    description="example plugin: a one-convolution MNIST network for quick checks",
    source="effmodel_example",
)
validate(TINY_CNN)  # fail at import, loudly, if the spec is ever edited into nonsense

EXAMPLE_10X = CostModel(
    name="example-10x",
    mac=10.0,
    add=1.0,
    synop=1.0,
    ann_convention="half-flops",
    unit="SynOp units",
    description="EXAMPLE ONLY, made up: a MAC costs 10 SynOps (shows the register_cost_models hook)",
    citation="none: an example in effmodel's CONTRIBUTING.md, not a published figure",
)


@hookimpl
def register_architectures(register):
    register(TINY_CNN)


@hookimpl
def register_cost_models(register):
    register(EXAMPLE_10X)
