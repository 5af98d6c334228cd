"""Tests for deeptrain.metrics: losses and accuracies against Keras 3, binary
classification metrics against hand-computed values and scikit-learn."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings
import zlib

import keras
import numpy as np
import pytest

from deeptrain import metrics as M

N = 6  # batch size; deliberately != any trailing dim, so bad broadcasts fail


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------
# Data generators: (y_true, y_pred) float32 of a given shape
# ---------------------------------------------------------------------------
def _f32(x):
    return np.asarray(x, dtype=np.float32)


def _normalized(x):
    return _f32(x / x.sum(-1, keepdims=True))


def gen_binary_probs(rng, shape):
    return _f32(rng.integers(0, 2, shape)), _f32(rng.uniform(0, 1, shape))


def gen_onehot(rng, shape):
    labels = np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]
    return _f32(labels), _normalized(rng.uniform(0.05, 1, shape))


def gen_sparse(rng, shape):
    labels = rng.integers(0, shape[-1], shape[:-1])
    return _f32(labels), _normalized(rng.uniform(0.05, 1, shape))


def gen_distributions(rng, shape):
    return _normalized(rng.uniform(0, 1, shape)), _normalized(rng.uniform(0, 1, shape))


def gen_real(rng, shape):
    return _f32(rng.normal(size=shape)), _f32(rng.normal(size=shape))


def gen_positive(rng, shape):
    return _f32(rng.uniform(0.5, 3, shape)), _f32(rng.uniform(0.1, 3, shape))


def gen_hinge(rng, shape):
    return _f32(rng.integers(0, 2, shape)), _f32(rng.normal(size=shape))


LOSSES = [  # (keras.losses class, deeptrain name, data generator)
    ("BinaryCrossentropy", "binary_crossentropy", gen_binary_probs),
    ("CategoricalCrossentropy", "categorical_crossentropy", gen_onehot),
    ("SparseCategoricalCrossentropy", "sparse_categorical_crossentropy", gen_sparse),
    ("MeanSquaredError", "mean_squared_error", gen_real),
    ("MeanAbsoluteError", "mean_absolute_error", gen_real),
    ("MeanAbsolutePercentageError", "mean_absolute_percentage_error", gen_positive),
    ("MeanSquaredLogarithmicError", "mean_squared_logarithmic_error", gen_positive),
    ("SquaredHinge", "squared_hinge", gen_hinge),
    ("Hinge", "hinge", gen_hinge),
    ("CategoricalHinge", "categorical_hinge", gen_onehot),
    ("LogCosh", "log_cosh", gen_real),
    ("KLDivergence", "kl_divergence", gen_distributions),
    ("Poisson", "poisson", gen_positive),
    ("CosineSimilarity", "cosine_similarity", gen_real),
]
SHAPES = [(N, 3), (N, 1), (N, 8, 8, 1), (N, 4, 3)]


def _keras_loss(name, y_true, y_pred, sample_weight=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # categorical losses on 1 channel
        return float(getattr(keras.losses, name)()(y_true, y_pred, sample_weight=sample_weight))


def _per_sample_keras_weights(weights, loss_ndim):
    """(N,) weights reshaped so Keras broadcasts them over a sample's losses."""
    return weights.reshape((-1,) + (1,) * (loss_ndim - 1))


def _cases():
    for keras_name, name, gen in LOSSES:
        for shape in SHAPES:
            if gen in (gen_sparse, gen_onehot) and shape[-1] == 1:
                continue  # one class: not a meaningful categorical problem
            yield pytest.param(
                keras_name, name, gen, shape, id=f"{name}-{'x'.join(map(str, shape))}"
            )


