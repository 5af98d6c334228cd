"""Random seeds: set once (:func:`set_seeds`) or periodically during training
(:class:`RandomSeedSetter`), with the seed carried through checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..util.misc import positive_int
from .base import PeriodicCallback, Stage

__all__ = ["RandomSeedSetter", "set_seeds"]

log = logging.getLogger(__name__)


def set_seeds(
    seed: int | Mapping[str, int] | None = 0,
    reset_graph: bool = False,
    verbose: int = 1,
    seeds: int | Mapping[str, int] | None = None,
) -> None:
    """Seed Python's ``random``, NumPy, the backend (TensorFlow / torch) and Keras' global
    seed generator: ``keras.utils.set_random_seed(seed)``. ``reset_graph`` first calls
    ``keras.backend.clear_session()`` (models built before are then unusable). ``seeds``:
    DeepTrain 0.6's name (see :class:`RandomSeedSetter`); ``verbose=0``: log at DEBUG."""
    import keras

    seed = _one_seed(seed if seeds is None else seeds)
    level = logging.INFO if verbose else logging.DEBUG
    if reset_graph:
        keras.backend.clear_session()
        log.log(level, "Keras session cleared")
    keras.utils.set_random_seed(seed)
    log.log(level, "RANDOM SEEDS RESET (keras.utils.set_random_seed(%d))", seed)


_SEED_NAMES = ("random", "numpy", "tf-graph", "tf-global")  # DeepTrain 0.6's seeds dict


class RandomSeedSetter(PeriodicCallback):
    """Re-seed everything at a stage frequency, one seed higher each time.

    Args:
        seed: the first seed set is ``seed + 1``. Keras 3 seeds Python, NumPy and the
            backend from one integer, so DeepTrain 0.6's per-library dict of seeds is now
            one int.
        freq: ``{stage: n}``: re-seed on every n-th firing of each stage (default: every
            second epoch end). ``'save'`` counts checkpoint saves; ``'load'`` means
            ``reseed_on_load`` (0.6's reproducibility example used
            ``freq={'save': 1, 'load': 1}``).
        reseed_on_load: after a checkpoint is loaded, set the saved seed again.
        seeds: DeepTrain 0.6's name of ``seed``: an int, or a dict with the keys
            ``'random'``, ``'numpy'``, ``'tf-graph'``, ``'tf-global'`` holding one value.

    The current seed and the stage counters are in :meth:`state_dict`, so a resumed run
    re-seeds at the same points with the same seeds. DeepTrain's checkpoints also restore
    the random generators' exact state, so by default nothing is re-seeded on load (that
    would rewind them to the last re-seed). ``reseed_on_load=True`` is DeepTrain 0.6's
    behaviour, for checkpoints loaded without their random state (``'rng'`` in
    ``loadskip_list``). ``self.seeds`` shows the seed as 0.6's dict.
    """

    def __init__(
        self,
        seed: int | Mapping[str, int] | None = 0,
        freq: Mapping[str, int] | None = None,
        reseed_on_load: bool = False,
        seeds: int | Mapping[str, int] | None = None,
    ):
        freq = dict({"train:epoch": 2} if freq is None else freq)
        if "load" in freq:  # every load (a counter of loads would not survive one)
            positive_int(freq.pop("load"), "freq['load']")
            reseed_on_load = True
        if freq:
            super().__init__(freq)
        else:  # only 'load': nothing periodic
            self.freq, self._counters = {}, {}
        self.seed = _one_seed(seed if seeds is None else seeds)
        self.reseed_on_load = reseed_on_load

    @property
    def seeds(self) -> dict[str, int]:
        """The current seed under DeepTrain 0.6's names (one value: Keras 3 has one)."""
        return dict.fromkeys(_SEED_NAMES, self.seed)

    def on_due(self, stage: Stage) -> None:
        self.seed += 1
        set_seeds(self.seed)

    def on_load(self, stage: Stage) -> None:
        if self.reseed_on_load:
            set_seeds(self.seed)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.seed = int(state.get("seed", self.seed))


def _one_seed(seed: Any) -> int:
    """The int seed of ``seed`` (an int, or 0.6's dict of one value per library; None is
    0.6's default for its first argument, ``seeds``: 0)."""
    if seed is None:
        return 0
    if isinstance(seed, Mapping):
        values = set(seed.values())
        if set(seed) != set(_SEED_NAMES) or len(values) != 1:
            raise ValueError(
                f"seeds={dict(seed)!r}: Keras 3 seeds Python, NumPy and the backend from one "
                f"integer (keras.utils.set_random_seed), so a dict of seeds needs the keys "
                f"{list(_SEED_NAMES)} with one value; pass seed=<int>"
            )
        seed = values.pop()
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return seed
