"""Built-in plugin: the eight reference CNNs (the repository's ``data/architectures``, reached
through the symlink ``effmodel_reference/data`` and shipped as package data), MNIST and CIFAR-10."""

from __future__ import annotations

from effmodel import hookimpl
from effmodel.paths import architectures_dir
from effmodel.specs import load_spec_dir

from .datasets import CIFAR10, MNIST


@hookimpl
def register_architectures(register):
    for spec in load_spec_dir(architectures_dir()):
        register(spec)


@hookimpl
def register_datasets(register):
    register(MNIST())
    register(CIFAR10())