@pytest.mark.parametrize("keras_name, name, gen, shape", list(_cases()))
def test_loss_matches_keras(keras_name, name, gen, shape):
    rng = _rng(zlib.crc32(name.encode()))
    y_true, y_pred = gen(rng, shape)
    fn = getattr(M, name)
    # Keras computes in float32 (sums in the engine's order): a few float32 ulps apart
    assert fn(y_true, y_pred) == pytest.approx(
        _keras_loss(keras_name, y_true, y_pred), rel=1e-6, abs=1e-5
    )

    # per-sample weights (N,): Keras needs them shaped (N, 1, ...) when the
    # per-element losses have more than one axis; ours broadcast per sample
    weights = _f32(rng.uniform(0, 2, N))
    loss_ndim = len(shape) - 1 if len(shape) > 2 else 1
    keras_weights = _per_sample_keras_weights(weights, loss_ndim)
    expected = _keras_loss(keras_name, y_true, y_pred, keras_weights)
    assert fn(y_true, y_pred, sample_weight=weights) == pytest.approx(expected, rel=1e-6, abs=1e-5)
    assert fn(y_true, y_pred, sample_weight=keras_weights) == pytest.approx(
        expected, rel=1e-6, abs=1e-5
    )

    # full per-element weights, shaped like the losses
    loss_shape = shape[:-1] if len(shape) > 2 else shape[:1]
    elem_weights = _f32(rng.uniform(0, 2, loss_shape))
    assert fn(y_true, y_pred, sample_weight=elem_weights) == pytest.approx(
        _keras_loss(keras_name, y_true, y_pred, elem_weights), rel=1e-6, abs=1e-5
    )


def test_loss_returns_python_float():
    y_true, y_pred = gen_real(_rng(), (N, 3))
    assert type(M.mean_squared_error(y_true, y_pred)) is float


def test_per_sample_weights_weigh_whole_samples():
    """(N,) weights on (N, 8, 8, 1) outputs: sum_i w_i * sum(loss_i) / size."""
    rng = _rng(3)
    y_true, y_pred = gen_real(rng, (N, 8, 8, 1))
    weights = rng.uniform(0, 2, N)
    per_pixel = (y_true.astype(float) - y_pred) ** 2  # (N, 8, 8, 1)
    expected = np.sum(per_pixel[..., 0] * weights[:, None, None]) / (N * 64)
    assert M.mean_squared_error(y_true, y_pred, sample_weight=weights) == pytest.approx(
        expected, rel=1e-12
    )


@pytest.mark.parametrize("label_shape, pred_shape", [((N,), (N, 1)), ((N, 1), (N,))])
def test_binary_crossentropy_rank_mismatch_like_keras(label_shape, pred_shape):
    rng = _rng(4)
    y_true = _f32(rng.integers(0, 2, label_shape))
    y_pred = _f32(rng.uniform(0, 1, pred_shape))
    weights = _f32(rng.uniform(0, 2, N))
    assert M.binary_crossentropy(y_true, y_pred, weights) == pytest.approx(
        _keras_loss("BinaryCrossentropy", y_true, y_pred, weights), abs=1e-5
    )


def test_sparse_crossentropy_accepts_trailing_label_axis():
    y_true, y_pred = gen_sparse(_rng(5), (N, 4))
    weights = _f32(_rng(5).uniform(0, 2, N))
    expected = _keras_loss("SparseCategoricalCrossentropy", y_true[:, None], y_pred, weights)
    assert M.sparse_categorical_crossentropy(y_true[:, None], y_pred, weights) == pytest.approx(
        expected, abs=1e-5
    )


def test_crossentropy_saturated_probabilities_match_keras():
    """Keras clips to float32 [1e-7, 1 - 1e-7]; 1 - 1e-7 rounds to 1 - 2**-23,
    so log(1 - p) at p == 1 is log(2**-23), not log(1e-7)."""
    y_true = _f32([[0, 1], [1, 0], [1, 1], [0, 0]])
    y_pred = _f32([[1, 0], [0, 1], [1, 1], [0, 0]])
    assert M.binary_crossentropy(y_true, y_pred) == pytest.approx(
        _keras_loss("BinaryCrossentropy", y_true, y_pred), abs=1e-5
    )
    onehot = _f32([[0, 1, 0], [1, 0, 0]])
    probs = _f32([[1, 0, 0], [1, 0, 0]])
    assert M.categorical_crossentropy(onehot, probs) == pytest.approx(
        _keras_loss("CategoricalCrossentropy", onehot, probs), abs=1e-5
    )
    assert M.sparse_categorical_crossentropy(_f32([1, 0]), probs) == pytest.approx(
        _keras_loss("SparseCategoricalCrossentropy", _f32([1, 0]), probs), abs=1e-5
    )


