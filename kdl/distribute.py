"""Multi-device, multi-host and TPU training through each backend's own engine, and mixed
precision.

Every recipe has `train.distribute` and `train.precision`; `Recipe.fit` builds and compiles the
model inside `scope(distribute, precision)`, a no-op for "single" and "fp32", and trains it in
the Plan's `fit_context()`.

- "single": one device (the default).
- "auto": every local accelerator (data parallel); one device when there is only one.
- "data_parallel": one model copy per device, each global batch split between them. JAX:
  `keras.distribution.DataParallel`; TensorFlow: `tf.distribute.MirroredStrategy`; PyTorch:
  one process per device under `torchrun` (below).
- "model_parallel" or "model_parallel:M" (JAX): `keras.distribution.ModelParallel`, a
  ("batch", "model") DeviceMesh with an M-device model axis (default 2) and a LayoutMap that
  shards the attention and feed-forward kernels of keras-hub Transformer layers on it.
- "tpu": every TPU core of a Cloud TPU VM or pod slice. JAX: DataParallel over the TPU devices;
  TensorFlow: `TPUStrategy(TPUClusterResolver)`.

`data.batch_size` is the GLOBAL batch: with N replicas each computes batch_size / N examples and
the gradients are averaged, so a step is the step one device takes on the whole batch. The
learning rate is never scaled for you. On JAX and PyTorch the last, partial batch of an epoch is
topped up to a multiple of N by repeating its first examples (every device needs a share).

PyTorch: Keras 3 has no `keras.distribution` for torch and `model.fit` cannot run its forward
pass through a `DistributedDataParallel` wrapper, so kdl does DDP's work itself: `torchrun`
starts one process per device, kdl joins them with `torch.distributed` (NCCL on GPUs, gloo on
CPUs), broadcasts rank 0's weights, and averages every gradient over the processes with
`all_reduce` before each optimizer step; each process reads its slice of every global batch:
`torchrun --nproc_per_node N -m kdl train RECIPE --distribute data_parallel`.

Several processes (hosts of a TPU pod slice or a GPU cluster, or several processes on one
machine), each started the way its engine's users start it, with the same command:
- JAX: `KERAS_DISTRIBUTION_JOB_ADDRESSES` (the coordinator, host:port),
  `KERAS_DISTRIBUTION_NUM_PROCESSES`, `KERAS_DISTRIBUTION_PROCESS_ID` (Keras' own variables);
  one mesh over every process's devices.
- TensorFlow: `TF_CONFIG` with 2+ workers: `tf.distribute.MultiWorkerMirroredStrategy`.
- PyTorch: `torchrun --nnodes N ... --rdzv-backend c10d --rdzv-endpoint HOST:PORT` (one per host).
`initialize` joins them, waiting at most `KDL_JOIN_TIMEOUT` seconds (default 300) for the
others; then every process checks that all run the same recipe with the same kdl (`agree`).
Each reads only its slice of every global batch (`Plan.dataset`), process 0 alone writes the
run directory (the others read its backup/ when resuming, so it must be on storage every host
sees), `all_gather` and `barrier` are the few collectives kdl itself needs. See docs/tpu.md.

precision: "fp32", "bf16" (Keras' "mixed_bfloat16": bfloat16 maths, float32 weights) or "fp16"
("mixed_float16"; `model.compile` then wraps the optimizer in a LossScaleOptimizer). The policy
is set while the model is built and put back afterwards; model heads stay float32.

>>> from kdl import distribute
>>> with distribute.scope("single", "bf16") as plan:
...     import keras
...     keras.layers.Dense(2).dtype_policy.name
'mixed_bfloat16'
>>> keras.config.dtype_policy().name
'float32'
>>> plan.replicas, plan.chief
(1, True)
"""

import base64
import contextlib
import datetime
import hashlib
import io
import json
import os

import numpy as np

from kdl import backend
from kdl.errors import BackendError, ConfigError

