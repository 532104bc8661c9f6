"""Multi-host training, proven on one machine: two processes, each a "host", joined by the
active backend's own engine and started the way that engine's users start them (no launcher of
kdl's own): JAX with Keras' KERAS_DISTRIBUTION_* variables (2 virtual CPU devices each, 4 in
all), TensorFlow's MultiWorkerMirroredStrategy with TF_CONFIG, PyTorch with two `torchrun
--nnodes 2` invocations (c10d rendezvous, gloo). Each backend's checks run in that backend's
test session; every check runs on all three (the JAX model-parallel one says why it does not).
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import next_backend

pytestmark = pytest.mark.multi_device

REPO = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("multi_host", REPO / "benchmarks" / "multi_host.py")
multi_host = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(multi_host)        # the hosts' launcher, shared with the benchmark
DIGITS, EXACT, DIGITS_SMOKE = multi_host.DIGITS, multi_host.EXACT, multi_host.DIGITS_SMOKE
SST2 = str(REPO / "recipes" / "text_classification" / "sst2_transformer.toml")
_free_ports, _host, _together, _history, _kill = (multi_host.free_ports, multi_host.start_host,
                                                  multi_host.run_hosts, multi_host.history,
                                                  multi_host.kill_host)


def _ok(results):
    for code, _, err in results:
        assert code == 0, err[-3000:]
    return results


def _single(backend, args, timeout=300):
    environment = dict(os.environ, KERAS_BACKEND=backend, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, *args], env=environment, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _epochs(run):
    """How many epochs a run in training has logged so far."""
    try:
        return len(_history(run)["loss"])
    except (OSError, IndexError, KeyError):
        return 0


def test_two_hosts_train_the_digits_cnn_as_one(backend, tmp_path):
    """`kdl train --distribute data_parallel` on 2 hosts takes the steps one process takes on the
    same global batches (losses within 1e-4), writes one run directory, which loads everywhere."""
    two, one = tmp_path / "two", tmp_path / "one"
    results = _ok(_together(backend, ["-m", "kdl", "train", DIGITS, *DIGITS_SMOKE, *EXACT,
                                      "--distribute", "data_parallel", "--quiet", "--out", str(two)]))
    _single(backend, ["-m", "kdl", "train", DIGITS, *DIGITS_SMOKE, *EXACT, "--quiet", "--out", str(one)])
    np.testing.assert_allclose(_history(two)["loss"], _history(one)["loss"], rtol=1e-4)
    assert "2 processes" in results[0][1] and "run saved to" in results[0][1]
    assert "kdl" not in results[1][1] and "accuracy" not in results[1][1], "only process 0 reports"
    assert sorted(p.name for p in two.iterdir() if p.is_dir()) == ["tensorboard"], "no worker-K folders"
    report = json.loads((two / "report.json").read_text())
    reference = json.loads((one / "report.json").read_text())
    assert report["meta"]["num_examples"] == reference["meta"]["num_examples"] == 360   # each test image
    assert abs(report["metrics"]["accuracy"] - reference["metrics"]["accuracy"]) <= 1 / 360
    for other in (backend, next_backend(backend)):     # the run loads and scores the same here and next
        score = f"import kdl; print(kdl.recipes.load({str(two)!r}).evaluate()['accuracy'])"
        found = _single(other, ["-c", score])
        assert abs(float(found.stdout.split()[-1]) - report["metrics"]["accuracy"]) < 1e-6, other


def test_two_hosts_train_the_sst2_transformer_as_one(backend, tmp_path, shared_data):
    """The SST-2 Transformer at smoke size: the same losses on 2 hosts as in 1 process."""
    smoke = ["--set", "data.limit=640", "--set", "data.validation_split=0.0", "--set",
             "data.vocabulary_size=2000", "--set", "train.early_stopping=0", "--epochs", "2",
             "--data-root", str(shared_data), "--quiet"]
    two, one = tmp_path / "two", tmp_path / "one"
    _ok(_together(backend, ["-m", "kdl", "train", SST2, *smoke, *EXACT, "--distribute", "data_parallel",
                            "--out", str(two)]))
    _single(backend, ["-m", "kdl", "train", SST2, *smoke, *EXACT, "--out", str(one)])
    np.testing.assert_allclose(_history(two)["loss"], _history(one)["loss"], rtol=1e-4)


_SHARDS = """
import json
import numpy as np
import tensorflow as tf
from kdl import distribute
from kdl.data import batches
distribute.initialize("data_parallel")
plan = distribute.plan("data_parallel")
examples = tf.data.Dataset.range(103).map(lambda i: (i, i % 2))       # 103: a partial last batch
read = plan.dataset(batches(examples, 32, shuffle=True, seed=7))
read = getattr(read, "kdl_local", read)         # TensorFlow: what this worker's replicas get
seen = [np.asarray(x).tolist() for x, _ in read]
print(json.dumps({"seen": distribute.all_gather(seen), "top_up": plan.top_up}))
"""


def test_each_host_reads_its_own_slice_of_every_global_batch(backend, tmp_path):
    """The hosts' slices of one epoch cover the dataset: every example, in the same seeded
    order, none twice but the top-up of the last partial batch (fewer than the replicas)."""
    out = _ok(_together(backend, ["-c", _SHARDS]) if backend != "torch" else
              _together(backend, [_script(_SHARDS, tmp_path)]))[0][1]
    found = json.loads(out.strip().splitlines()[-1])
    hosts, top_up = found["seen"], found["top_up"]
    assert [len(batch) for batch in hosts[0]] == [len(batch) for batch in hosts[1]]   # equal slices
    every = [i for host in hosts for batch in host for i in batch]
    assert set(every) == set(range(103))
    assert 0 <= len(every) - 103 < top_up
    for step, (first, second) in enumerate(zip(*hosts)):      # one global batch, two disjoint halves
        assert not set(first) & set(second) or step == len(hosts[0]) - 1


def _script(source, folder):
    """torchrun runs a file: `source` written to one in `folder`."""
    path = pathlib.Path(folder) / "script.py"
    path.write_text(textwrap.dedent(source))
    return str(path)


_MODEL_PARALLEL = """
import json
import kdl
from kdl import distribute
distribute.initialize("model_parallel")
texts = [f"a good film {i}" if i % 2 else f"a bad movie {i}" for i in range(64)]
def transformer(mode):
    recipe = kdl.recipes.text_classifier((texts, [i % 2 for i in range(64)]), epochs=1, batch_size=16,
                                         max_length=8, validation_split=0.0, dropout=0.0, optimizer="sgd",
                                         distribute=mode)
    return recipe, recipe.fit(verbose=0, steps_per_epoch=2).history["loss"]