def test_hinge_keeps_non_binary_labels():
    y_true, y_pred = _f32([[-1, 1, 1], [1, -1, -1]]), _f32([[0.3, -2, 1], [0.5, 0.1, -3]])
    assert M.hinge(y_true, y_pred) == pytest.approx(_keras_loss("Hinge", y_true, y_pred), abs=1e-5)


def test_cosine_similarity_zero_vector_and_sign():
    y = _f32([[1, 2, 3], [0, 0, 0]])
    # identical vectors -> -1, zero vector -> 0; mean over 2 samples
    assert M.cosine_similarity(y, y) == pytest.approx(-0.5, abs=1e-6)
    assert M.cosine_similarity(y, y) == pytest.approx(
        _keras_loss("CosineSimilarity", y, y), abs=1e-5
    )


def test_loss_aliases():
    assert M.mse is M.mean_squared_error
    assert M.mae is M.mean_absolute_error
    assert M.mape is M.mean_absolute_percentage_error
    assert M.msle is M.mean_squared_logarithmic_error
    assert M.kld is M.kl_divergence is M.kullback_leibler_divergence
    assert M.logcosh is M.log_cosh


# ---------------------------------------------------------------------------
# Accuracies
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(N,), (N, 1), (N, 3)])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_binary_accuracy_matches_keras(shape, threshold):
    rng = _rng(6)
    y_true, y_pred = gen_binary_probs(rng, shape)
    expected = np.asarray(keras.metrics.binary_accuracy(y_true, y_pred, threshold))
    np.testing.assert_array_equal(M.binary_accuracy(y_true, y_pred, threshold), expected)


def test_binary_accuracy_compares_in_prediction_dtype():
    """float32(0.3) > float64(0.3), but not > float32(0.3): compare like Keras."""
    y_true, y_pred = _f32([0, 1]), _f32([0.3, 0.30000001])
    expected = np.asarray(keras.metrics.binary_accuracy(y_true, y_pred, 0.3))
    np.testing.assert_array_equal(M.binary_accuracy(y_true, y_pred, 0.3), expected)
    np.testing.assert_array_equal(expected, [1, 0])


def test_weighted_binary_accuracy_matches_keras_metric():
    rng = _rng(7)
    y_true, y_pred = gen_binary_probs(rng, (N, 1))
    weights = _f32(rng.uniform(0, 2, N))
    expected = float(keras.metrics.BinaryAccuracy()(y_true, y_pred, sample_weight=weights))
    assert M.call_metric(M.binary_accuracy, y_true, y_pred, weights) == pytest.approx(
        expected, abs=1e-6
    )


def test_categorical_accuracy_matches_keras():
    y_true, y_pred = gen_onehot(_rng(8), (20, 4))
    np.testing.assert_array_equal(
        M.categorical_accuracy(y_true, y_pred),
        np.asarray(keras.metrics.categorical_accuracy(y_true, y_pred)),
    )


@pytest.mark.parametrize("label_shape", [(20,), (20, 1)])
def test_sparse_categorical_accuracy_matches_keras(label_shape):
    y_true, y_pred = gen_sparse(_rng(9), (20, 4))
    y_true = y_true.reshape(label_shape)
    np.testing.assert_array_equal(
        M.sparse_categorical_accuracy(y_true, y_pred),
        np.asarray(keras.metrics.sparse_categorical_accuracy(y_true, y_pred)),
    )


