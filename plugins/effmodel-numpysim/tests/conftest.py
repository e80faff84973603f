from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = Path(os.environ.get("EFFMODEL_DATA_DIR") or Path(__file__).resolve().parents[3] / ".." / "shared" / "data")
    if not (d / "mnist").is_dir():
        pytest.skip(f"real MNIST not found at {d}; set EFFMODEL_DATA_DIR")
    return d