_, single = transformer("single")                  # each process alone, on its first device
recipe, parallel = transformer("model_parallel")   # one (2, 2) mesh over both processes
with distribute.scope("model_parallel"):      # the trained model is this process's copy: build anew
    model = recipe.build_model()
    translator = kdl.models.translator(50, 60, 16, encoder_layers=1, decoder_layers=1, width=32,
                                       heads=4, intermediate=64)
def layout(model, suffix):
    value = next(v.value for v in model.weights if v.path.endswith(suffix))
    return [list(value.sharding.spec), list(value.addressable_shards[0].data.shape),
            len(value.sharding.device_set)]
print(json.dumps({"single": single, "parallel": parallel,
                  "query": layout(model, "self_attention_layer/query/kernel"),
                  "cross": layout(translator, "decoder_0/cross_attention/query/kernel")}))
"""


def test_jax_model_parallel_across_two_hosts(backend):
    """keras.distribution.ModelParallel over 2 processes x 2 devices: the text Transformer's and
    the translator's kernels are sharded on the model axis (inside each process), and the text
    Transformer's losses are one process's."""
    if backend != "jax":
        pytest.skip("keras.distribution.ModelParallel is the JAX engine; this runs in the jax session")
    found = json.loads(_ok(_together("jax", ["-c", _MODEL_PARALLEL]))[0][1].strip().splitlines()[-1])
    np.testing.assert_allclose(found["parallel"], found["single"], rtol=1e-4)
    assert found["query"] == [[None, "model", None], [64, 2, 16], 4]       # 4 heads / 2, on 4 devices
    assert found["cross"] == [[None, "model", None], [32, 2, 8], 4]        # the translator's decoder


def test_a_killed_host_stops_the_run_and_the_same_commands_resume_it(backend, tmp_path):
    """Kill one host mid-epoch (it and all it started, as a preempted VM): the other stops
    on its own, and the same launch commands resume from the last backup to the metrics of an
    uninterrupted run (within 0.5 points)."""
    args = ["-m", "kdl", "train", DIGITS, "--set", "data.limit=1280", "--epochs", "4",
            "--distribute", "data_parallel", "--quiet"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    _ok(_together(backend, [*args, "--out", str(whole)]))
    ports = _free_ports(2)
    hosts = [_host(backend, index, [*args, "--out", str(resumed)], ports) for index in (0, 1)]
    try:
        deadline = time.time() + 300
        while _epochs(resumed) < 2:
            assert time.time() < deadline and all(h.poll() is None for h in hosts), "no epoch finished"
            time.sleep(0.2)
        time.sleep(0.5)                                    # into epoch 3
        _kill(hosts[1])
        start = time.time()
        code = hosts[0].wait(timeout=240)                 # the survivor stops by itself
        stopped = time.time() - start
    finally:
        for h in hosts:
            if h.poll() is None:
                _kill(h)
    assert code != 0 and (resumed / "backup").is_dir() and not (resumed / "model.keras").exists()
    _ok(_together(backend, [*args, "--out", str(resumed)]))
    assert len(_history(resumed)["loss"]) >= 4
    accuracy = [json.loads((run / "report.json").read_text())["metrics"]["accuracy"]
                for run in (whole, resumed)]
    assert abs(accuracy[0] - accuracy[1]) <= 0.005, (accuracy, stopped)
    print(f"the surviving host stopped {stopped:.0f} s after the other was killed; accuracy "
          f"uninterrupted {accuracy[0]:.4f}, resumed {accuracy[1]:.4f}")


def test_a_peer_that_never_arrives_is_a_clear_error(backend, tmp_path):
    """Only one of the two hosts starts: a clear error within the join timeout, not a hang."""
    start = time.time()
    if backend == "torch":      # torchrun's own rendezvous waits for the nodes (--rdzv-conf join_timeout)
        ports = _free_ports(1)
        environment = dict(os.environ, KERAS_BACKEND="torch")
        done = subprocess.run([str(pathlib.Path(sys.executable).with_name("torchrun")), "--nnodes", "2",
                               "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                               f"localhost:{ports[0]}", "--rdzv-conf", "join_timeout=10", "-m", "kdl",
                               "train", DIGITS, "--distribute", "data_parallel",
                               "--out", str(tmp_path / "run")],
                              env=environment, capture_output=True, text=True, timeout=120)
        code, err = done.returncode, done.stderr
        assert "RendezvousTimeoutError" in err
    else:
        ((code, _, err),) = _together(backend, ["-m", "kdl", "train", DIGITS, "--distribute", "data_parallel",
                                                "--out", str(tmp_path / "run")], hosts=(1,),
                                      env={"KDL_JOIN_TIMEOUT": "10"}, timeout=120)
        assert "kdl: error: process 1 of 2 could not join" in err and "KDL_JOIN_TIMEOUT" in err
    assert code != 0 and time.time() - start < 90
    assert not (tmp_path / "run").exists()


def test_hosts_that_disagree_stop_with_a_clear_error(backend, tmp_path):
    """Two hosts started with different recipes: both stop, naming what differs."""
    ports = _free_ports(2)
    hosts = [_host(backend, index, ["-m", "kdl", "train", DIGITS, "--epochs", str(1 + index),
                                    "--distribute", "data_parallel", "--out", str(tmp_path / "run")], ports)
             for index in (0, 1)]
    try:
        results = [(h.wait(timeout=240), h.stderr.read()) for h in hosts]
    finally:
        for h in hosts:
            if h.poll() is None:
                _kill(h)
    for code, err in results:
        assert code != 0 and "the processes of this run disagree: process 1 has recipe" in err, err[-2000:]
