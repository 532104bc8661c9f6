"""Multi-device and TPU training through each backend's own engine, and mixed precision.

Every recipe has `train.distribute` and `train.precision`; `Recipe.fit` builds, compiles and
trains the model inside `scope(distribute, precision)`, a no-op for "single" and "fp32".

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

Multi-host JAX (a TPU pod slice, several GPU hosts): the same command on every host; kdl calls
`keras.distribution.initialize()` when `KERAS_DISTRIBUTION_NUM_PROCESSES` (or
`KERAS_DISTRIBUTION_JOB_ADDRESSES`) is set. Process 0 writes the run directory; the others log
into RUN/worker-K. See docs/tpu.md.

precision: "fp32", "bf16" (Keras' "mixed_bfloat16": bfloat16 maths, float32 weights) or "fp16"
("mixed_float16"; `model.compile` then wraps the optimizer in a LossScaleOptimizer). The policy
is set while the model is built and trained and put back afterwards; model heads stay float32.

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

import contextlib
import os
import pathlib

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
                 process_index=0, process_count=1, shard=None, prepare=None):
        self.mode, self.replicas, self.context = mode, replicas, context
        self.top_up = top_up                # the global batch must be a multiple of this
        self.process_index, self.process_count = process_index, process_count
        self._shard = shard                 # (index, count): this process reads one slice
        self._prepare = prepare             # model -> None, after the model is built
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
        """The batched tf.data pipeline as this process should read it."""
        if self.top_up > 1:
            batches = _top_up(batches, self.top_up)
        if self._shard:
            batches = _slice(batches, *self._shard)
        return batches

    def run_dir(self, out):
        """Where this process logs: `out` for the chief, `out/worker-K` for the others."""
        if out is None or self.chief:
            return out
        return pathlib.Path(out) / f"worker-{self.process_index}"

    def __repr__(self):
        return (f"<Plan {self.mode} replicas={self.replicas} "
                f"process={self.process_index}/{self.process_count}>")


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
    (`kdl train` does). A no-op in a single process."""
    mode, _ = check(distribute)
    if mode == "single":
        return
    name = backend.name()
    if name == "jax" and _multi_host():
        _jax_initialize()
    elif name == "torch" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _torch_initialize()


def is_chief():
    """True unless this is a non-zero process of a multi-process run."""
    name = backend.name()
    if name == "jax" and _multi_host():
        import jax

        return jax.process_index() == 0
    if name == "torch":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    return True


def _not_enough(mode, devices, fix):
    return ConfigError(f"train.distribute={mode!r} needs at least 2 devices on the "
                       f"{backend.name()} backend; found {len(devices)}: {', '.join(devices)}. {fix}")


# -- JAX: keras.distribution ----------------------------------------------------------------
_JAX_INITIALIZED = []


def _multi_host():
    return any(os.environ.get(v) for v in ("KERAS_DISTRIBUTION_NUM_PROCESSES",
                                           "KERAS_DISTRIBUTION_JOB_ADDRESSES"))


def _jax_initialize():
    import keras

    if not _JAX_INITIALIZED:
        try:
            keras.distribution.initialize()
        except (RuntimeError, ValueError) as error:
            raise BackendError(f"could not join the multi-host JAX run "
                               f"(keras.distribution.initialize): {error}") from None
        _JAX_INITIALIZED.append(True)


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
    if mode in ("data_parallel", "tpu"):
        distribution = keras.distribution.DataParallel(devices=devices)
        batch_axis = len(devices)
    else:
        if len(devices) % model_axis:
            raise ConfigError(f"train.distribute='model_parallel:{model_axis}': {len(devices)} "
                              f"devices do not split into a model axis of {model_axis}")
        batch_axis = len(devices) // model_axis
        mesh = keras.distribution.DeviceMesh((batch_axis, model_axis), ("batch", "model"), devices)
        distribution = _model_parallel(transformer_layout_map(mesh))
        mode = f"model_parallel:{model_axis}"
    return Plan(mode, len(devices), distribution.scope, top_up=batch_axis,
                process_index=jax.process_index(), process_count=jax.process_count())


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


# -- TensorFlow: tf.distribute --------------------------------------------------------------
_TPU_STRATEGY = []


def _tf_plan(mode, model_axis):
    import tensorflow as tf

    if mode == "model_parallel":
        raise BackendError("train.distribute='model_parallel' needs the jax backend "
                           "(keras.distribution.ModelParallel); on tensorflow use data_parallel or tpu")
    if mode == "tpu":
        strategy = _tpu_strategy()
        replicas = strategy.num_replicas_in_sync
        return Plan("tpu", replicas, strategy.scope, top_up=replicas)
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


# -- PyTorch: torchrun + torch.distributed --------------------------------------------------
def _torch_initialize():
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def _torch_plan(mode, model_axis):
    import torch

    if mode in ("model_parallel", "tpu"):
        raise BackendError(f"train.distribute={mode!r} needs the jax backend"
                           f"{' or tensorflow' if mode == 'tpu' else ''}; on torch use data_parallel "
                           "under torchrun")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 2:
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
    return Plan("data_parallel", world, top_up=world, process_index=rank, process_count=world,
                shard=(rank, world), prepare=_torch_sync_gradients)


def _torch_sync_gradients(model):
    """Start every process from rank 0's weights and average each gradient over the processes
    as backward() produces it (DistributedDataParallel's all-reduce, one tensor at a time)."""
    import torch
    import torch.distributed as dist

    world = dist.get_world_size()

    def average(gradient):
        gradient = gradient.clone()
        dist.all_reduce(gradient)
        return gradient / world

    with torch.no_grad():
        for variable in model.weights:
            dist.broadcast(variable.value.data, src=0)
    for variable in model.trainable_weights:
        variable.value.register_hook(average)


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
