"""Transfer learning from a kdl run (kdl.recipes.transfer) and the fine-tuning schedule
(kdl.finetune): a run's backbone under a new head for other classes, frozen epochs that leave
it bit-identical, a lower backbone learning rate after, the same predictions on every backend,
and clear errors for backbones that cannot serve. Presets are tests/test_presets.py."""

import keras
import numpy as np
import pytest
from harness import predict_on_backends

import kdl
from kdl import finetune
from kdl.errors import ConfigError

BACKENDS = ("jax", "tensorflow", "torch")
TINY_RESNET = dict(stages=1, blocks=1, width=8)     # has BatchNormalization layers


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A resnet trained on scikit-learn's digits 0-4, saved."""
    recipe = kdl.recipes.image_classifier("digits", "resnet", classes=["0", "1", "2", "3", "4"],
                                          epochs=5, batch_size=32, **TINY_RESNET)
    recipe.fit(verbose=0)
    return recipe.save(tmp_path_factory.mktemp("transfer") / "digits_0to4")


class Weights(keras.callbacks.Callback):
    """Every weight of the model by path, at the start and after each epoch."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def snapshot(self):
        return {v.path: keras.ops.convert_to_numpy(v.value).copy() for v in self.model.weights}

    def on_train_begin(self, logs=None):
        self.start = self.snapshot()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(self.snapshot())


def test_frozen_epochs_move_only_the_head_then_the_backbone_learns(base_run, tmp_path):
    tuned = kdl.recipes.image_classifier("digits", backbone=str(base_run), classes=["5", "6", "7", "8", "9"],
                                         per_class=40, epochs=4, freeze_epochs=2, backbone_lr_mult=0.5,
                                         learning_rate=1e-2, batch_size=16)
    weights = Weights()
    tuned.fit(verbose=0, callbacks=[weights])
    source = kdl.recipes.load(base_run).model
    pretrained = {v.path: keras.ops.convert_to_numpy(v.value) for v in source.weights}
    head = {path for path in weights.start if path.startswith(finetune.HEAD + "/")}
    backbone = set(weights.start) - head
    assert backbone and backbone <= set(pretrained)                 # the run's own layers, its weights
    assert all(np.array_equal(weights.start[p], pretrained[p]) for p in backbone)
    for epoch in weights.epochs[:2]:                           # frozen: bit-identical, BN statistics too
        assert all(np.array_equal(epoch[p], weights.start[p]) for p in backbone)
        assert not all(np.array_equal(epoch[p], weights.start[p]) for p in head)
    moving = [p for p in backbone if "moving" in p]
    assert moving and all(np.array_equal(weights.epochs[-1][p], weights.start[p]) for p in moving)
    learned = [p for p in backbone if not np.array_equal(weights.epochs[-1][p], weights.start[p])]
    assert learned, "after the frozen epochs the backbone must learn"
    assert tuned.evaluate().meta["split"] == "test" and tuned.class_names == ["5", "6", "7", "8", "9"]

    run = tuned.save(tmp_path / "digits_5to9")
    loaded = kdl.recipes.load(run)
    assert loaded.config.model.backbone == str(base_run)
    images = np.stack([x for x, _ in tuned.data.splits["test"].take(3).as_numpy_iterator()])
    mine = loaded.predict(images).outputs
    others = [name for name in BACKENDS if name != kdl.backend.name()]
    for name, (outputs, _) in predict_on_backends(run, images, others, tmp_path).items():
        np.testing.assert_allclose(outputs, mine, atol=1e-5, err_msg=name)


def test_discriminative_learning_rate_for_every_optimizer(base_run):
    """Adam, AdamW (decoupled weight decay) and SGD with momentum: frozen means unchanged."""
    for optimizer in ("adam", "adamw", "sgd"):
        tuned = kdl.recipes.image_classifier("digits", backbone=str(base_run), classes=["5", "6"], limit=64,
                                             epochs=2, freeze_epochs=1, optimizer=optimizer, batch_size=32)
        weights = Weights()
        tuned.fit(verbose=0, callbacks=[weights])
        frozen, after = weights.epochs
        changed = [p for p in weights.start if not np.array_equal(frozen[p], weights.start[p])]
        assert changed and all(p.startswith(finetune.HEAD + "/") for p in changed), optimizer
        assert any(not np.array_equal(after[p], weights.start[p])
                   for p in weights.start if not p.startswith(finetune.HEAD)), optimizer


def test_bad_backbones_are_clear_errors(base_run, tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("not a run")
    cases = [
        (dict(backbone=str(tmp_path / "missing")), "no such run directory or preset folder"),
        (dict(backbone=str(tmp_path / "plain")), "neither a kdl run directory"),
        (dict(backbone="hub:"), "names no preset"),
    ]
    for options, message in cases:
        with pytest.raises(ConfigError, match=message):
            kdl.recipes.image_classifier("digits", limit=50, **options).build_model()
    texts = kdl.recipes.text_classifier((["good film", "bad film"] * 10, [1, 0] * 10), "fasttext",
                                        epochs=1, embedding=4, validation_split=0.0)
    texts.fit(verbose=0)
    text_run = texts.save(tmp_path / "text_run")
    with pytest.raises(ConfigError, match="is a text_classifier run .text inputs.; a image_classifier"):
        kdl.recipes.image_classifier("digits", limit=50, backbone=str(text_run)).build_model()
    with pytest.raises(ConfigError, match=r"model.options = \{'filters': \[4\]\}, but the backbone run"):
        kdl.recipes.image_classifier("digits", limit=50, backbone=str(base_run), filters=[4]).build_model()
    other = np.random.default_rng(0).uniform(0, 255, (40, 10, 10)).astype("float32")
    with pytest.raises(ConfigError, match=r"takes images of \(8, 8, 1\).*data.image_size = \[8, 8\]"):
        kdl.recipes.image_classifier((other, np.arange(40) % 2), backbone=str(base_run)).build_model()


def test_fine_tuning_needs_a_classifier_head():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(inputs))
    train = kdl.recipes.TrainConfig(freeze_epochs=1)
    with pytest.raises(ConfigError, match="apply to classifiers"):
        finetune.prepare(model, keras.optimizers.Adam(), train, steps_per_epoch=10)
    optimizer = keras.optimizers.Adam()
    assert finetune.prepare(model, optimizer, kdl.recipes.TrainConfig(), 10) is optimizer