MODES = ("auto", "single", "data_parallel", "model_parallel", "tpu")
POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
MODEL_AXIS = 2      # default size of the "model" mesh axis of model_parallel

# Megatron-style sharding of keras-hub TransformerEncoder / TransformerDecoder (and the
# backbones built on them, e.g. BERT): attention heads and the feed-forward hidden units are
# split over the "model" axis; everything else is replicated.
TRANSFORMER_LAYOUT = {
    r".*/(query|key|value)/kernel": (None, "model", None),         # (hidden, heads, head_dim)
    r".*/(query|key|value)/bias": ("model", None),                  # (heads, head_dim)
    r".*/attention_output/kernel": ("model", None, None),           # (heads, head_dim, hidden)
    r".*/(feedforward_)?intermediate_dense/kernel": (None, "model"),  # (hidden, intermediate)
    r".*/(feedforward_)?intermediate_dense/bias": ("model",),       # (intermediate,)
    r".*/(feedforward_)?output_dense/kernel": ("model", None),      # (intermediate, hidden)
    r".*token_embedding/embeddings": (None, "model"),               # (vocabulary, hidden)
}


def check(distribute, precision="fp32"):
    """Validate the two settings; returns (mode, model axis size)."""
    if precision not in POLICIES:
        raise ConfigError(f"train.precision must be one of {', '.join(POLICIES)}; got {precision!r}")
    mode, _, axis = str(distribute).partition(":")
    if mode not in MODES or (axis and mode != "model_parallel"):
        raise ConfigError(f"train.distribute must be one of {', '.join(MODES)} (or "
                          f"model_parallel:M for an M-device model axis); got {distribute!r}")
    if axis and not (axis.isdigit() and int(axis) >= 1):
        raise ConfigError(f"train.distribute: model_parallel:M needs a whole number M >= 1; "
                          f"got {distribute!r}")
    return mode, int(axis or MODEL_AXIS)


@contextlib.contextmanager
def scope(distribute="single", precision="fp32"):
    """Build, compile and fit inside this: it sets the dtype policy and the backend's
    distribution (keras.distribution / tf.distribute / torch.distributed) and yields the Plan."""
    import keras

    check(distribute, precision)
    found = plan(distribute)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[precision])
    try:
        with found.context():
            yield found
    finally:
        keras.config.set_dtype_policy(previous)


class Plan:
    """How this process trains: the resolved mode, replica count and what the recipe must do
    to its model, its batches and its run directory."""

    def __init__(self, mode="single", replicas=1, context=contextlib.nullcontext, top_up=1,
                 process_index=0, process_count=1, shard=None, prepare=None, feed=None,
                 fit_context=None, before_fit=None, local_logs=False):
        self.mode, self.replicas, self.context = mode, replicas, context
        self.fit_context = fit_context or context     # what model.fit runs in
        self._before_fit = before_fit       # (model, this process's batches) -> None
        self.local_logs = local_logs        # model.fit logs this process's slice only (torch)
        self.top_up = top_up                # the global batch must be a multiple of this
        self.process_index, self.process_count = process_index, process_count
        self._shard = shard                 # (index, count): this process reads one slice
        self._prepare = prepare             # model -> None, after the model is built
        self._feed = feed                   # this process's batches -> what model.fit reads
        self.key = mode if mode == "single" else f"{mode}/{replicas}/{backend.name()}"

    @property
    def chief(self):
        """True in the process that writes the run directory (process 0)."""
        return self.process_index == 0

    def model(self, model, build):
        """The model to train in this plan: `build()` when there is none; under a
        distribution, a model created outside it is rebuilt inside and given its weights."""
        if model is not None and (self.mode == "single" or
                                  getattr(model, "_kdl_distribute", None) == self.key):
            return model
        rebuilt = build()
        if model is not None:
            rebuilt.set_weights(model.get_weights())
        if self._prepare:
            self._prepare(rebuilt)
        rebuilt._kdl_distribute = self.key
        return rebuilt

    def dataset(self, batches):
        """The batched tf.data pipeline as this process should read it: every global batch
        topped up to a multiple of the replicas, then this process's slice of it."""
        if self.top_up > 1:
            batches = _top_up(batches, self.top_up)
        if self._shard:
            batches = _slice(batches, *self._shard)
        return self._feed(batches) if self._feed else batches

    def before_fit(self, model, batches):
        """Whatever the engine needs done to the compiled `model` before `model.fit` reads
        `batches` (a pipeline from `dataset`)."""
        if self._before_fit:
            self._before_fit(model, batches)

    def release(self, model, build, compile):
        """After fit in a multi-process run: a copy of `model` that this process alone holds
        (trained weights and optimizer state, built outside the distribution, no gradient
        hooks), so that evaluate, predict, explain and save need no other process; `compile(
        copy, optimizer)` compiles it as the recipe does. In one process: `model` itself."""
        if self.process_count == 1:
            return model
        copy = build()      # outside every distribution scope: plain single-device variables
        copy.set_weights([_fetch(weight) for weight in model.weights])
        if getattr(model, "optimizer", None) is not None:
            compile(copy, type(model.optimizer).from_config(model.optimizer.get_config()))
            copy.optimizer.build(copy.trainable_variables)
            for mine, trained in zip(copy.optimizer.variables, model.optimizer.variables):
                mine.assign(_fetch(trained))
        return copy

    def __repr__(self):
        return (f"<Plan {self.mode} replicas={self.replicas} "
                f"process={self.process_index}/{self.process_count}>")