def test_accuracy_dispatch_by_shape():
    rng = _rng(10)
    onehot, probs = gen_onehot(rng, (10, 3))
    labels = onehot.argmax(-1)
    np.testing.assert_array_equal(M.accuracy(onehot, probs), M.categorical_accuracy(onehot, probs))
    np.testing.assert_array_equal(
        M.accuracy(labels, probs), M.sparse_categorical_accuracy(labels, probs)
    )
    y_true, y_pred = gen_binary_probs(rng, (10, 1))
    np.testing.assert_array_equal(
        M.accuracy(y_true, y_pred, 0.4), M.binary_accuracy(y_true, y_pred, 0.4)
    )


@pytest.mark.parametrize(
    "loss_name, expected",
    [
        ("categorical_crossentropy", "categorical_accuracy"),
        ("CategoricalCrossentropy", "categorical_accuracy"),
        ("categorical_hinge", "categorical_accuracy"),
        ("sparse_categorical_crossentropy", "sparse_categorical_accuracy"),
        ("binary_crossentropy", "binary_accuracy"),
        ("mse", "binary_accuracy"),
    ],
)
def test_accuracy_for_loss(loss_name, expected):
    assert M.accuracy_for_loss(loss_name) is getattr(M, expected)


# ---------------------------------------------------------------------------
# Binary classification metrics
# ---------------------------------------------------------------------------
# threshold .5 -> preds [1, 1, 0, 0, 1, 0, 0, 1]: TP=3 (idx 0, 1, 7), FN=1 (2),
# FP=1 (4), TN=3 (3, 5, 6)
Y_TRUE = np.array([1, 1, 1, 0, 0, 0, 0, 1])
Y_PRED = np.array([0.9, 0.6, 0.4, 0.2, 0.7, 0.5, 0.1, 0.8])


def test_f1_and_rates_hand_computed():
    assert M.f1_score(Y_TRUE, Y_PRED) == pytest.approx(0.75)  # p = r = 3/4
    assert M.tpr(Y_TRUE, Y_PRED) == pytest.approx(0.75)
    assert M.tnr(Y_TRUE, Y_PRED) == pytest.approx(0.75)
    assert M.tnr_tpr(Y_TRUE, Y_PRED) == pytest.approx([0.75, 0.75])
    assert M.binary_informedness(Y_TRUE, Y_PRED) == pytest.approx(0.5)
    # threshold .65: preds [1, 0, 0, 0, 1, 0, 0, 1]: TP=2, FP=1, FN=2, TN=3
    precision, recall = 2 / 3, 2 / 4
    assert M.f1_score(Y_TRUE, Y_PRED, 0.65) == pytest.approx(
        2 * precision * recall / (precision + recall)
    )
    assert M.f1_score(Y_TRUE, Y_PRED, 0.65, beta=2) == pytest.approx(
        5 * precision * recall / (4 * precision + recall)
    )
    assert M.tnr_tpr(Y_TRUE, Y_PRED, 0.65) == pytest.approx([0.75, 0.5])


def test_threshold_is_strict():
    # 0.5 is not > 0.5: sample 5 is a true negative at threshold .5
    assert M.tnr(Y_TRUE, Y_PRED, 0.5) == pytest.approx(0.75)
    assert M.tnr(Y_TRUE, Y_PRED, 0.49) == pytest.approx(0.5)


def test_f1_weighted_hand_computed():
    weights = np.array([2, 1, 1, 1, 3, 1, 1, 1])
    # threshold .5: TP = 2 + 1 + 1 = 4, FP = 3, FN = 1
    precision, recall = 4 / 7, 4 / 5
    assert M.f1_score(Y_TRUE, Y_PRED, sample_weight=weights) == pytest.approx(
        2 * precision * recall / (precision + recall)
    )


