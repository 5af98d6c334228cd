"""Preprocessor contract and TimeseriesPreprocessor window math."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from deeptrain import DataGenerator
from deeptrain.util.preprocessors import GenericPreprocessor, Preprocessor, TimeseriesPreprocessor


class RandCropPreprocessor(Preprocessor):
    """The seed document's example, verbatim in behaviour: no super().__init__ call."""

    def __init__(self, size, crop_batch=True, crop_labels=False, crop_same=False):
        assert isinstance(size, (tuple, int))
        self.size = size if isinstance(size, tuple) else (size, size)
        self.crop_batch = crop_batch
        self.crop_labels = crop_labels
        self.crop_same = crop_same

    def process(self, batch, labels):
        if self.crop_batch:
            (x_start, x_end), (y_start, y_end) = self._make_crop_mask(batch)
            batch = batch[:, x_start:x_end, y_start:y_end]
        return batch, labels

    def _make_crop_mask(self, data):
        _, w, h, *_ = data.shape
        x_offset = np.random.randint(0, w - self.size[0])
        y_offset = np.random.randint(0, h - self.size[1])
        return (x_offset, x_offset + self.size[0]), (y_offset, y_offset + self.size[1])


def windows(pp: TimeseriesPreprocessor, batch: np.ndarray) -> list[tuple[int, int]]:
    """Drive the preprocessor like DataGenerator does; return (start, end) of each window."""
    pp.reset_state()
    pp.batch_exhausted = False
    out = []
    while not pp.batch_exhausted:
        w, _ = pp.process(batch, None)
        out.append((int(w[0, 0, 0]), int(w[0, -1, 0]) + 1))
        pp.update_state()
    return out


@pytest.mark.parametrize(
    "window, slide, inc, expected",
    [
        (25, 25, 0, [(0, 25), (25, 50), (50, 75), (75, 100)]),
        (25, 25, 10, [(10, 35), (35, 60), (60, 85)]),
        (25, 10, 0, [(s, s + 25) for s in range(0, 71, 10)]),
    ],
)
def test_window_table_of_the_reference(window, slide, inc, expected):
    batch = np.arange(100, dtype=float)[None, :, None].repeat(2, axis=0)
    pp = TimeseriesPreprocessor(window, slide_size=slide, start_increments=[inc] if inc else None)
    assert windows(pp, batch) == expected
    assert pp.slices_per_batch == len(expected)


def test_windows_recomputed_per_batch_and_start_increments_cycle_per_epoch():
    pp = TimeseriesPreprocessor(4, start_increments=[0, 2])
    assert len(windows(pp, np.zeros((1, 20, 1)))) == 5
    assert len(windows(pp, np.zeros((1, 12, 1)))) == 3  # a shorter batch: fewer windows
    pp.on_epoch_end(1)
    assert pp.start_increment == 2
    assert len(windows(pp, np.zeros((1, 20, 1)))) == 4
    pp.on_epoch_end(2)
    assert pp.start_increment == 0


def test_start_increment_setter_validation(caplog):
    with pytest.raises(ValueError, match="start_increments"):
        TimeseriesPreprocessor(4).start_increment = 1
    pp = TimeseriesPreprocessor(4, start_increments=[0, 2])
    with pytest.raises(TypeError, match="int"):
        pp.start_increment = 1.5
    with caplog.at_level(logging.WARNING):
        pp.start_increment = 3
    assert "not in start_increments" in caplog.text and pp.start_increment == 3
    with pytest.raises(ValueError, match="window_size"):
        TimeseriesPreprocessor(0)
    with pytest.raises(ValueError, match="too short"):
        windows(TimeseriesPreprocessor(30), np.zeros((1, 20, 1)))


def test_synced_defaults_live_on_the_instance_not_the_class():
    a, b = RandCropPreprocessor(3), RandCropPreprocessor(3)
    a.batch_exhausted = False
    a.slice_idx = 5
    assert b.batch_exhausted is True and b.slice_idx is None
    for name in ("batch_exhausted", "batch_loaded", "slice_idx"):
        assert name not in vars(RandCropPreprocessor) and name not in vars(Preprocessor)
    with pytest.raises(ValueError, match="slices_per_batch"):
        a.slices_per_batch = 0


def test_generic_preprocessor_serves_each_batch_once():
    pp = GenericPreprocessor()
    pp.batch_exhausted = False
    pp.update_state()
    assert pp.batch_exhausted and not pp.batch_loaded


def test_seed_rand_crop_changes_what_is_served(tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    for i in range(1, 4):
        np.save(d / f"b_{i}.npy", np.random.rand(4, 28, 28, 1).astype("float32"))
    dg = DataGenerator(d, batch_size=4, preprocessor=RandCropPreprocessor(size=24))
    x, y = dg.get()
    assert x.shape == (4, 24, 24, 1) and len(y) == 0
    assert dg.batch.shape == (4, 28, 28, 1)  # the loaded batch is untouched


def test_preprocessor_drives_the_loop_through_datagen_attributes(npy_dir):
    class Twice(Preprocessor):
        """Feeds every batch twice by keeping batch_exhausted False once."""

        def process(self, batch, labels):
            return batch, labels

        def update_state(self):
            self.slice_idx += 1
            if self.slice_idx == 2:
                self.batch_exhausted, self.batch_loaded = True, False

        def reset_state(self):
            self.slice_idx = 0

    pp = Twice()
    pp.slices_per_batch = 2
    dg = DataGenerator(npy_dir, batch_size=8, preprocessor=pp)
    names = [dg.set_name for _ in dg]
    assert names == [s for s in "123456" for _ in range(2)]
    dg.batch_exhausted = False  # written through to the preprocessor
    assert pp.batch_exhausted is False


def test_preprocessor_state_dict_round_trip_keeps_types_and_skips_config():
    pp = TimeseriesPreprocessor(4, start_increments=[0, 2])
    pp.slice_idx, pp._start_increment = 3, 2
    state = pp.state_dict()
    fresh = TimeseriesPreprocessor(5, start_increments=[0, 1])
    fresh.load_state_dict(state)
    assert fresh.slice_idx == 3 and fresh.start_increment == 2
    assert fresh.window_size == 5 and fresh.start_increments == [0, 1]  # loadskip_list
    crop = RandCropPreprocessor((3, 4))
    crop2 = RandCropPreprocessor((5, 6))
    crop2.load_state_dict(crop.state_dict())
    assert crop2.size == (3, 4)


def test_a_callbacks_get_shows_the_window_the_model_was_fed():
    """``get(skip_validation=True)``, as callbacks call it after the iteration's
    ``update_state()``, processes the batch at the window just served, not the next one
    (nor one past the batch's end after its last)."""
    x = (np.arange(8)[:, None] * 100 + np.arange(10)[None]).astype("float32")[..., None]
    dg = DataGenerator(
        x,
        batch_size=4,
        preprocessor="timeseries",
        preprocessor_configs={"window_size": 4, "slide_size": 3},
    )
    for _ in range(6):  # two batches of three windows: [0:4], [3:7], [6:10]
        served, _ = dg.get()
        dg.update_state()
        seen, _ = dg.get(skip_validation=True)
        np.testing.assert_array_equal(seen, served)