@contextlib.contextmanager
def local():
    """Create variables for this process alone while in here: in a multi-process JAX run, Keras
    makes a few while saving (a reference optimizer), and under the distribution each would be
    a collective the other processes never join."""
    if backend.name() != "jax" or not _JOINED:
        yield
        return
    import keras

    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def _fetch(variable):
    """A variable's value as a NumPy array in this process (a replicated or process-local
    jax.Array, a tf MirroredVariable, a torch parameter)."""
    import keras

    return keras.ops.convert_to_numpy(variable.value)


def plan(distribute="single"):
    """The Plan for `distribute` on the active backend; raises when it cannot run here."""
    mode, model_axis = check(distribute)
    if mode == "single":
        return Plan()
    initialize(distribute)
    return {"jax": _jax_plan, "tensorflow": _tf_plan, "torch": _torch_plan}[backend.name()](
        mode, model_axis)


def initialize(distribute="single"):
    """Join the other processes of a multi-process run; call before any device is touched
    (`kdl train` does). A no-op in a single process. A peer that has not arrived within
    `KDL_JOIN_TIMEOUT` seconds is a BackendError naming who was waited for."""
    mode, _ = check(distribute)
    if mode == "single":
        return
    name = backend.name()
    if name == "jax" and _jax_multi_process():
        _jax_initialize()
    elif name == "tensorflow" and len(_tf_workers()) > 1:
        _tf_multi_worker()
    elif name == "torch" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _torch_initialize()


def world():
    """(this process's index, the number of processes) of the run this process has joined."""
    name = backend.name()
    if name == "jax" and _JOINED:
        import jax

        return jax.process_index(), jax.process_count()
    if name == "tensorflow" and _TF_MULTI_WORKER:
        return _tf_task_index(), len(_tf_workers())
    if name == "torch":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_chief():
    """True unless this is a non-zero process of a multi-process run."""
    return world()[0] == 0


def join_timeout():
    """Seconds a process waits for its peers: `KDL_JOIN_TIMEOUT`, default 300."""
    value = os.environ.get("KDL_JOIN_TIMEOUT", "300")
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if not seconds >= 1:
        raise ConfigError(f"KDL_JOIN_TIMEOUT must be a number of seconds, at least 1; got {value!r}")
    return int(seconds)


