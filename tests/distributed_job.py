"""A training job for the distributed tests, run as real processes (one per rank).

    python tests/distributed_job.py BACKEND DATA LOGS OUT.npz [--devices N]
        [--processes P --process-id I --port PORT] [--loadpath PATH]
        [--kill-at-iter K] [--term-at-iter K] [--raise-at-iter K] [--reference] [--single]

BACKEND is ``jax`` (``keras.distribution.DataParallel`` over ``--devices`` simulated CPU
devices per process; several processes with ``keras.distribution.initialize``),
``tensorflow`` (``MirroredStrategy`` over ``--devices`` logical CPUs) or ``torch`` (a gloo
process group from the launcher's ``RANK``/``WORLD_SIZE``/``MASTER_*`` environment). The
engine is set up exactly as its documentation says; DeepTrain is given no extra argument.

It trains a small dense classifier with Dropout for 2 epochs on shuffled data (global batch
32, a validation every 4 batches, a checkpoint after every iteration), optionally SIGKILLs
itself, SIGTERMs itself or raises an error (on ``--victim`` alone) after train iteration
K, and writes to OUT.npz: weights,
optimizer variables, histories, this process's rows of a batch. ``--reference`` also runs
the engine's own loop on the same batches (JAX: ``train_on_batch`` under the same
distribution; TensorFlow: ``fit`` under the same strategy) and ``--single`` DeepTrain on one
device, in this process, for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

BATCH, FEATURES, EPOCHS = 32, 8, 2


def set_up_engine(args: argparse.Namespace):
    """The engine's own set-up lines (before Keras builds anything); returns the scope to
    build models in."""
    import contextlib

    if args.backend == "jax":
        import keras

        if args.processes > 1:
            keras.distribution.initialize(f"localhost:{args.port}", args.processes, args.process_id)
        if args.model_parallel:  # batch x model mesh; kernels split along their input axis
            mesh = keras.distribution.DeviceMesh(
                (args.devices * args.processes // 4, 4), ["batch", "model"]
            )
            layouts = keras.distribution.LayoutMap(mesh)
            layouts[".*dense.*kernel"] = ("model", None)
            keras.distribution.set_distribution(
                keras.distribution.ModelParallel(layout_map=layouts, batch_dim_name="batch")
            )
        else:
            keras.distribution.set_distribution(keras.distribution.DataParallel())
    elif args.backend == "torch":
        import torch.distributed as dist

        dist.init_process_group("gloo")
    else:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.devices
        )
        strategy = tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices("CPU")]
        )
        return strategy.scope
    return contextlib.nullcontext


OPTIMIZER = "adam"  # --optimizer
PREDICT = False  # --predict
JIT_COMPILE = False  # --jit-compile


def build_model(dropout: float, seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    m = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(2, "softmax"),
        ]
    )
    optimizer = keras.optimizers.SGD(0.1) if OPTIMIZER == "sgd" else keras.optimizers.Adam(0.01)
    # AUC: a metric whose result is no mean of the replicas' (its state is confusion counts)
    m.compile(
        optimizer,
        "categorical_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
        # --jit-compile: on torch, the train function through torch.compile; else Keras'
        # default ("auto": JAX and TensorFlow compile, and the references are bitwise so)
        jit_compile=True if JIT_COMPILE else "auto",
    )
    return m


def generators(data: Path):
    from deeptrain import DataGenerator

    dg = DataGenerator(
        data / "train",
        batch_size=BATCH,
        labels_path=data / "train" / "labels.h5",
        shuffle=True,
        shuffle_group_samples=True,
        seed=7,
    )
    vdg = DataGenerator(
        data / "val", batch_size=BATCH, labels_path=data / "val" / "labels.h5", seed=8
    )
    return dg, vdg


def train_deeptrain(args: argparse.Namespace, model, logs: Path | None, loadpath=None):
    from deeptrain import TrainGenerator

    dg, vdg = generators(args.data)
    callbacks = []
    if args.kill_at_iter or args.term_at_iter or args.raise_at_iter:

        def stop(tg):
            if tg.state.fit_iters == args.kill_at_iter and args.process_id == args.victim:
                tg.wait_for_checkpoints()  # a kill between checkpoint writes
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            if tg.state.fit_iters == args.term_at_iter and args.process_id == args.victim:
                os.kill(os.getpid(), signal.SIGTERM)  # held until the iteration ends
            if tg.state.fit_iters == args.raise_at_iter and args.process_id == args.victim:
                raise RuntimeError(f"a callback failed on process {args.victim}")

        callbacks.append({"train:iter": stop})
    tg = TrainGenerator(
        model,
        dg,
        vdg,
        epochs=EPOCHS,
        logs_dir=logs,
        callbacks=callbacks,
        iter_verbosity=0,
        plot_history_freq=None,
        val_freq={"batch": 4},
        temp_checkpoint_freq={"iter": 1} if logs else None,
        unique_checkpoint_freq={"epoch": 1} if logs else None,
        loadpath=loadpath,
        eval_fn="predict" if PREDICT else "evaluate",  # predictions gathered from all
    )
    tg.train()
    return tg


def reference(args: argparse.Namespace, model) -> None:
    """The engine's own loop over DeepTrain's global batches, in the same order."""
    import numpy as np

    dg, _ = generators(args.data)
    batches = []
    for _ in range(EPOCHS):
        batches += [(np.array(x), np.array(y)) for x, y in dg]
    if args.backend == "jax":
        import jax

        n = jax.process_count()
        for x, y in batches:  # train_on_batch shards this process's rows itself
            rows = slice(jax.process_index() * len(x) // n, (jax.process_index() + 1) * len(x) // n)
            model.train_on_batch(x[rows], y[rows])
    elif args.backend == "torch":  # torch's DistributedDataParallel, torch's own Adam
        import torch
        import torch.distributed as dist

        ddp = torch.nn.parallel.DistributedDataParallel(model)
        if OPTIMIZER == "sgd":  # Keras' and torch's SGD are the same arithmetic
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=0.01, eps=1e-7)
        rank, world = dist.get_rank(), dist.get_world_size()
        for x, y in batches:
            rows = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
            probs = ddp(torch.as_tensor(x[rows]), training=True)
            target = torch.as_tensor(y[rows])
            loss = -(target * torch.log(probs.clamp(1e-7, 1 - 1e-7))).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    else:
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices(
            (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
        ).batch(BATCH)
        model.fit(ds, epochs=1, verbose=0, shuffle=False)


def bad_inputs(args: argparse.Namespace, scope) -> dict[str, str]:
    """What DeepTrain says, before training, to inputs that cannot work here."""
    import keras

    from deeptrain import DataGenerator, TrainGenerator

    def error_of(make) -> str:
        try:
            make()
        except Exception as e:  # noqa: BLE001 - the message is what the test reads
            return f"{type(e).__name__}: {e}"
        return "no error"

    def tg(model=None, dg_kw=None, **kw):
        dg, vdg = generators(args.data)
        if dg_kw:
            dg = DataGenerator(
                args.data / "train", labels_path=args.data / "train" / "labels.h5", **dg_kw
            )
        with scope():
            model = model or build_model(0.0)
        return TrainGenerator(model, dg, vdg, iter_verbosity=0, **kw)

    seed = 99 if args.process_id == 1 else 7  # process 1 alone builds another schedule
    errors = {
        "batch": error_of(lambda: tg(dg_kw=dict(batch_size=1))),
        "schedule": error_of(lambda: tg(dg_kw=dict(batch_size=BATCH, shuffle=True, seed=seed))),
        "fit_fn": error_of(lambda: tg(fit_fn="fit")),
    }

    def stateful():
        with scope():
            inp = keras.Input(batch_shape=(BATCH, 4, FEATURES))
            out = keras.layers.Dense(2, "softmax")(keras.layers.LSTM(4, stateful=True)(inp))
            m = keras.Model(inp, out)
            m.compile("adam", "categorical_crossentropy")
        return tg(model=m)

    errors["stateful"] = error_of(stateful)
    backup = keras.callbacks.BackupAndRestore(str(args.out.parent / "backup"))
    errors["backup"] = error_of(lambda: tg(callbacks=[backup]))
    errors["writer_cut"] = writer_cut(tg().distribution)
    if args.backend == "torch":

        def unbuilt():
            m = keras.Sequential([keras.layers.Dense(2, "softmax")])  # no Input: built later
            m.compile("adam", "categorical_crossentropy")
            return tg(model=m)

        errors["unbuilt"] = error_of(unbuilt)
    if args.backend == "jax":

        def built_first():
            keras.distribution.set_distribution(None)
            m = build_model(0.0)
            keras.distribution.set_distribution(keras.distribution.DataParallel())
            return tg(model=m)

        errors["built_first"] = error_of(built_first)
    return errors


def writer_cut(distribution) -> str:
    """A Ctrl-C inside what process 0 runs alone (``on_writer``): what each process raises
    (every process learns of it, none waits in a collective for one that has left)."""

    def cut() -> int:
        raise KeyboardInterrupt

    try:
        distribution.on_writer(cut, "write a file")
    except KeyboardInterrupt:
        return "KeyboardInterrupt"
    except Exception as e:  # noqa: BLE001 - the message is what the test reads
        return f"{type(e).__name__}: {e}"
    return "no error"


def one_device_metrics(y, preds) -> dict:
    """The metrics of ``build_model`` on one device, from a global batch's predictions."""
    import keras
    import numpy as np

    auc = keras.metrics.AUC()
    auc.update_state(y, preds)
    loss = keras.ops.convert_to_numpy(keras.losses.categorical_crossentropy(y, preds))
    hits = np.argmax(y, -1) == np.argmax(preds, -1)
    auc = keras.ops.convert_to_numpy(auc.result())
    return {"loss": np.mean(loss), "accuracy": np.mean(hits), "auc": auc}


