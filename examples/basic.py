"""The essentials: a compiled model and a data directory, plus a bit more to keep true to
standard use.

A model-maker function and its configs dict (the model's "blueprint", which TrainGenerator
keeps with the run), train and validation DataGenerators over a directory of 128-sample
.npy batches with a labels.h5, and a TrainGenerator that trains a small convolutional digit
classifier and validates after every epoch. TrainGenerator's attributes can be changed after
it is made: here `epochs` and the checkpoint frequencies.
Run: python examples/basic.py
"""

import deeptrain

deeptrain.util.misc.append_examples_dir_to_sys_path()

from keras import Input, Model, layers

from deeptrain import DataGenerator, TrainGenerator
from utils import LOGS_DIR, MODELS_DIR, dataset


# A model maker: hyperparameters in, compiled model out ################################
def make_model(batch_shape, optimizer, loss, metrics, num_classes, filters, kernel_size):
    ipt = Input(batch_shape=batch_shape)
    x = layers.Conv2D(filters, kernel_size, activation="relu", padding="same")(ipt)
    x = layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = layers.Flatten()(x)
    out = layers.Dense(num_classes, activation="softmax")(x)

    model = Model(ipt, out)
    model.compile(optimizer, loss, metrics=metrics)
    return model


batch_size = 128
width, height, channels = 28, 28, 1  # greyscale digit images

MODEL_CFG = dict(
    batch_shape=(batch_size, width, height, channels),
    loss="categorical_crossentropy",
    metrics=["accuracy"],
    optimizer="adam",
    num_classes=10,
    filters=16,
    kernel_size=(3, 3),
)

# DataGenerator configs
#   data_path:   directory of the batches (128batch__1.npy, 128batch__2.npy, ...)
#   labels_path: the labels file (datasets '1', '2', ... matching the file numbers)
#   batch_size:  samples fed to the model at once
#   shuffle:     shuffle the order of the files every epoch
#   superbatch_set_nums: files held in RAM, loaded once ('all': the data is small)
datadir = dataset("image")  # built on first use from scikit-learn's digits
DATAGEN_CFG = dict(
    data_path=datadir / "train",
    labels_path=datadir / "train" / "labels.h5",
    batch_size=batch_size,
    shuffle=True,
    superbatch_set_nums="all",
)
VAL_DATAGEN_CFG = dict(
    data_path=datadir / "val",
    labels_path=datadir / "val" / "labels.h5",
    batch_size=batch_size,
    shuffle=False,
    superbatch_set_nums="all",
)
# TrainGenerator configs
#   epochs:          epochs to train for
#   logs_dir:        where each run gets its log directory (history, metrics, state)
#   best_models_dir: where the model is saved when it reaches a new best validation score
#   model_configs:   the model's blueprint, kept with the run
TRAINGEN_CFG = dict(
    epochs=3,
    logs_dir=LOGS_DIR,
    best_models_dir=MODELS_DIR,
    model_configs=MODEL_CFG,
)

# Create the training objects ##########################################################
model = make_model(**MODEL_CFG)
datagen = DataGenerator(**DATAGEN_CFG)
val_datagen = DataGenerator(**VAL_DATAGEN_CFG)
traingen = TrainGenerator(model, datagen, val_datagen, **TRAINGEN_CFG)

# attributes can be changed after creation
traingen.epochs = 1
traingen.unique_checkpoint_freq = {"epoch": 2}
traingen.temp_checkpoint_freq = {"epoch": 2}

# Train ################################################################################
traingen.train()
print(
    f"trained {traingen.epoch} epoch(s), {traingen._batches_fit} batches; "
    f"val accuracy {traingen.val_history['accuracy'][-1]:.3f}; logdir: {traingen.logdir}"
)