def all_gather(value):
    """`value` from every process of the run, in process order; every process must call it, at
    the same point. `value`: JSON data (dicts, lists, str, numbers) in which NumPy arrays may
    appear (sent as .npy, never pickled). In a single process: [value]."""
    if world()[1] == 1:
        return [value]
    data = np.frombuffer(json.dumps(value, default=_to_json).encode(), dtype=np.uint8)
    gathered = {"jax": _jax_gather, "tensorflow": _tf_gather, "torch": _torch_gather}[backend.name()]
    sizes = gathered(np.array([data.size], np.int64))[:, 0]
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:data.size] = data
    rows = gathered(padded)
    return [json.loads(row[:size].tobytes(), object_hook=_from_json) for row, size in zip(rows, sizes)]


def _to_json(value):
    if isinstance(value, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return {"npy": base64.b64encode(buffer.getvalue()).decode()}
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot send a {type(value).__name__} to the other processes")


def _from_json(value):
    if set(value) == {"npy"}:
        return np.load(io.BytesIO(base64.b64decode(value["npy"])), allow_pickle=False)
    return value


def barrier(what="kdl"):
    """Wait here until every process of the run has arrived (a no-op in one process)."""
    all_gather(what)


def agree(**facts):
    """Check that every process runs with the same `facts` (the kdl version, the recipe, ...);
    a ConfigError, raised in every process alike, names the first process and fact that differ."""
    def short(value):
        text = str(value)
        return text if len(text) <= 40 else "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]

    everyone = all_gather({name: short(value) for name, value in facts.items()})
    for index, theirs in enumerate(everyone):
        for name in facts:
            if theirs.get(name) != everyone[0].get(name):
                raise ConfigError(f"the processes of this run disagree: process {index} has {name} "
                                  f"{theirs.get(name)}, process 0 has {everyone[0].get(name)}; start "
                                  "every process with the same recipe, options and kdl version")


def shard_range(size, index, count):
    """The contiguous [start, stop) of `size` items that process `index` of `count` takes
    (the first `size % count` processes take one more)."""
    share, extra = divmod(size, count)
    start = index * share + min(index, extra)
    return start, start + share + (index < extra)


def _not_enough(mode, devices, fix):
    return ConfigError(f"train.distribute={mode!r} needs at least 2 devices on the "
                       f"{backend.name()} backend; found {len(devices)}: {', '.join(devices)}. {fix}")


def _peer_error(engine, error, timeout):
    reason = " ".join(str(error).split())[:300]
    index, count = _expected_index()
    return BackendError(f"process {index} of {count} could not join the multi-process {engine} run "
                        f"within {timeout} s (KDL_JOIN_TIMEOUT): {reason}. Start every process with "
                        "the same command and addresses; a peer that never arrived is the usual cause")


def _expected_index():
    """(index, count) as this process's launch variables state them, before it joined."""
    name = backend.name()
    if name == "jax":
        return (os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID", "?"),
                os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "?"))
    if name == "tensorflow":
        return _tf_task_index(), len(_tf_workers())
    return os.environ.get("RANK", "?"), os.environ.get("WORLD_SIZE", "?")


# -- JAX: keras.distribution ----------------------------------------------------------------
_JOINED = []


def _jax_multi_process():
    return any(os.environ.get(v) for v in ("KERAS_DISTRIBUTION_NUM_PROCESSES",
                                           "KERAS_DISTRIBUTION_JOB_ADDRESSES"))


