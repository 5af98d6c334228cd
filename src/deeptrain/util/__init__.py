"""Small shared helpers (argument checks, JSON state, example data), and DeepTrain 0.6's
``deeptrain.util.*`` import paths (``data_loaders``, ``preprocessors``, ``searching``)."""
