"""Multi-device training (kdl.distribute) on CPUs: each backend's own engine splits a global
batch over several devices and takes the same steps one device takes on the whole batch.

A process's device count is fixed when its framework starts, so each check runs in a child
process that makes virtual devices first: JAX 4 host devices (XLA_FLAGS), TensorFlow 2
logical CPUs, PyTorch 2 processes under torchrun (gloo). Each backend's check runs in that
backend's test session only (`KERAS_BACKEND=X pytest`): the suite runs once per backend.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import kdl
from kdl import distribute
from kdl.errors import BackendError, ConfigError

pytestmark = pytest.mark.multi_device

# The same global batches on one device and on several: one batch of all 128 examples per epoch
# (so the shuffle order, which Keras' TF trainer advances by one pass when it builds under a
# strategy, does not matter), no dropout (each replica would draw its own masks), and plain SGD:
# Adam's first steps are about sign(gradient), which turns float rounding in near-zero
# gradients (sums in another order on each device) into full-size differences. The recipe's
# own steps_per_execution (8) stays: under MirroredStrategy kdl must bring it down to 1.
_RECIPE = ("kdl.recipes.image_classifier(limit=128, batch_size=128, epochs=3, validation_split=0.0, "
           "filters=[8], dropout=0.0, optimizer='sgd', learning_rate=0.05, distribute=MODE)")


def _run(script, backend, env=(), args=(), timeout=300):
    """Run `script` with `backend` in a child process; returns the JSON its last line prints."""
    environment = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", **dict(env))
    done = subprocess.run([*args] if args else [sys.executable, "-c", script], env=environment,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


_JAX_SCRIPT = """
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"   # before JAX starts
import json
import kdl

def digits(mode):
    recipe = RECIPE
    return recipe, recipe.fit(verbose=0).history["loss"]

_, single = digits("single")
dp, parallel = digits("data_parallel")
kernel = dp.model.trainable_variables[0].value

texts = [f"a good film {i}" if i % 2 else f"a bad movie {i}" for i in range(64)]
def transformer(mode):
    recipe = kdl.recipes.text_classifier((texts, [i % 2 for i in range(64)]), epochs=1,
                                         batch_size=16, max_length=8, validation_split=0.0,
                                         dropout=0.0, optimizer="sgd", distribute=mode)
    return recipe, recipe.fit(verbose=0, steps_per_epoch=2).history["loss"]

_, text_single = transformer("single")
mp, text_parallel = transformer("model_parallel")
layouts = {v.path: [list(v.value.sharding.spec), list(v.value.addressable_shards[0].data.shape),
                    len(v.value.sharding.device_set)] for v in mp.model.weights}
build_translator = getattr(kdl.models, "translator", None)     # keras-hub encoder + decoder
if build_translator:
    from kdl import distribute
    with distribute.scope("model_parallel"):
        model = build_translator(50, 60, 16, encoder_layers=1, decoder_layers=1, width=32,
                                 heads=4, intermediate=64)
    layouts.update({v.path: [list(v.value.sharding.spec), list(v.value.addressable_shards[0].data.shape),
                             len(v.value.sharding.device_set)] for v in model.weights})
print(json.dumps({"single": single, "parallel": parallel, "devices": len(kernel.sharding.device_set),
                  "text_single": text_single, "text_parallel": text_parallel, "layouts": layouts}))
""".replace("RECIPE", _RECIPE.replace("MODE", "mode"))


def test_jax_data_and_model_parallel_on_4_devices(backend):
    """keras.distribution on 4 virtual CPU devices: DataParallel replicates the weights and
    gives the single-device losses; ModelParallel shards the Transformer kernels."""
    if backend != "jax":
        pytest.skip("keras.distribution (DataParallel/ModelParallel) is the JAX engine; "
                    "this runs in the jax session")
    result = _run(_JAX_SCRIPT, "jax")
    assert result["devices"] == 4
    np.testing.assert_allclose(result["parallel"], result["single"], rtol=1e-4)
    np.testing.assert_allclose(result["text_parallel"], result["text_single"], rtol=1e-4)
    layouts = result["layouts"]
    name = next(p for p in layouts if p.endswith("self_attention_layer/query/kernel"))
    assert layouts[name][:2] == [[None, "model", None], [64, 2, 16]]  # 4 heads / 2
    for suffix, spec in [("attention_output/kernel", ["model", None, None]),
                         ("feedforward_intermediate_dense/kernel", [None, "model"]),
                         ("feedforward_output_dense/kernel", ["model", None])]:
        found = [layout for path, layout in layouts.items() if path.endswith(suffix)]
        assert found and all(layout[0] == spec and layout[2] == 4 for layout in found), (suffix, found)
    assert not any(layouts["probabilities/kernel"][0])         # the head is replicated
    translator = {path: layout for path, layout in layouts.items() if path.startswith("decoder_0/")}
    if translator:      # the translation model's decoder: self- and cross-attention, feed-forward
        assert translator["decoder_0/cross_attention/query/kernel"][:2] == [[None, "model", None],
                                                                            [32, 2, 8]]
        assert translator["decoder_0/self_attention/attention_output/kernel"][0] == ["model", None, None]
        assert translator["decoder_0/feedforward_intermediate_dense/kernel"][1] == [32, 32]


_TF_SCRIPT = """
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import kdl