def _jax_initialize():
    """keras.distribution.initialize's join, with a timeout: Keras reads the same three
    variables but passes no timeout to jax.distributed.initialize (it waits 300 s)."""
    import jax

    if _JOINED:
        return
    addresses = os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES") or None
    values = {}
    for name in ("NUM_PROCESSES", "PROCESS_ID"):
        value = os.environ.get(f"KERAS_DISTRIBUTION_{name}")
        if value and not value.isdigit():
            raise ConfigError(f"KERAS_DISTRIBUTION_{name} must be a whole number; got {value!r}")
        values[name] = int(value) if value else None
    if addresses and "," in addresses:
        count = len(addresses.split(","))
        if values["NUM_PROCESSES"] not in (None, count):
            raise ConfigError(f"KERAS_DISTRIBUTION_JOB_ADDRESSES lists {count} addresses but "
                              f"KERAS_DISTRIBUTION_NUM_PROCESSES is {values['NUM_PROCESSES']}")
        addresses = addresses.split(",")[0]        # the first one is the coordinator
    timeout = join_timeout()
    # JAX ends the process (a C++ abort, nothing Python can catch) when a peer has not registered
    # by its deadline; kdl's watchdog says why, clearly, a few seconds before that.
    with _watchdog(timeout, _peer_error("JAX", f"no answer from the coordinator "
                                          f"{addresses or '(from the TPU metadata)'}", timeout)):
        try:
            jax.distributed.initialize(addresses, num_processes=values["NUM_PROCESSES"],
                                       process_id=values["PROCESS_ID"],
                                       initialization_timeout=timeout + 30)
        except (RuntimeError, ValueError) as error:
            raise _peer_error("JAX", error, timeout) from None
    _JOINED.append(True)


@contextlib.contextmanager
def _watchdog(seconds, error):
    """Print `error` as a `kdl: error:` line and end this process (SIGKILL) if the block has not
    finished within `seconds`: for waits an engine aborts, or never ends, on its own. A separate
    process keeps the time, because an engine may wait holding Python's lock (TensorFlow does)."""
    import subprocess
    import sys

    keeper = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(seconds),
                               f"kdl: error: {error}"], stdin=subprocess.PIPE)
    try:
        yield
    finally:
        keeper.kill()
        keeper.wait()


_WATCHDOG = """
import os, signal, sys, time
pid, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
time.sleep(seconds)
sys.stderr.write(message + "\\n"); sys.stderr.flush()
os.kill(pid, signal.SIGKILL)
"""


def _jax_plan(mode, model_axis):
    import jax
    import keras

    if mode == "tpu":
        try:
            devices = [f"tpu:{d.id}" for d in jax.devices("tpu")]
        except RuntimeError:
            devices = []
        if not devices:
            raise BackendError("train.distribute='tpu': JAX sees no TPU (devices: "
                               f"{', '.join(map(str, jax.devices()))}); on a Cloud TPU VM install "
                               "kdl with the 'tpu' extra (jax[tpu]), see docs/tpu.md")
    else:
        devices = keras.distribution.list_devices()     # accelerators, else the CPU devices
    if mode == "auto":
        if len(devices) < 2:
            return Plan()
        mode = "data_parallel"
    if len(devices) < 2:
        raise _not_enough(mode, devices, "On CPUs, XLA_FLAGS=--xla_force_host_platform_device_count=N "
                                         "(set before JAX starts) makes N devices.")
    processes = jax.process_count()
    # Several processes: kdl slices every global batch itself (Plan.dataset, the same code for
    # every backend), and Keras assembles each process's slice into the global batch.
    if mode in ("data_parallel", "tpu"):
        distribution = keras.distribution.DataParallel(devices=devices,
                                                       auto_shard_dataset=processes == 1)
        batch_axis = len(devices)
    else:
        local = jax.local_device_count()
        if len(devices) % model_axis or (processes > 1 and local % model_axis):
            where = (f"{len(devices)} devices" if processes == 1 else
                     f"{local} devices per process (the model axis stays within a process)")
            raise ConfigError(f"train.distribute='model_parallel:{model_axis}': {where} do not split "
                              f"into a model axis of {model_axis}")
        batch_axis = len(devices) // model_axis
        mesh = keras.distribution.DeviceMesh((batch_axis, model_axis), ("batch", "model"), devices)
        distribution = _model_parallel(transformer_layout_map(mesh))
        distribution.auto_shard_dataset = processes == 1
        mode = f"model_parallel:{model_axis}"
    index = jax.process_index()
    return Plan(mode, len(devices), distribution.scope, top_up=batch_axis, process_index=index,
                process_count=processes, shard=(index, processes) if processes > 1 else None)


