"""Tests for deeptrain.util.searching: threshold grid search and best subsets."""

import numpy as np
import pytest

from deeptrain import metrics as M
from deeptrain.util.searching import (
    find_best_predict_threshold,
    find_best_subset,
    find_best_subset_from_history,
)

# negatives <= .35 < .45 <= positives: every threshold in [.35, .45) separates
# perfectly (predictions are positive when strictly above the threshold)
LABELS = np.array([0, 0, 0, 1, 1, 1])
PREDS = np.array([0.1, 0.2, 0.35, 0.45, 0.7, 0.9])


def _f1_without_twin(y_true, y_pred, pred_threshold=0.5):
    """f1_score hidden from the *_multi_th lookup: forces the per-threshold loop."""
    return M.f1_score(y_true, y_pred, pred_threshold)


def test_finds_optimum_with_tie_preference():
    th, best = find_best_predict_threshold(LABELS, PREDS, M.f1_score, return_best_metric=True)
    assert (th, best) == (0.44, 1.0)  # closest to .5 among .35 ... .44
    assert find_best_predict_threshold(LABELS, PREDS, M.f1_score, threshold_preference=0) == 0.35
    assert find_best_predict_threshold(LABELS, PREDS, M.f1_score, threshold_preference=0.4) == 0.4


def test_equidistant_ties_pick_the_lower_threshold():
    def flat(y_true, y_pred, pred_threshold=0.5):
        return 1.0

    assert (
        find_best_predict_threshold(
            LABELS,
            PREDS,
            flat,
            search_min_max=(0.4, 0.6),
            search_interval=0.1,
            threshold_preference=0.5,
        )
        == 0.5
    )

    def two_peaks(y_true, y_pred, pred_threshold=0.5):
        return float(pred_threshold in (0.4, 0.6))

    assert (
        find_best_predict_threshold(
            LABELS, PREDS, two_peaks, search_min_max=(0.4, 0.6), search_interval=0.1
        )
        == 0.4
    )


def test_unique_optimum_on_noisy_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    preds = np.clip(0.3 * labels + rng.uniform(0, 0.7, 400), 0, 1)
    grid = np.round(np.arange(1, 100) * 0.01, 10)
    scores = [M.binary_informedness(labels, preds, th) for th in grid]
    expected = grid[int(np.argmax(scores))]
    assert (
        find_best_predict_threshold(
            labels, preds, M.binary_informedness, threshold_preference=expected
        )
        == expected
    )


def test_minimization():
    def distance(y_true, y_pred, pred_threshold=0.5):
        return abs(pred_threshold - 0.37)

    th, best = find_best_predict_threshold(
        LABELS, PREDS, distance, max_is_best=False, return_best_metric=True
    )
    assert th == 0.37 and best == pytest.approx(0)
    assert find_best_predict_threshold(LABELS, PREDS, distance) == 0.99
    # worst F1 (every sample predicted negative) is at the top of the grid
    assert find_best_predict_threshold(LABELS, PREDS, M.f1_score, max_is_best=False) == 0.9


def test_threshold_passed_by_keyword_with_weights():
    calls = []

    def metric(y_true, y_pred, sample_weight=None, pred_threshold=0.5):
        calls.append((sample_weight, pred_threshold))
        return -abs(pred_threshold - 0.3)

    weights = np.arange(6.0)
    th = find_best_predict_threshold(
        LABELS, PREDS, metric, search_interval=0.1, search_min_max=(0.2, 0.5), sample_weight=weights
    )
    assert th == 0.3
    assert [c[1] for c in calls] == [0.2, 0.3, 0.4, 0.5]
    assert all(c[0] is weights for c in calls)

    calls.clear()
    find_best_predict_threshold(
        LABELS, PREDS, metric, search_interval=0.1, search_min_max=(0.2, 0.5)
    )
    assert all(c[0] is None for c in calls)


def test_grid_endpoints_follow_original():
    seen = []

    def record(y_true, y_pred, pred_threshold=0.5):
        seen.append(pred_threshold)
        return 0.0

    find_best_predict_threshold(LABELS, PREDS, record)
    assert seen[0] == 0.01 and seen[-1] == 0.99 and len(seen) == 99
    assert 0.29 in seen  # no float accumulation noise
    seen.clear()
    find_best_predict_threshold(LABELS, PREDS, record, search_interval=0.25, search_min_max=(0, 1))
    assert seen == [0.25, 0.5, 0.75]


@pytest.mark.parametrize("value", [0.5, 0.3, 0.0])
def test_degenerate_range_returns_its_value(value):
    th, best = find_best_predict_threshold(
        LABELS, PREDS, M.f1_score, search_min_max=(value, value), return_best_metric=True
    )
    assert th == value
    assert best == M.f1_score(LABELS, PREDS, value)


def test_vectorized_twin_agrees_with_loop():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    preds = np.round(np.clip(0.25 * labels + rng.uniform(0, 0.75, 300), 0, 1), 2)
    weights = rng.uniform(0, 2, 300)
    for kwargs in ({}, {"sample_weight": weights}, {"max_is_best": False}):
        fast = find_best_predict_threshold(
            labels, preds, M.f1_score, return_best_metric=True, **kwargs
        )
        if "sample_weight" in kwargs:  # compare with a weighted scalar loop
            thresholds = np.round(np.arange(1, 100) * 0.01, 10)
            values = [M.f1_score(labels, preds, th, sample_weight=weights) for th in thresholds]
            assert fast[1] == pytest.approx(max(values), abs=1e-12)
        else:
            slow = find_best_predict_threshold(
                labels, preds, _f1_without_twin, return_best_metric=True, **kwargs
            )
            assert fast == slow


