"""``TraingenLogger``: weights, layer outputs and loss gradients recorded during training
into HDF5 (or ``.npz``) files; no pickles."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import introspection
from .base import PeriodicCallback, Stage

__all__ = ["TraingenLogger", "LogRecord", "read_log"]

log = logging.getLogger(__name__)

LOGGABLES = ("weights", "outputs", "gradients")


class LogRecord(dict):
    """One log of one kind: ``{name: array}`` over all the configured layer ids. An int
    index gives the arrays of the configured id at that position, as DeepTrain 0.6 stored
    them (``lg.outputs[log_id][0]``: ``{name: array}`` of the first id in ``configs``)."""

    def __init__(self, parts: list[dict[str, Any]]):
        super().__init__()
        for part in parts:
            self.update(part)
        self.parts = parts

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int) and not isinstance(key, bool) and key not in self:
            return self.parts[key]
        return super().__getitem__(key)


class TraingenLogger(PeriodicCallback):
    """Record weights, layer outputs and gradients, TensorBoard-style.

    Args:
        savedir: directory of the log files (created if missing).
        configs: what to record, by layer id (see :mod:`deeptrain.introspection`), e.g.
            ``{'weights': ['dense_2', 'conv2d_1/kernel'], 'outputs': 'lstm_1',
            'gradients': ('conv2d_1',), 'gradients-kw': {'mode': 'weights'}}``;
            ``'<key>-kw'`` are keyword arguments of that key's gather function
            (``omit_names``; ``learning_phase``; ``mode``, ``learning_phase``,
            ``sample_weight``).
        loadpath: the file :meth:`load` reads (default: the newest log in ``savedir``).
        get_data_fn, get_labels_fn: ``() -> array`` giving the inputs / labels for outputs
            and gradients. Default: the first validation batch (labels: the inputs if
            ``input_as_labels``), read once at the first :meth:`log` without moving
            ``val_datagen``.
        gather_fns: ``{key: fn}`` replacing :func:`~deeptrain.introspection.get_weights`
            ``(model, _id, **kw)``, ``get_outputs(model, _id, input_data, **kw)`` or
            ``get_gradients(model, _id, input_data, labels, **kw)``; each returns
            ``{name: array}``.
        logname: file name prefix.
        init_log_id: the first :meth:`log` gets id ``init_log_id + 1`` (default ``-1``).
        freq: ``{stage: n}``: on every n-th firing, :meth:`log` then ``save(clear=True)``
            (one file per log). None (default, as in DeepTrain 0.6): only when you call them.
        fmt: ``'h5'`` or ``'npz'``.

    In memory, ``self.weights[log_id][name]`` (likewise ``outputs``, ``gradients``), a
    :class:`LogRecord`: ``self.outputs[log_id][i]`` holds only the i-th configured id's
    arrays, as DeepTrain 0.6 did. A file ``<savedir>/<logname><id>.<fmt>`` holds the arrays
    at ``'<key>/<log_id>/<name>'``; :func:`read_log` reads one back. The log id counter is
    in :meth:`state_dict`. ``verbose=0`` on :meth:`save`, :meth:`load` and :meth:`clear`
    logs their messages at DEBUG instead of INFO.
    """

    def __init__(
        self,
        savedir: str | Path,
        configs: Mapping[str, Any],
        loadpath: str | Path | None = None,
        get_data_fn: Callable | None = None,
        get_labels_fn: Callable | None = None,
        gather_fns: Mapping[str, Callable] | None = None,
        logname: str = "datalog_",
        init_log_id: int | None = None,
        freq: Mapping[str, int] | None = None,
        fmt: str = "h5",
    ):
        if freq is not None:
            super().__init__(freq)
        else:
            self.freq, self._counters = {}, {}
        if fmt not in ("h5", "npz"):
            raise ValueError(f"fmt must be 'h5' or 'npz', got {fmt!r}")
        if init_log_id is not None and not isinstance(init_log_id, int):
            raise TypeError(f"init_log_id must be an int or None, got {init_log_id!r}")
        self.savedir = Path(savedir)
        self.configs = _check_configs(configs)
        self.loadpath = loadpath
        self.get_data_fn, self.get_labels_fn = get_data_fn, get_labels_fn
        self.gather_fns: dict[str, Callable[..., Any]] = {
            "weights": introspection.get_weights,
            "outputs": introspection.get_outputs,
            "gradients": introspection.get_gradients,
            **dict(gather_fns or {}),
        }
        self.logname, self.fmt = logname, fmt
        self._id = -1 if init_log_id is None else init_log_id
        self.clear()

    def on_due(self, stage: Stage) -> None:
        self.log()
        self.save(clear=True)

    # -- recording -----------------------------------------------------------------------
    def log(self, _id: int | str | None = None) -> int | str:
        """Gather everything in ``configs`` under log id ``_id`` (default: the next)."""
        if _id is None:
            self._id += 1
            _id = self._id
        model = self.tg.model
        for key in LOGGABLES:
            if key not in self.configs:
                continue
            kw = dict(self.configs.get(f"{key}-kw", {}))
            if key == "gradients" and self.gather_fns[key] is introspection.get_gradients:
                kw.setdefault("mode", "outputs")  # (0.6's default: w.r.t. layer outputs)
            inputs: list[Any] = []
            if key != "weights":
                inputs.append(self._data_fns()[0]())
            if key == "gradients":
                inputs.append(self._data_fns()[1]())
            parts = [  # one gather per configured id, as 0.6 kept them
                dict(self.gather_fns[key](model, [layer_id], *inputs, **kw))
                for layer_id in self.configs[key]
            ]
            getattr(self, key)[_id] = LogRecord(parts)
        return _id

    def _data_fns(self) -> tuple[Callable[[], Any], Callable[[], Any]]:
        """``get_data_fn`` and ``get_labels_fn``; one not given returns the first validation
        batch (window), peeked once."""
        if self.get_data_fn is None or self.get_labels_fn is None:
            x, y, _ = introspection.peek_batch(self.tg, val=True)
            y = x if self.tg.input_as_labels else y
            self.get_data_fn = self.get_data_fn or (lambda: x)
            self.get_labels_fn = self.get_labels_fn or (lambda: y)
        return self.get_data_fn, self.get_labels_fn

    # -- files ---------------------------------------------------------------------------
    def save(self, _id: int | str | None = None, clear: bool = False, verbose: int = 1) -> Path:
        """Write everything recorded to ``<savedir>/<logname><_id>.<fmt>`` (default id: the
        last log's); ``clear`` empties memory afterwards."""
        flat = {
            f"{key}/{log_id}/{name}": np.asarray(value)
            for key in LOGGABLES
            for log_id, arrays in getattr(self, key).items()
            for name, value in arrays.items()
        }
        path = self.savedir / f"{self.logname}{self._id if _id is None else _id}.{self.fmt}"
        self.savedir.mkdir(parents=True, exist_ok=True)
        if self.fmt == "npz":
            np.savez(path, allow_pickle=False, **flat)
        else:
            with h5py.File(path, "w") as f:
                for name, value in flat.items():
                    f[name] = value
        log.log(_level(verbose), "TraingenLogger data saved to %s", path)
        if clear:
            self.clear(verbose)
        return path

    def load(self, path: str | Path | None = None, verbose: int = 1) -> dict[str, dict]:
        """Replace what is in memory by a saved file's content (default: ``loadpath``, else
        the newest ``<logname>*`` file in ``savedir``); returns it."""
        if isinstance(path, (bool, int)):  # DeepTrain 0.6's load(verbose)
            path, verbose = None, path
        path = path or self.loadpath
        if path is None:
            files = sorted(
                self.savedir.glob(f"{self.logname}*.{self.fmt}"), key=lambda p: p.stat().st_mtime
            )
            if not files:
                raise FileNotFoundError(f"no {self.logname}*.{self.fmt} in {self.savedir}")
            path = files[-1]
        data = read_log(path)
        for key in LOGGABLES:
            setattr(self, key, data[key])
        log.log(_level(verbose), "TraingenLogger data loaded from %s", path)
        return data

    def clear(self, verbose: int = 0) -> None:
        """Empty ``weights``, ``outputs`` and ``gradients``."""
        self.weights: dict = {}
        self.outputs: dict = {}
        self.gradients: dict = {}
        log.log(_level(verbose), "TraingenLogger data cleared")

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "log_id": self._id}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._id = state.get("log_id", self._id)