def transformer_layout_map(mesh):
    """A keras.distribution.LayoutMap sharding Transformer kernels on `mesh`'s "model" axis."""
    import keras

    layout_map = keras.distribution.LayoutMap(mesh)
    for pattern, axes in TRANSFORMER_LAYOUT.items():
        layout_map[pattern] = axes
    return layout_map


def _model_parallel(layout_map):
    """keras.distribution.ModelParallel that replicates a variable whose sharded dimension does
    not divide by its mesh axis (a small layer on a big mesh) instead of failing."""
    import keras

    class ModelParallel(keras.distribution.ModelParallel):
        def get_variable_layout(self, variable):
            layout = super().get_variable_layout(variable)
            mesh = dict(zip(self.device_mesh.axis_names, self.device_mesh.shape))
            if any(axis and size % mesh[axis] for axis, size in zip(layout.axes, variable.shape)):
                return keras.distribution.TensorLayout([None] * len(variable.shape), self.device_mesh)
            return layout

    return ModelParallel(layout_map=layout_map, batch_dim_name="batch")


def _jax_gather(array):
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array[None], tiled=True))


# -- TensorFlow: tf.distribute --------------------------------------------------------------
_TPU_STRATEGY = []
_TF_MULTI_WORKER = []


def _tf_workers():
    """The worker addresses of TF_CONFIG's cluster (chief first, when it names one)."""
    value = os.environ.get("TF_CONFIG")
    if not value:
        return []
    try:
        cluster = json.loads(value)["cluster"]
        return list(cluster.get("chief", [])) + list(cluster.get("worker", []))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError('TF_CONFIG is not JSON of the form {"cluster": {"worker": [...]}, "task": '
                          f'{{"type": "worker", "index": I}}}}; got {value[:200]!r}') from None


def _tf_task_index():
    """This worker's place among `_tf_workers()` (a "chief" task, when named, is process 0)."""
    config = json.loads(os.environ["TF_CONFIG"])
    task = config.get("task", {})
    offset = len(config["cluster"].get("chief", [])) if task.get("type") == "worker" else 0
    return offset + int(task.get("index", 0))


def _tf_multi_worker():
    """tf.distribute.MultiWorkerMirroredStrategy from TF_CONFIG: made once per process, before
    TensorFlow runs anything else (its collectives are configured at start-up)."""
    import tensorflow as tf

    if _TF_MULTI_WORKER:
        return _TF_MULTI_WORKER[0]
    timeout = join_timeout()
    # Making the strategy waits for every worker of TF_CONFIG without a deadline of its own;
    # after that, a collective some worker never joins fails after `timeout` seconds.
    workers = ", ".join(_tf_workers())
    with _watchdog(timeout, _peer_error("TensorFlow", f"not every worker of TF_CONFIG ({workers}) "
                                          "answered", timeout)):
        try:
            options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
            strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
            _TF_MULTI_WORKER.append(strategy)
            barrier("join")      # the first collective: every worker is there
        except (RuntimeError, ValueError, tf.errors.OpError) as error:
            _TF_MULTI_WORKER.clear()
            raise _peer_error("TensorFlow", error, timeout) from None
    return strategy