def digits(mode):
    recipe = RECIPE
    history = recipe.fit(verbose=0)
    return recipe, history.history["loss"]

one, single = digits("single")
dp, parallel = digits("data_parallel")
print(json.dumps({"single": single, "parallel": parallel,
                  "replicas": dp.model.distribute_strategy.num_replicas_in_sync,
                  "accuracy": [one.evaluate()["accuracy"], dp.evaluate()["accuracy"]]}))
""".replace("RECIPE", _RECIPE.replace("MODE", "mode"))


def test_tensorflow_mirrored_strategy_on_2_logical_cpus(backend):
    """tf.distribute.MirroredStrategy over 2 logical CPUs gives the single-device losses."""
    if backend != "tensorflow":
        pytest.skip("tf.distribute.MirroredStrategy is the TensorFlow engine; this runs in the "
                    "tensorflow session")
    result = _run(_TF_SCRIPT, "tensorflow")
    assert result["replicas"] == 2
    np.testing.assert_allclose(result["parallel"], result["single"], rtol=1e-4)
    one, mirrored = result["accuracy"]        # the mirrored model predicts outside the scope too
    assert abs(one - mirrored) <= 2 / 360


_TORCH_SCRIPT = """
import json, os
import kdl
mode = "data_parallel" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "single"
recipe = RECIPE
loss = recipe.fit(verbose=0).history["loss"]
import torch.distributed as dist
if mode == "data_parallel":
    # the loss each process logs is on its own half: average them into the global batch's loss
    import torch
    total = torch.tensor(loss)
    dist.all_reduce(total)
    loss = (total / dist.get_world_size()).tolist()
    kernel = recipe.model.trainable_weights[0].value.detach().clone()
    same = kernel.clone()
    dist.broadcast(same, src=0)
    identical = bool(torch.equal(kernel, same))
else:
    identical = True
if not (dist.is_initialized() and dist.get_rank()):
    print(json.dumps({"loss": loss, "mode": mode, "identical": identical}))