def test_f1_edge_cases():
    negatives = np.zeros(5)
    preds = np.array([0.1, 0.7, 0.2, 0.3, 0.9])
    # no positive labels: specificity (TN = 3 of 5)
    assert M.f1_score(negatives, preds) == pytest.approx(0.6)
    assert M.f1_score(negatives, np.zeros(5)) == 1.0
    # positives present, none predicted: 0
    labels = np.array([1, 0, 1, 0, 0])
    assert M.f1_score(labels, np.full(5, 0.2)) == 0.0
    # positives present, predicted positives all wrong: precision = recall = 0
    assert M.f1_score(labels, np.array([0.1, 0.9, 0.1, 0.9, 0.1])) == 0.0
    # rates without labels of their class are 0
    assert M.tpr(negatives, preds) == 0.0
    assert M.tnr(np.ones(5), preds) == 0.0


def test_binary_metrics_accept_column_predictions_and_weights():
    weights = np.arange(1, 9)
    assert M.f1_score(Y_TRUE[:, None], Y_PRED[:, None], sample_weight=weights) == pytest.approx(
        M.f1_score(Y_TRUE, Y_PRED, sample_weight=weights)
    )
    assert M.tpr(Y_TRUE, Y_PRED[:, None], sample_weight=weights[:, None]) == pytest.approx(
        M.tpr(Y_TRUE, Y_PRED, sample_weight=weights)
    )


@pytest.fixture(scope="module")
def skm():
    return pytest.importorskip("sklearn.metrics")


def _random_binary(seed, n=300):
    rng = _rng(seed)
    y_true = rng.integers(0, 2, n)
    y_pred = np.clip(0.35 * y_true + rng.uniform(0, 0.65, n), 0, 1)
    return y_true, _f32(y_pred), rng.uniform(0, 2, n)


@pytest.mark.parametrize("beta", [1, 2, 0.5])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.62])
def test_fbeta_and_rates_match_sklearn(skm, beta, weighted, threshold):
    y_true, y_pred, weights = _random_binary(11)
    weights = weights if weighted else None
    hard = (y_pred > np.float32(threshold)).astype(int)
    assert M.f1_score(y_true, y_pred, threshold, beta, weights) == pytest.approx(
        skm.fbeta_score(y_true, hard, beta=beta, sample_weight=weights), abs=1e-12
    )
    assert M.tpr(y_true, y_pred, threshold, weights) == pytest.approx(
        skm.recall_score(y_true, hard, sample_weight=weights), abs=1e-12
    )
    assert M.tnr(y_true, y_pred, threshold, weights) == pytest.approx(
        skm.recall_score(y_true, hard, pos_label=0, sample_weight=weights), abs=1e-12
    )
    if beta == 1:
        assert M.f1_score(y_true, y_pred, threshold, sample_weight=weights) == pytest.approx(
            skm.f1_score(y_true, hard, sample_weight=weights), abs=1e-12
        )


MULTI_TH = [
    ("f1_score", "f1_score_multi_th"),
    ("tpr", "tpr_multi_th"),
    ("tnr", "tnr_multi_th"),
    ("tnr_tpr", "tnr_tpr_multi_th"),
    ("binary_informedness", "binary_informedness_multi_th"),
    ("binary_accuracy", "binary_accuracy_multi_th"),
]


@pytest.mark.parametrize("scalar_name, multi_name", MULTI_TH)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("beta", [1, 2])
def test_multi_th_equals_looped_scalar(scalar_name, multi_name, weighted, beta):
    y_true, y_pred, weights = _random_binary(12, n=200)
    weights = weights if weighted else None
    # includes 0, 1 and exact prediction values (ties with the threshold)
    thresholds = np.concatenate([np.linspace(0, 1, 41), y_pred[:5]])
    scalar_fn, multi_fn = getattr(M, scalar_name), getattr(M, multi_name)
    kwargs = {"beta": beta} if scalar_name == "f1_score" else {}

    multi = multi_fn(y_true, y_pred, thresholds, sample_weight=weights, **kwargs)
    if scalar_name == "binary_accuracy":
        looped = [M.call_metric(scalar_fn, y_true, y_pred, weights, th) for th in thresholds]
    else:
        looped = [
            scalar_fn(y_true, y_pred, th, sample_weight=weights, **kwargs) for th in thresholds
        ]
    np.testing.assert_allclose(multi, np.asarray(looped), rtol=0, atol=1e-12)
    assert multi_fn is M.multi_th_twin(scalar_fn)