def _keras_mean_over_workers():
    """Keras 3.15's TensorFlow trainer averages each log (loss, metrics) over a
    MultiWorkerMirroredStrategy's workers with strategy.reduce("MEAN", v, axis=0), which fails
    for the scalar logs it always has (tensorflow/tensorflow#72388, open upstream); average them
    elementwise over the replicas instead (axis=None), as it does on one machine."""
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    keras_reduce = trainer.reduce_per_replica
    if getattr(keras_reduce, "kdl", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    reduce_per_replica.kdl = True
    trainer.reduce_per_replica = reduce_per_replica


def _tf_plan(mode, model_axis):
    import tensorflow as tf

    if mode == "model_parallel":
        raise BackendError("train.distribute='model_parallel' needs the jax backend "
                           "(keras.distribution.ModelParallel); on tensorflow use data_parallel or tpu")
    if mode == "tpu":
        strategy = _tpu_strategy()
        replicas = strategy.num_replicas_in_sync
        return Plan("tpu", replicas, strategy.scope, top_up=replicas)
    if _TF_MULTI_WORKER:
        strategy = _TF_MULTI_WORKER[0]
        _keras_mean_over_workers()
        replicas = strategy.num_replicas_in_sync
        index, count = world()
        local = replicas // count

        def feed(batches):     # each worker's slice, split between its own replicas
            parts = _per_replica(_collective_dtypes(batches), local)
            distributed = strategy.distribute_datasets_from_function(lambda context: parts)
            distributed.kdl_local = parts
            return distributed

        def before_fit(model, batches):
            # Keras' TensorFlow trainer learns the input shapes before fit and evaluate by
            # averaging a first batch over the replicas with strategy.reduce, which
            # MultiWorkerMirroredStrategy refuses for an (inputs, labels) tuple (Keras 3.15).
            # Build from the pipeline's shapes in every worker instead (in the strategy's scope;
            # reading a batch would advance the shuffle by an epoch).
            with strategy.scope():
                model._symbolic_build(data_batch=batches.kdl_local.element_spec)
            model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None

        # model.fit runs outside the strategy's scope (Keras trains with the strategy the model
        # was built under): a variable process 0 alone makes while saving stays its own.
        return Plan("data_parallel", replicas, strategy.scope, top_up=replicas, process_index=index,
                    process_count=count, shard=(index, count), feed=feed,
                    fit_context=contextlib.nullcontext, before_fit=before_fit)
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    if mode == "auto" and len(devices) < 2:
        return Plan()
    if len(devices) < 2:
        names = [f"{d.device_type.lower()}:{i}" for i, d in enumerate(devices)]
        raise _not_enough(mode, names, "On CPUs, tf.config.set_logical_device_configuration "
                                       "splits one CPU into several logical devices.")
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
    return Plan("data_parallel", strategy.num_replicas_in_sync, strategy.scope)


def _tpu_strategy():
    import tensorflow as tf

    if not _TPU_STRATEGY:     # the TPU system is initialised once per process
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
                tpu=os.environ.get("TPU_NAME", "local"))
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            raise BackendError(f"train.distribute='tpu': TensorFlow found no TPU ({error}); "
                               "run on a Cloud TPU VM (docs/tpu.md)") from None
        _TPU_STRATEGY.append(tf.distribute.TPUStrategy(resolver))
    return _TPU_STRATEGY[0]


def _tf_gather(array):
    import tensorflow as tf

    strategy = _TF_MULTI_WORKER[0]
    local = strategy.num_replicas_in_sync // len(_tf_workers())
    sent = array.astype(np.int32) if array.dtype == np.uint8 else array    # gather takes no uint8
    values = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(sent[None]))
    rows = strategy.gather(values, axis=0).numpy().astype(array.dtype)
    return rows[::local]     # every local replica carried this worker's value: keep one each


# -- PyTorch: torchrun + torch.distributed --------------------------------------------------
def _torch_initialize():
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        timeout = join_timeout()
        try:
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                                    timeout=datetime.timedelta(seconds=timeout))
        except (RuntimeError, ValueError) as error:
            raise _peer_error("PyTorch", error, timeout) from None


