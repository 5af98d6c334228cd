"""The data layer: files in, batches out, with an exact position.

* :mod:`.generator`: ``DataGenerator`` (queue, groups, preprocessor, ``state_dict``);
* :mod:`.loader`, :mod:`.autodata`, :mod:`.formats`: which files hold which set nums, and
  reading one (``.npy``, HDF5, csv, lz4; headers checked);
* :mod:`.batching`: flexible batch size (files split or combined into batches);
* :mod:`.preprocessors`: what the model sees of a batch (``TimeseriesPreprocessor`` windows);
* :mod:`.prefetch`: background loading; :mod:`.builders`: dataset builders.
"""