def test_fbeta_multi_th_uses_squared_beta():
    """The 0.6 bug: (1+b)pr/(bp+r) in the multi version. Must be (1+b^2)..."""
    precision, recall = 2 / 3, 2 / 4  # at threshold .65, see above
    f2 = 5 * precision * recall / (4 * precision + recall)
    assert M.f1_score_multi_th(Y_TRUE, Y_PRED, [0.65], beta=2)[0] == pytest.approx(f2)


# ---------------------------------------------------------------------------
# ROC AUC
# ---------------------------------------------------------------------------
def test_roc_auc_hand_computed_with_ties():
    # positive/negative pairs: (.4 vs .1) 1, (.4 vs .4) 1/2, (.8 vs .1) 1, (.8 vs .4) 1
    assert M.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.4, 0.8]) == pytest.approx(3.5 / 4)
    assert M.roc_auc_score([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert M.roc_auc_score([0, 1], [0.2, 0.9]) == 1.0
    assert M.roc_auc_score([1, 0], [0.2, 0.9]) == 0.0


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("decimals", [1, 2, 6])  # coarse rounding -> many ties
def test_roc_auc_matches_sklearn(skm, weighted, decimals):
    y_true, y_pred, weights = _random_binary(13, n=500)
    y_pred = np.round(y_pred, decimals)
    weights = weights if weighted else None
    assert M.roc_auc_score(y_true, y_pred, weights) == pytest.approx(
        skm.roc_auc_score(y_true, y_pred, sample_weight=weights), abs=1e-10
    )


def test_nan_predictions_are_negatives_and_leave_auc_undefined():
    """A model gone NaN scores as binary_accuracy scores it (``pred > th`` is False), never
    as a perfect recall that could become the best model; its AUC is NaN."""
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0])
    nans = np.full(8, np.nan)
    assert np.mean(M.binary_accuracy(labels[:, None], nans[:, None])) == pytest.approx(3 / 8)
    assert (M.f1_score(labels, nans), M.tpr(labels, nans), M.tnr(labels, nans)) == (0, 0, 1)
    assert M.binary_accuracy_multi_th(labels, nans, [0.5])[0] == pytest.approx(3 / 8)
    some = np.array([0.9, np.nan, 0.8, 0.7, 0.2, 0.1, 0.6, np.nan])  # two NaN: negatives
    as_negative = np.nan_to_num(some, nan=0.0)
    for fn in (M.f1_score, M.tpr, M.tnr):
        assert fn(labels, some) == fn(labels, as_negative), fn.__name__
    assert np.isnan(M.roc_auc_score(labels, some))


def test_roc_curve_has_a_point_per_distinct_score_and_the_figure_its_area():
    from deeptrain.visuals import viz_roc_auc

    labels = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1])
    preds = np.array([0.9, 0.9, 0.9, 0.5, 0.5, 0.2, 0.7, 0.1, 0.2])
    fpr, tpr = M.roc_curve(labels, preds)
    assert len(fpr) == len(np.unique(preds)) + 1 and (fpr[0], tpr[0]) == (0, 0)
    auc = M.roc_auc_score(labels, preds)
    for order in (slice(None), slice(None, None, -1)):  # tied scores: any sample order
        title = viz_roc_auc(labels[order], preds[order]).axes[0].get_title()
        assert title.endswith(f"(AUC = {auc:.3f})"), title


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="both positive and negative"):
        M.roc_auc_score([1, 1, 1], [0.2, 0.5, 0.9])


