"""Flexible batch size: how files map to batches.

Files hold ``file_size`` samples each; the model wants ``batch_size``. A *group* is the set
of files loaded together and the batches cut from them:

- ``file_size == batch_size``: one file, one batch (named ``"7"``);
- ``file_size == k * batch_size``: one file split into ``k`` batches (``"7-a"``, ``"7-b"``, ...);
- ``batch_size == k * file_size``: ``k`` files combined into one batch (``"7+8"``); the last
  group of an epoch may hold fewer files (a short final batch), so every sample is served
  exactly once per epoch.

All randomness (sample and sub-batch order within a group) is drawn here from the
DataGenerator's generator, in serving order, so a saved generator state reproduces it.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Group", "GroupPlan", "sub_batch_name"]


def sub_batch_name(index: int) -> str:
    """``0 -> 'a'``, ``25 -> 'z'``, ``26 -> 'aa'``, ..."""
    letters = string.ascii_lowercase
    name = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        name = letters[rem] + name
    return name


@dataclass(frozen=True)
class GroupPlan:
    """The file-to-batch arithmetic fixed at construction."""

    file_size: int
    batch_size: int | None
    shuffle_group_samples: bool = False
    shuffle_group_batches: bool = False

    @classmethod
    def create(cls, file_size: int, batch_size: int | None, **shuffles: bool) -> GroupPlan:
        if batch_size is not None and not (
            file_size % batch_size == 0 or batch_size % file_size == 0
        ):
            raise ValueError(
                f"batch_size={batch_size} must be an integer multiple or an integer fraction of "
                f"the samples per file ({file_size}), e.g. "
                f"{sorted({file_size, file_size * 2, max(1, file_size // 2)})}"
            )
        return cls(file_size, batch_size, **shuffles)

    @property
    def batches_per_file(self) -> int:
        return 1 if self.batch_size is None else max(1, self.file_size // self.batch_size)

    @property
    def files_per_batch(self) -> int:
        return 1 if self.batch_size is None else max(1, self.batch_size // self.file_size)

    def batches_per_epoch(self, n_files: int) -> int:
        return -(-n_files // self.files_per_batch) * self.batches_per_file

    def next_group(self, queue: Sequence[str], rng: np.random.Generator) -> Group:
        """The next group: the first files of ``queue`` (left in it: the caller removes them
        once the group is loaded) and its shuffles, drawn from ``rng``."""
        set_nums = list(queue[: self.files_per_batch])
        n_samples = self.file_size * len(set_nums)
        n_batches = self.batches_per_file
        sample_order = batch_order = None
        if self.shuffle_group_samples:
            sample_order = rng.permutation(n_samples).tolist()
        elif self.shuffle_group_batches and n_batches > 1:
            batch_order = rng.permutation(n_batches).tolist()
        return Group(set_nums, n_samples, n_batches, sample_order, batch_order)


@dataclass
class Group:
    """Files loaded together and the batches served from them (``next_batch`` onwards)."""

    set_nums: list[str]
    n_samples: int
    n_batches: int
    sample_order: list[int] | None = None
    batch_order: list[int] | None = None
    next_batch: int = 0

    @property
    def remaining(self) -> int:
        return self.n_batches - self.next_batch

    def batch_position(self, served_index: int) -> int:
        """Which sub-batch (0-based, in file order) is served ``served_index``-th."""
        return self.batch_order[served_index] if self.batch_order else served_index

    def name(self, served_index: int) -> str:
        if len(self.set_nums) > 1:
            return "+".join(self.set_nums)
        if self.n_batches > 1:
            return f"{self.set_nums[0]}-{sub_batch_name(self.batch_position(served_index))}"
        return self.set_nums[0]

    def take(self, array: Any, served_index: int) -> Any:
        """The ``served_index``-th batch of the group's ``array`` (samples on axis 0)."""
        size = self.n_samples // self.n_batches
        start = self.batch_position(served_index) * size
        if self.sample_order is not None:
            return array[np.asarray(self.sample_order[start : start + size])]  # a copy
        return array[start : start + size]  # a view

    def state_dict(self) -> dict[str, Any]:
        return {
            "set_nums": list(self.set_nums),
            "n_samples": self.n_samples,
            "n_batches": self.n_batches,
            "sample_order": self.sample_order,
            "batch_order": self.batch_order,
            "next_batch": self.next_batch,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Group:
        return cls(**state)
