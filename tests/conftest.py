"""Test session setup and shared fixtures (small real datasets in pytest's tmp_path)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from datafactory import write_dataset  # noqa: E402


@pytest.fixture
def npy_dir(tmp_path: Path) -> Path:
    """6 files ``batch__1..6.npy`` of 8 samples + ``labels.h5`` (see ``datafactory``)."""
    return write_dataset(tmp_path / "data", n_files=6, file_size=8)