def read_log(path: str | Path) -> dict[str, dict]:
    """A :class:`TraingenLogger` file as ``{key: {log_id: LogRecord {name: array}}}`` (log
    ids that are digits become ints)."""
    path = Path(path)
    flat: dict[str, np.ndarray] = {}
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            flat = {k: f[k] for k in f.files}
    else:

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                flat[name] = obj[()]

        with h5py.File(path, "r") as f:
            f.visititems(visit)
    out: dict[str, dict] = {key: {} for key in LOGGABLES}
    for full, value in flat.items():
        key, raw_id, name = full.split("/", 2)
        log_id = int(raw_id) if raw_id.lstrip("-").isdigit() else raw_id
        out[key].setdefault(log_id, {})[name] = np.asarray(value)
    # the per-id split is not stored: [0] gives all of a log's arrays
    return {
        key: {i: LogRecord([arrays]) for i, arrays in logs.items()} for key, logs in out.items()
    }


def _level(verbose: Any) -> int:
    return logging.INFO if verbose else logging.DEBUG


def _check_configs(configs: Mapping[str, Any]) -> dict[str, Any]:
    supported = list(LOGGABLES) + [f"{k}-kw" for k in LOGGABLES]
    out: dict[str, Any] = {}
    for key, value in dict(configs).items():
        if key not in supported:
            raise ValueError(f"configs key {key!r} is not supported; use {supported}")
        if key.endswith("-kw"):
            if not isinstance(value, Mapping):
                raise TypeError(f"configs[{key!r}] must be a dict, got {value!r}")
            out[key] = dict(value)
            continue
        ids = list(value) if isinstance(value, (list, tuple)) else [value]
        for item in ids:
            if not isinstance(item, (str, int)):
                raise TypeError(f"configs[{key!r}]: layer ids are str or int, got {item!r}")
        out[key] = ids
    return out