def test_sample_weight_moves_the_optimum():
    labels = np.array([0, 1, 0, 1])
    preds = np.array([0.3, 0.4, 0.6, 0.7])
    # unweighted, th in [.3, .4) and [.6, .7) tie at accuracy 3/4 (-> .3 is
    # as good as .6); a heavy weight on the negative at .6 leaves only th >= .6
    weights = np.array([1, 1, 10, 1])
    assert (
        find_best_predict_threshold(labels, preds, M.binary_accuracy, threshold_preference=0.3)
        == 0.3
    )
    th = find_best_predict_threshold(
        labels, preds, M.binary_accuracy, sample_weight=weights, return_best_metric=True
    )
    assert th == (0.6, pytest.approx(12 / 13))


def test_metric_without_threshold_is_rejected():
    with pytest.raises(TypeError, match="pred_threshold"):
        find_best_predict_threshold(LABELS, PREDS, M.mean_squared_error)


# ---------------------------------------------------------------------------
# Best subset
# ---------------------------------------------------------------------------
def _planted_batches(good=(2, 5, 6), n_batches=8, batch_size=40, seed=0):
    """Good batches are perfectly separable at .5; the others are noise."""
    rng = np.random.default_rng(seed)
    labels_all, preds_all = [], []
    for i in range(n_batches):
        labels = rng.integers(0, 2, batch_size)
        if i in good:
            preds = np.where(
                labels == 1, rng.uniform(0.6, 1, batch_size), rng.uniform(0, 0.4, batch_size)
            )
        else:
            preds = rng.uniform(0, 1, batch_size)
        labels_all.append(labels[:, None])
        preds_all.append(preds[:, None])
    return labels_all, preds_all


@pytest.mark.parametrize("metric_fn", [M.f1_score, _f1_without_twin, M.binary_accuracy])
def test_best_subset_picks_planted_batches(metric_fn):
    labels_all, preds_all = _planted_batches()
    idxs, th, best = find_best_subset(labels_all, preds_all, metric_fn, subset_size=3)
    assert sorted(idxs) == [2, 5, 6]
    assert best == 1.0
    assert 0.4 <= th < 0.6
    # the reported threshold is the tuned one on the chosen subset
    labels = np.concatenate([labels_all[i] for i in idxs])
    preds = np.concatenate([preds_all[i] for i in idxs])
    assert (th, best) == find_best_predict_threshold(
        labels, preds, metric_fn, return_best_metric=True
    )


def test_best_subset_minimizes_metric_without_threshold():
    rng = np.random.default_rng(2)
    labels_all = [rng.normal(size=(20, 3)) for _ in range(6)]
    noise = [0.5, 0.01, 0.7, 0.02, 0.9, 0.6]
    preds_all = [y + s * rng.normal(size=y.shape) for y, s in zip(labels_all, noise, strict=True)]
    idxs, th, best = find_best_subset(
        labels_all, preds_all, M.mean_squared_error, max_is_best=False, subset_size=2
    )
    assert idxs == [1, 3] and th is None
    assert best == pytest.approx(
        M.mean_squared_error(
            np.concatenate([labels_all[1], labels_all[3]]),
            np.concatenate([preds_all[1], preds_all[3]]),
        )
    )


def test_best_subset_uses_sample_weights():
    labels_all, preds_all = _planted_batches(good=(0,), n_batches=3)
    # zero weight on batch 2's misclassified samples makes it perfect too
    wrong = (preds_all[2] > 0.5) != (labels_all[2] == 1)
    weights_all = [np.ones(40), np.ones(40), np.where(wrong[:, 0], 0.0, 1.0)]
    idxs, _, best = find_best_subset(
        labels_all,
        preds_all,
        M.binary_accuracy,
        search_min_max=(0.5, 0.5),
        subset_size=2,
        sample_weight_all=weights_all,
    )
    assert sorted(idxs) == [0, 2] and best == 1.0


def test_best_subset_validates_size():
    labels_all, preds_all = _planted_batches(n_batches=3)
    with pytest.raises(ValueError, match="subset_size"):
        find_best_subset(labels_all, preds_all, M.f1_score, subset_size=4)


def test_best_subset_from_history():
    history = [0.1, 0.9, 0.5, 0.9, 0.3]
    assert find_best_subset_from_history(history, subset_size=2) == [1, 3]
    assert find_best_subset_from_history(history, subset_size=3, max_is_best=False) == [0, 4, 2]
    sliced = [[0.1, 0.3], [0.9, 0.1], [0.6, 0.6]]  # (batches, slices) -> means
    assert find_best_subset_from_history(sliced, subset_size=2) == [2, 1]


def test_best_subset_leaves_pools_a_metric_is_undefined_on_unranked():
    """AUC of one batch of one class raises; such a pool is not a candidate, the search
    goes on (the whole set, of both classes, has an AUC)."""
    labels_all = [np.ones((4, 1)), np.array([[0], [1], [0], [1]]), np.zeros((4, 1))]
    preds_all = [np.full((4, 1), 0.9), np.array([[0.1], [0.9], [0.2], [0.8]]), np.full((4, 1), 0.1)]
    idxs, th, best = find_best_subset(labels_all, preds_all, M.roc_auc_score, subset_size=2)
    assert idxs[0] == 1 and th is None and best == 1.0
