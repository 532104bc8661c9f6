"""Fine-tuning a backbone: the first `train.freeze_epochs` epochs train only the head, then the
backbone learns at `learning_rate x train.backbone_lr_mult` while the head keeps `learning_rate`
(discriminative learning rates, as fastai's `fine_tune(freeze_epochs=..., lr_mult=...)`).

The head is the classifier's last layer ("probabilities"); the backbone is everything before
it. While frozen, the backbone's weights stay bit-identical: its learning rate (and weight
decay) is multiplied by 0. With `freeze_epochs`, the backbone's BatchNormalization layers stay
in inference mode for the whole run (their statistics are the pretraining data's), as Keras'
transfer-learning guide advises: a small labelled set would otherwise overwrite them.

Keras optimizers have one learning rate. `fine_tuning(optimizer, ...)` returns the same optimizer
class with a per-group rate, set where every backend's optimizer step passes (the per-variable
update of JAX and PyTorch, TensorFlow's distributed update), so it works with mixed precision
(LossScaleOptimizer wraps it) and kdl.distribute's strategies. The step count decides frozen
or not, so a resumed run (its optimizer's `iterations` restored) picks up where it was.

>>> import keras
>>> adam = keras.optimizers.Adam(1e-3)
>>> opt = fine_tuning(adam, model, freeze_steps=100, backbone_mult=0.1)     # doctest: +SKIP
"""

from keras import layers, ops

from kdl.errors import ConfigError

HEAD = "probabilities"      # the layer that stays trainable and keeps the full learning rate
_CLASSES = {}               # Keras optimizer class -> its fine-tuning subclass


def active(train):
    """Whether `train` (a TrainConfig) asks for anything but one learning rate for every weight."""
    return train.freeze_epochs > 0 or train.backbone_lr_mult != 1


def prepare(model, optimizer, train, steps_per_epoch):
    """The optimizer to compile `model` with for `train`: `optimizer` itself unless `active`;
    else its fine-tuning version, and the backbone's BatchNormalization layers set to inference
    mode when epochs are frozen. A model without a classifier head is a ConfigError."""
    if not active(train):
        return optimizer
    names = [layer.name for layer in model.layers]
    if HEAD not in names:
        raise ConfigError(f"train.freeze_epochs and train.backbone_lr_mult apply to classifiers (a model "
                          f"whose head is the {HEAD!r} layer); model {model.name!r} has none: leave them "
                          "at 0 and 1")
    if train.freeze_epochs:
        for layer in model._flatten_layers(include_self=False):
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
    return fine_tuning(optimizer, model, train.freeze_epochs * steps_per_epoch, train.backbone_lr_mult)


def fine_tuning(optimizer, model, freeze_steps, backbone_mult):
    """A new optimizer of `optimizer`'s class and config whose updates of `model`'s backbone
    variables (all but the head's) use learning rate x 0 for the first `freeze_steps` steps,
    then x `backbone_mult`."""
    base = type(optimizer)
    if base not in _CLASSES:
        _CLASSES[base] = type(f"FineTuning{base.__name__}", (_FineTuning, base), {})
    tuned = _CLASSES[base].from_config(optimizer.get_config())
    tuned.head_paths = frozenset(v.path for v in model.get_layer(HEAD).trainable_variables)
    tuned.freeze_steps, tuned.backbone_mult = int(freeze_steps), float(backbone_mult)
    return tuned


class _FineTuning:
    """Mixed in before a Keras optimizer class: two groups of variables, two learning rates."""

    head_paths, freeze_steps, backbone_mult = frozenset(), 0, 1.0

    def _multiplier(self):
        """0 while frozen, else backbone_mult: a float32 scalar (traced with the train step)."""
        frozen = ops.less(self.iterations, self.freeze_steps)
        return ops.where(frozen, 0.0, self.backbone_mult)

    def _split(self, variables, *paired):
        """(head, backbone): each a list of (variable, *paired items) in the original order."""
        rows = list(zip(variables, *paired))
        head = [row for row in rows if row[0].path in self.head_paths]
        return head, [row for row in rows if row[0].path not in self.head_paths]

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        head, backbone = self._split(trainable_variables, grads)
        for rows, rate in ((head, learning_rate), (backbone, learning_rate * self._multiplier())):
            if rows:
                variables, gradients = zip(*rows)
                super()._backend_update_step(list(gradients), list(variables), rate)

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None:
            return
        head, backbone = self._split(variables)
        super()._apply_weight_decay([v for v, in head])
        decay = self.weight_decay
        self.weight_decay = decay * self._multiplier()      # read once per variable, below
        try:
            super()._apply_weight_decay([v for v, in backbone])
        finally:
            self.weight_decay = decay
