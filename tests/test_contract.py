"""The TrainGenerator contract (``deeptrain.training.contract.Traingen``): what checkpoints,
callbacks and introspection use of a TrainGenerator is there, public, and documented."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import keras
import pytest

import deeptrain
from datafactory import write_dataset
from deeptrain import DataGenerator, TrainGenerator, introspection
from deeptrain.training.contract import Traingen

PACKAGE = Path(deeptrain.__file__).parent


def _members(protocol: type) -> set[str]:
    names = set(protocol.__annotations__)
    names |= {
        n
        for n, v in vars(protocol).items()
        if not n.startswith("_") and (callable(v) or isinstance(v, property))
    }
    return names


@pytest.fixture
def tg(tmp_path):
    data = write_dataset(tmp_path / "data", n_files=2, file_size=8)
    dg, vdg = (DataGenerator(data, batch_size=8, labels_path=data / "labels.h5") for _ in "ab")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return TrainGenerator(model, dg, vdg, logs_dir=tmp_path / "logs", iter_verbosity=0)


def test_train_generator_provides_the_contract(tg):
    members = _members(Traingen)
    assert {"val_cache", "passed_args", "sync_model", "write_figure", "model"} <= members
    for name in members:
        assert hasattr(tg, name), name
    for name in ("val_cache", "passed_args"):
        assert isinstance(inspect.getattr_static(TrainGenerator, name), property)


def test_public_names_and_their_private_aliases(tg):
    assert tg.val_cache is tg._val_cache
    assert tg.passed_args == tg._passed_args == ["iter_verbosity", "logs_dir"]
    tg.sync_model()
    tg._sync_model()
    tg.ensure_consistent()
    tg._refuse_if_inconsistent()
    path = tg.logdir / "h.png"
    tg._write_figure("history", path)
    assert path.is_file()


@pytest.mark.parametrize(
    "fn",
    [
        introspection.compute_gradient_norm,
        introspection.gradient_norm_over_dataset,
        introspection.gradient_sum_over_dataset,
        introspection.kept_position,
        introspection.peek_batch,
        introspection.check_health,
    ],
)
def test_introspection_functions_take_a_named_tg(fn):
    assert next(iter(inspect.signature(fn).parameters)) == "tg"


def _imports(path: Path) -> set[str]:
    """Modules a file imports (relative imports resolved within the package)."""
    found = set()
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = list(parts[: len(parts) - node.level]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found |= {module} | {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_visuals_do_not_import_introspection():
    for path in (PACKAGE / "visuals.py", PACKAGE / "backend" / "layers.py"):
        assert "deeptrain.introspection" not in _imports(path), path
    assert "deeptrain.visuals" in _imports(PACKAGE / "introspection.py")