# ---------------------------------------------------------------------------
# Lookup and calling
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, expected",
    [
        ("acc", "accuracy"),
        ("Accuracy", "accuracy"),
        ("mae", "mean_absolute_error"),
        ("MSE", "mean_squared_error"),
        ("mape", "mean_absolute_percentage_error"),
        ("msle", "mean_squared_logarithmic_error"),
        ("kld", "kl_divergence"),
        ("bce", "binary_crossentropy"),
        ("BCE", "binary_crossentropy"),
        ("kullback_leibler_divergence", "kl_divergence"),
        ("logcosh", "log_cosh"),
        ("cosine", "cosine_similarity"),
        ("f1", "f1_score"),
        ("F1", "f1_score"),
        ("f1-score", "f1_score"),
        ("F1_Score", "f1_score"),
        ("MeanSquaredError", "mean_squared_error"),
        ("KLDivergence", "kl_divergence"),
        ("tnr_tpr", "tnr_tpr"),
        ("roc_auc_score", "roc_auc_score"),
        ("f1_score_multi_th", "f1_score_multi_th"),
    ],
)
def test_get_resolves_aliases(name, expected):
    assert M.get(name) is getattr(M, expected)


def test_get_unknown_name_lists_close_matches():
    with pytest.raises(ValueError) as info:
        M.get("f1_scor")
    message = str(info.value)
    assert "'f1_scor'" in message and "f1_score" in message
    with pytest.raises(ValueError, match="Unknown metric 'zzz_not_a_metric'"):
        M.get("zzz_not_a_metric")


def test_sklearn_fallback(skm):
    assert M.get("r2_score") is skm.r2_score
    assert M.r2_score is skm.r2_score  # module __getattr__
    with pytest.raises(AttributeError):
        M.no_such_metric_anywhere  # noqa: B018


def test_call_metric_passes_only_accepted_args():
    y_true, y_pred = Y_TRUE, Y_PRED
    weights = np.arange(1.0, 9.0)
    seen = {}

    def plain(y_true, y_pred):
        return 1.0

    def with_both(y_true, y_pred, sample_weight=None, pred_threshold=0.5):
        seen.update(sample_weight=sample_weight, pred_threshold=pred_threshold)
        return 2.0

    def threshold_only(y_true, y_pred, *, pred_threshold=0.5):
        seen.update(threshold_only=pred_threshold)
        return 3

    assert M.call_metric(plain, y_true, y_pred, weights, 0.3) == 1.0
    assert M.call_metric(with_both, y_true, y_pred, weights, 0.3) == 2.0
    assert seen["sample_weight"] is weights and seen["pred_threshold"] == 0.3
    M.call_metric(with_both, y_true, y_pred)  # defaults stay untouched
    assert seen["sample_weight"] is None and seen["pred_threshold"] == 0.5
    assert M.call_metric(threshold_only, y_true, y_pred, weights, 0.7) == 3.0
    assert seen["threshold_only"] == 0.7
    assert M.call_metric(M.f1_score, y_true, y_pred, weights, 0.5) == M.f1_score(
        y_true, y_pred, 0.5, sample_weight=weights
    )


def test_call_metric_reduces_results():
    weights = np.array([1.0, 3.0])
    # array results -> (weighted) mean; lists keep per-element scalars
    per_sample = lambda y_true, y_pred: np.array([1.0, 0.0])  # noqa: E731
    assert M.call_metric(per_sample, None, None) == 0.5
    assert M.call_metric(per_sample, None, None, weights) == 0.25
    result = M.call_metric(M.tnr_tpr, Y_TRUE, Y_PRED, pred_threshold=0.65)
    assert result == pytest.approx([0.75, 0.5])
    assert all(type(r) is float for r in result)
    # a metric that takes the weights itself is not weighted twice
    self_weighted = lambda y_true, y_pred, sample_weight=None: np.array([1.0, 0.0])  # noqa: E731
    assert M.call_metric(self_weighted, None, None, weights) == 0.5
    # per-element arrays: averaged per sample, then weighted (keras Mean metric)
    per_element = lambda y_true, y_pred: np.array([[1.0, 1.0], [0.0, 1.0]])  # noqa: E731
    assert M.call_metric(per_element, None, None, weights) == pytest.approx((1 * 1.0 + 3 * 0.5) / 4)
    with pytest.raises(TypeError, match="unsupported dict"):
        M.call_metric(lambda y_true, y_pred: {"a": 1}, None, None)