def checks(args: argparse.Namespace, scope) -> dict:
    """A fresh model under the distribution: the metrics of a train and an evaluate step of
    a global batch (the model's forward pass has no dropout) against one device's from the
    same predictions; its weights after a recompile and another step; a checkpoint before
    ``train()`` (the optimizer not built yet); a preprocessor that drops a row; Keras
    callbacks; a model of two inputs."""
    import numpy as np

    from deeptrain import TrainGenerator
    from deeptrain.util.preprocessors import Preprocessor

    with scope():
        model = build_model(0.0, seed=3)
    dg, vdg = generators(args.data)
    tg = TrainGenerator(model, dg, vdg, iter_verbosity=0, logs_dir=args.out.parent / "fresh")
    out = {"checkpoint_first": np.asarray(str(tg.checkpoint(forced=True)))}
    x, y = (np.asarray(a) for a in next(iter(vdg)))
    predict = tg.distribution.predict_step(model)
    for name, step in (
        ("eval", tg.distribution.evaluate_step(model)),
        ("train", tg.fit_fn),
    ):
        expected = one_device_metrics(y, predict(x, y, None))
        got = step(x, y, None)
        for k, v in expected.items():
            out[f"{name}_{k}"] = np.asarray([float(got[k]), float(v)])
    tg.sync_model()  # (as TrainGenerator does before callbacks, where users recompile)
    model.compile("sgd", "categorical_crossentropy")  # a second phase: a new optimizer
    tg.fit_fn(x, y, None)
    tg.sync_model()
    out.update({f"recompiled_{k}": v for k, v in weights(model).items() if k[0] == "w"})

    class DropLast(Preprocessor):
        def process(self, batch, labels):
            return batch[:-1], labels[:-1]

    with scope():
        model = build_model(0.0)
    dg, vdg = generators(args.data)
    dg.preprocessor = DropLast()
    tg = TrainGenerator(model, dg, vdg, iter_verbosity=0, epochs=1)
    try:
        tg.train()
    except Exception as e:  # noqa: BLE001 - the message is what the test reads
        out["error_preprocessor"] = np.asarray(f"{type(e).__name__}: {e}")

    # Keras callbacks: file writers on process 0 alone, the others on every process
    # (ModelCheckpoint's save builds an optimizer: on JAX, a collective but for writing())
    import keras

    with scope():
        model = build_model(0.0)
    seen: list[int] = []
    csv = args.out.parent / f"keras_{args.process_id}.csv"
    saved = args.out.parent / f"keras_{args.process_id}.weights.h5"
    callbacks = [
        keras.callbacks.CSVLogger(str(csv)),
        keras.callbacks.ModelCheckpoint(str(saved), save_weights_only=True),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch)),
    ]
    TrainGenerator(model, *generators(args.data), iter_verbosity=0, callbacks=callbacks).train()
    out["keras_csv_written"] = np.asarray(csv.exists())
    out["keras_checkpoint_written"] = np.asarray(saved.exists())
    out["keras_epochs_seen"] = np.asarray(seen)
    out.update(stopped_with_ctrl_c(args, scope))

    # a model of two inputs, fed a list of arrays by a preprocessor
    class TwoInputs(Preprocessor):
        def process(self, batch, labels):
            return [batch[:, : FEATURES // 2], batch[:, FEATURES // 2 :]], labels

    with scope():
        keras.utils.set_random_seed(0)
        halves = [keras.Input((FEATURES // 2,)) for _ in range(2)]
        joined = keras.layers.Dense(2, "softmax")(keras.layers.Concatenate()(halves))
        model = keras.Model(halves, joined)
        model.compile("adam", "categorical_crossentropy")
    dg, vdg = generators(args.data)
    dg.preprocessor, vdg.preprocessor = TwoInputs(), TwoInputs()
    marks, count = [], collectives_counted(args.backend)
    callbacks = {"train:iter": lambda tg: marks.append(count())}
    tg = TrainGenerator(model, dg, vdg, iter_verbosity=0, epochs=1, callbacks=callbacks)
    tg.train()
    out["collectives_per_iter"] = np.diff(marks)
    out["two_inputs_fit"] = np.asarray(tg.state.batches_fit)
    out.update({f"two_inputs_{k}": v for k, v in weights(model).items() if k[0] == "w"})
    if args.backend == "torch":
        out.update(custom_train_step(args))
        out.update(batch_norm(args))
    return out


def batch_norm(args: argparse.Namespace) -> dict:
    """torch: a model with BatchNormalization on its inputs (its batch statistics are the
    data's) trains 4 global batches. Every process ends with the same moving statistics:
    the moving mean is one device's on the same global batches (the mean of the processes'
    batch means), the moving variance is updated with the mean of the processes' batch
    variances; still one all_reduce a step."""
    import keras
    import numpy as np

    from deeptrain import TrainGenerator

    keras.utils.set_random_seed(0)
    ipt = keras.Input((FEATURES,))
    bn = keras.layers.BatchNormalization(momentum=0.5)
    model = keras.Model(ipt, keras.layers.Dense(2, "softmax")(bn(ipt)))
    model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy", metrics=["accuracy"])
    tg = TrainGenerator(model, *generators(args.data), iter_verbosity=0)
    batches = [(np.asarray(x), np.asarray(y)) for x, y in generators(args.data)[0]][:4]
    count = collectives_counted(args.backend)
    marks = [count()]
    for x, y in batches:
        tg.fit_fn(x, y, None)
        marks.append(count())
    tg.sync_model()
    mean, variance = np.zeros(FEATURES), np.ones(FEATURES)
    processes = tg.distribution.process_count
    for x, _ in batches:  # each process's contiguous share of the global batch
        shares = np.split(x.astype("float64"), processes)
        mean = 0.5 * mean + 0.5 * np.mean([s.mean(0) for s in shares], 0)
        variance = 0.5 * variance + 0.5 * np.mean([s.var(0) for s in shares], 0)
    return {
        "bn_moving_mean": keras.ops.convert_to_numpy(bn.moving_mean),
        "bn_moving_variance": keras.ops.convert_to_numpy(bn.moving_variance),
        "bn_expected_mean": mean,
        "bn_expected_variance": variance,
        "bn_collectives": np.diff(marks),
    }


CLIP = 0.05


def custom_train_step(args: argparse.Namespace) -> dict:
    """torch: a model's own ``train_step`` that clips the weights after the optimizer's
    ``apply`` (a max-norm constraint): its ``apply`` runs where it is called (Keras' own
    step has it deferred to the step's one collective), so every weight ends within the
    clip; the metrics are reduced after the step (two collectives an iteration). A model's
    own ``compute_metrics`` (which may read the weights) likewise: two collectives."""
    import keras
    import numpy as np
    import torch

    from deeptrain import TrainGenerator

    class ClippedAfterApply(keras.Model):
        def train_step(self, data):
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            y_pred = self(x, training=True)
            self.zero_grad()
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
            loss.backward()
            weights = self.trainable_weights
            with torch.no_grad():
                self.optimizer.apply([v.value.grad for v in weights], weights)
                for v in weights:
                    v.assign(keras.ops.clip(v, -CLIP, CLIP))
            return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    class OwnMetrics(keras.Model):
        def compute_metrics(self, x, y, y_pred, sample_weight=None):
            return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    out = {}
    for name, cls in (("custom_step", ClippedAfterApply), ("own_metrics", OwnMetrics)):
        keras.utils.set_random_seed(0)
        ipt = keras.Input((FEATURES,))
        model = cls(ipt, keras.layers.Dense(2, "softmax")(ipt))
        model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", metrics=["accuracy"])
        marks, count = [], collectives_counted(args.backend)
        callbacks = {"train:iter": lambda tg, marks=marks, count=count: marks.append(count())}
        tg = TrainGenerator(model, *generators(args.data), iter_verbosity=0, callbacks=callbacks)
        tg.train()
        out[f"{name}_max_weight"] = np.asarray(max(np.abs(w).max() for w in model.get_weights()))
        out[f"{name}_collectives"] = np.diff(marks)
        out[f"{name}_accuracy"] = np.asarray(tg.state.history["accuracy"][-1])
    return out


def stopped_with_ctrl_c(args: argparse.Namespace, scope) -> dict:
    """A Keras callback stops training at the 3rd batch, before whose step every process
    sends itself Ctrl-C: ``train()`` breaks off after that step (on torch, the step carried
    the signals to the boundary that does not come) and raises the Ctrl-C as it ends;
    ``train()`` again continues to the epoch's end, acting on nothing of the earlier loop."""
    import keras
    import numpy as np

    from deeptrain import TrainGenerator

    class StopWithCtrlC(keras.callbacks.Callback):
        sent = False

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2 and not self.sent:
                self.sent = self.model.stop_training = True
                os.kill(os.getpid(), signal.SIGINT)

    with scope():
        model = build_model(0.0)
    tg = TrainGenerator(
        model, *generators(args.data), iter_verbosity=0, epochs=1, callbacks=[StopWithCtrlC()]
    )
    out = {}
    try:
        tg.train()
    except KeyboardInterrupt:
        out["ctrl_c_raised_at"] = np.asarray(tg.state.batches_fit)
    tg.train()
    out["ctrl_c_then_fit"] = np.asarray(tg.state.batches_fit)
    return out


def collectives_counted(backend: str):
    """On torch, ``torch.distributed.all_reduce`` made to count its calls; the count, read
    by the function returned (elsewhere: 0)."""
    if backend != "torch":
        return lambda: 0
    import torch.distributed as dist

    calls, all_reduce = [0], dist.all_reduce

    def counted(*args, **kw):
        calls[0] += 1
        return all_reduce(*args, **kw)

    dist.all_reduce = counted
    return lambda: calls[0]


def weights(model) -> dict:
    import numpy as np

    out = {f"w{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    out.update({f"opt{i}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)})
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("backend", choices=("jax", "tensorflow", "torch"))
    p.add_argument("data", type=Path)
    p.add_argument("logs", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--process-id", type=int, default=int(os.environ.get("RANK", 0)))
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--loadpath")
    p.add_argument("--kill-at-iter", type=int)
    p.add_argument("--term-at-iter", type=int)
    p.add_argument("--raise-at-iter", type=int)
    p.add_argument("--victim", type=int, default=0, help="the process that is signalled")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--reference", action="store_true")
    p.add_argument("--single", action="store_true")
    p.add_argument("--errors", action="store_true", help="record what bad inputs are told")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--model-parallel", action="store_true", help="JAX: a batch x model mesh")
    p.add_argument("--predict", action="store_true", help="validate in predict mode")
    p.add_argument("--check-load", action="store_true", help="load the last checkpoint back")
    p.add_argument("--jit-compile", action="store_true", help="compile(jit_compile=True)")
    args = p.parse_args()
    global OPTIMIZER, PREDICT, JIT_COMPILE
    OPTIMIZER, PREDICT, JIT_COMPILE = args.optimizer, args.predict, args.jit_compile
    os.environ["KERAS_BACKEND"] = args.backend
    if args.backend == "jax":
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    import logging

    logging.basicConfig(level=logging.INFO, format=f"[p{args.process_id}] %(message)s")
    scope = set_up_engine(args)
    import numpy as np

    with scope():
        model = build_model(args.dropout)
    tg = train_deeptrain(args, model, args.logs, args.loadpath)
    out = weights(model)
    out.update({f"hist_{k}": np.asarray(v, float) for k, v in tg.history.items()})
    out.update({f"val_{k}": np.asarray(v, float) for k, v in tg.val_history.items()})
    rows = tg.distribution.local_rows(BATCH)
    out["rows"] = np.arange(BATCH)[rows]
    out["fit_iters"] = np.asarray(tg.state.fit_iters)
    out["describe"] = np.asarray(tg.distribution.describe())
    out["jit_compile"] = np.asarray(bool(model.jit_compile))
    if args.reference:
        with scope():
            ref = build_model(args.dropout)
        reference(args, ref)
        out.update({f"ref_{k}": v for k, v in weights(ref).items()})
    # the other validation mode, on the trained model: the same loss, gathered differently
    from deeptrain import TrainGenerator

    dg, vdg = generators(args.data)
    other = TrainGenerator(
        model, dg, vdg, iter_verbosity=0, eval_fn="evaluate" if PREDICT else "predict"
    )
    out["other_mode_loss"] = np.asarray(other.validate(record_progress=False)["loss"])
    if args.check_load:  # a new model, under the same distribution, from the checkpoint
        with scope():
            fresh = build_model(args.dropout, seed=5)
        dg, vdg = generators(args.data)
        TrainGenerator(fresh, dg, vdg, loadpath=tg.logdir, continue_run=False, iter_verbosity=0)
        out.update({f"loaded_{k}": v for k, v in weights(fresh).items()})
    if args.errors:
        for name, message in bad_inputs(args, scope).items():
            out[f"error_{name}"] = np.asarray(message)
        out.update(checks(args, scope))
    if args.single:
        if args.backend == "jax":
            import keras

            keras.distribution.set_distribution(None)
        elif args.backend == "torch":
            import torch.distributed as dist

            dist.destroy_process_group()
            os.environ["WORLD_SIZE"] = "1"  # (the launch's environment no longer applies)
        single = build_model(args.dropout)
        tg1 = train_deeptrain(args, single, None)
        assert not tg1.distribution.distributed
        out.update({f"single_{k}": v for k, v in weights(single).items()})
        out.update({f"single_val_{k}": np.asarray(v, float) for k, v in tg1.val_history.items()})
    np.savez(args.out, **out)
    print("done", json.dumps({"fit_iters": tg.state.fit_iters}), flush=True)


if __name__ == "__main__":
    main()