""".replace("RECIPE", _RECIPE.replace("MODE", "mode"))


def test_torch_data_parallel_under_torchrun(backend, tmp_path):
    """torchrun, 2 processes, gloo: gradients averaged over the processes give the losses one
    process gets on the whole global batch, and both processes hold the same weights."""
    if backend != "torch":
        pytest.skip("torchrun + torch.distributed is the PyTorch engine; this runs in the torch "
                    "session")
    script = tmp_path / "train.py"
    script.write_text(_TORCH_SCRIPT)
    single = _run(_TORCH_SCRIPT, "torch")
    parallel = _run(None, "torch", env={"OMP_NUM_THREADS": "1"}, args=[
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", "29531", str(script)])
    assert (single["mode"], parallel["mode"]) == ("single", "data_parallel")
    assert parallel["identical"]
    np.testing.assert_allclose(parallel["loss"], single["loss"], rtol=1e-4)


# -- in-process: settings and errors on the active backend ----------------------------------------
def test_settings_reach_train_config_through_configure():
    recipe = kdl.recipes.image_classifier(distribute="data_parallel", precision="bf16")
    assert (recipe.config.train.distribute, recipe.config.train.precision) == ("data_parallel", "bf16")


@pytest.mark.parametrize("distribute_, precision, message", [
    ("everywhere", "fp32", "train.distribute must be one of"),
    ("model_parallel:x", "fp32", "whole number"),
    ("single", "fp8", "train.precision must be one of"),
])
def test_unknown_settings_are_config_errors(distribute_, precision, message):
    with pytest.raises(ConfigError, match=message):
        distribute.check(distribute_, precision)


def test_single_device_process_says_what_it_found(backend):
    """In this one-device test process: auto is single, data_parallel is a clear error."""
    assert distribute.plan("auto").mode == "single"
    if backend == "torch":
        with pytest.raises(ConfigError, match="torchrun --nproc_per_node"):
            distribute.plan("data_parallel")
    else:
        with pytest.raises(ConfigError, match="needs at least 2 devices .* found 1: cpu:0"):
            distribute.plan("data_parallel")
    if backend != "jax":
        with pytest.raises(BackendError, match="model_parallel.*needs the jax backend"):
            distribute.plan("model_parallel")


def test_tpu_without_a_tpu_is_a_clear_error():
    with pytest.raises(BackendError, match="tpu"):
        distribute.plan("tpu")


def test_top_up_repeats_rows_so_every_replica_gets_a_share():
    import tensorflow as tf

    batches = tf.data.Dataset.range(10).batch(4)                 # 4, 4, 2
    grown = distribute._top_up(batches, 4)
    assert [b.tolist() for b in grown.as_numpy_iterator()] == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                                [8, 9, 8, 9]]
    assert int(grown.cardinality()) == 3
    halves = distribute._slice(distribute._top_up(batches, 2), 1, 2)
    assert [b.tolist() for b in halves.as_numpy_iterator()] == [[2, 3], [6, 7], [9]]


def test_cli_options_are_checked_before_training(tmp_path, capsys):
    from kdl import cli

    assert cli.main(["train", "image_classifier", "--distribute", "everywhere", "--precision",
                     "bf16", "--out", str(tmp_path / "run")]) == 1
    assert "train.distribute must be one of" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert cli.main(["train", "image_classifier", "--precision", "fp8"]) == 1     # argparse's choices
    assert "argument --precision: invalid choice: 'fp8'" in capsys.readouterr().err


# Fine-tuning under each engine (kdl.finetune): a saved digits run as backbone, one frozen epoch,
# then the backbone at half the rate. The frozen epoch leaves the backbone bit-identical on every
# replica, and the losses are the single-device ones.
_FINETUNE_SCRIPT = """
import json, os, sys
SETUP
import numpy as np
import kdl
mode, folder = sys.argv[1], sys.argv[2]
if mode == "single" and not os.path.exists(os.path.join(folder, "base", "model.keras")):
    base = kdl.recipes.image_classifier(limit=128, batch_size=128, epochs=1, validation_split=0.0,
                                        filters=[8], dropout=0.0, optimizer="sgd", learning_rate=0.05)
    base.fit(verbose=0)
    base.save(os.path.join(folder, "base"))
recipe = kdl.recipes.image_classifier(limit=128, batch_size=128, epochs=2, validation_split=0.0,
                                      backbone=os.path.join(folder, "base"), freeze_epochs=1,
                                      backbone_lr_mult=0.5, optimizer="sgd", learning_rate=0.05,
                                      distribute=mode)
frozen = []
import keras
class Backbone(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        frozen.append([np.asarray(keras.ops.convert_to_numpy(v.value)).tolist()
                       for v in self.model.trainable_weights if not v.path.startswith("probabilities")])
start = [np.asarray(keras.ops.convert_to_numpy(v.value)).tolist()
         for v in kdl.recipes.load(os.path.join(folder, "base")).model.trainable_weights
         if not v.path.startswith("probabilities")]
loss = recipe.fit(verbose=0, callbacks=[Backbone()]).history["loss"]
if int(os.environ.get("WORLD_SIZE", "1")) > 1:     # torchrun: each process logs its half's loss
    import torch, torch.distributed as dist
    total = torch.tensor(loss)
    dist.all_reduce(total)
    loss = (total / dist.get_world_size()).tolist()
if int(os.environ.get("RANK", "0")) == 0:
    print(json.dumps({"loss": loss, "frozen": frozen[0] == start, "moved": frozen[1] != start}))
"""
_FINETUNE_SETUP = {
    "jax": 'os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"',
    "tensorflow": ("import tensorflow as tf\ncpu = tf.config.list_physical_devices('CPU')[0]\n"
                   "tf.config.set_logical_device_configuration(\n"
                   "    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)"),
    "torch": "",
}


def test_fine_tuning_under_each_engine(backend, tmp_path):
    """JAX DataParallel (4 devices), MirroredStrategy (2 logical CPUs), torchrun (2 processes)."""
    script = tmp_path / "finetune.py"
    script.write_text(_FINETUNE_SCRIPT.replace("SETUP", _FINETUNE_SETUP[backend]))
    single = _run(None, backend, args=[sys.executable, str(script), "single", str(tmp_path)])
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                 "29533"] if backend == "torch" else [sys.executable])
    parallel = _run(None, backend, env={"OMP_NUM_THREADS": "1"},
                    args=[*launcher, str(script), "data_parallel", str(tmp_path)])
    assert single["frozen"] and parallel["frozen"] and single["moved"] and parallel["moved"]
    np.testing.assert_allclose(parallel["loss"], single["loss"], rtol=1e-4)
