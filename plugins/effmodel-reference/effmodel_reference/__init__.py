"""Built-in plugin: the eight reference CNNs (from ``data/architectures``),
MNIST and CIFAR-10."""

from __future__ import annotations

from effmodel import hookimpl
from effmodel.paths import reference_data_dir
from effmodel.specs import load_spec_dir

from .datasets import CIFAR10, MNIST


@hookimpl
def register_architectures(register):
    for spec in load_spec_dir(reference_data_dir() / "architectures"):
        register(spec)


@hookimpl
def register_datasets(register):
    register(MNIST())
    register(CIFAR10())