def _torch_plan(mode, model_axis):
    import torch

    if mode in ("model_parallel", "tpu"):
        raise BackendError(f"train.distribute={mode!r} needs the jax backend"
                           f"{' or tensorflow' if mode == 'tpu' else ''}; on torch use data_parallel "
                           "under torchrun")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size < 2:
        if mode == "auto":
            return Plan()
        raise ConfigError(
            f"train.distribute={mode!r} on torch runs one process per device under torchrun: "
            f"torchrun --nproc_per_node N -m kdl train RECIPE --distribute data_parallel "
            f"(this process is alone: WORLD_SIZE={os.environ.get('WORLD_SIZE', 'unset')}; "
            f"torch sees {torch.cuda.device_count()} CUDA device(s))")
    import torch.distributed as dist

    _torch_initialize()
    rank = dist.get_rank()
    return Plan("data_parallel", world_size, top_up=world_size, process_index=rank,
                process_count=world_size, shard=(rank, world_size), prepare=_torch_sync_gradients,
                local_logs=True)


def _torch_sync_gradients(model):
    """Start every process from rank 0's weights and average each gradient over the processes
    as backward() produces it (DistributedDataParallel's all-reduce, one tensor at a time)."""
    import torch
    import torch.distributed as dist

    world_size = dist.get_world_size()

    def average(gradient):
        gradient = gradient.clone()
        dist.all_reduce(gradient)
        return gradient / world_size

    with torch.no_grad():
        for variable in model.weights:
            dist.broadcast(variable.value.data, src=0)
    for variable in model.trainable_weights:
        variable.value.register_hook(average)


def _torch_gather(array):
    import torch
    import torch.distributed as dist

    rows = [torch.zeros(array.shape, dtype=torch.from_numpy(array).dtype)
            for _ in range(dist.get_world_size())]
    dist.all_gather(rows, torch.from_numpy(np.ascontiguousarray(array)))
    return np.stack([row.numpy() for row in rows])


# -- tf.data helpers --------------------------------------------------------------------------
def _top_up(batches, multiple):
    """Each batch grown to a multiple of `multiple` rows by repeating its first rows."""
    import tensorflow as tf

    def grow(*batch):
        size = tf.shape(tf.nest.flatten(batch)[0])[0]
        index = tf.range((size + multiple - 1) // multiple * multiple) % size
        grown = tf.cond(size % multiple == 0, lambda: batch,
                        lambda: tf.nest.map_structure(lambda t: tf.gather(t, index), batch))
        return grown if len(batch) > 1 else grown[0]

    return batches.map(grow).prefetch(tf.data.AUTOTUNE)


def _slice(batches, index, count):
    """This process's rows of every (grown) global batch: slice `index` of `count`."""
    import tensorflow as tf

    def take(*batch):
        share = tf.shape(tf.nest.flatten(batch)[0])[0] // count
        part = tf.nest.map_structure(lambda t: t[index * share:(index + 1) * share], batch)
        return part if len(batch) > 1 else part[0]

    return batches.map(take).prefetch(tf.data.AUTOTUNE)


def _collective_dtypes(batches):
    """Narrow integer inputs (uint8 images) widened to int32, exactly: Keras' TensorFlow trainer
    averages a first batch over the workers to learn its shapes, and the collective takes only
    float16/32/64 and int32/64. The models cast their inputs to their own dtype anyway."""
    import tensorflow as tf

    narrow = (tf.uint8, tf.int8, tf.uint16, tf.int16, tf.bool)
    if not any(spec.dtype in narrow for spec in tf.nest.flatten(batches.element_spec)):
        return batches
    return batches.map(lambda *batch: tf.nest.map_structure(
        lambda t: tf.cast(t, tf.int32) if t.dtype in narrow else t, batch if len(batch) > 1 else batch[0]))


def _per_replica(batches, replicas):
    """Every batch as `replicas` consecutive equal batches, one for each of this worker's
    replicas (tf.distribute hands a worker's batches to its replicas in turn)."""
    if replicas == 1:
        return batches
    import tensorflow as tf

    def split(*batch):
        parts = [_slice(tf.data.Dataset.from_tensors(batch if len(batch) > 1 else batch[0]), k, replicas)
                 for k in range(replicas)]
        joined = parts[0]
        for part in parts[1:]:
            joined = joined.concatenate(part)
        return joined

    return batches.flat_map(split)
