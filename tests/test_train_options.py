"""`[train] weight_decay` and `ema` on the active backend: decay shrinks the weights the same run
learns without it; with `ema` a run ends on the optimizer's moving average of its weights (not the
last step's), and the saved run holds that average."""

import keras
import numpy as np
import pytest

import kdl


def _squared_norm(model):
    return sum(float(np.sum(np.square(np.asarray(w)))) for w in model.trainable_weights)


def _digits(**train):
    return kdl.recipes.image_classifier(epochs=2, filters=[8], learning_rate=3e-3, **train)


def test_weight_decay_shrinks_the_weights_and_still_learns():
    plain, decayed = _digits(), _digits(weight_decay=5.0)   # x lr 3e-3: 1.5% shrink per step
    for recipe in (plain, decayed):
        recipe.fit(verbose=0)
    assert _squared_norm(decayed.model) < 0.8 * _squared_norm(plain.model)
    assert decayed.model.optimizer.weight_decay == pytest.approx(5.0)
    assert decayed.evaluate()["accuracy"] > 0.5          # decay, not a model that forgot everything


def test_ema_ends_on_the_moving_average_and_the_saved_run_keeps_it(tmp_path):
    recipe = _digits(ema=0.9)
    recipe.fit(out=tmp_path / "run", verbose=0)
    averages = recipe.model.optimizer._model_variables_moving_average     # Keras' EMA slots
    for weight, average in zip(recipe.model.trainable_weights, averages):
        np.testing.assert_array_equal(np.asarray(weight), np.asarray(average))
    checkpoint = keras.saving.load_model(tmp_path / "run" / "checkpoint.keras", compile=False)
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))      # the last epoch's raw weights
               for a, b in zip(checkpoint.trainable_weights, recipe.model.trainable_weights))
    assert recipe.evaluate()["accuracy"] > 0.5    # evaluate, then save: as `kdl train` does
    recipe.save(tmp_path / "run")
    images = np.stack([image for image, _ in recipe.data.splits["test"].take(16).as_numpy_iterator()])
    again = kdl.recipes.load(tmp_path / "run")
    np.testing.assert_allclose(again.model.predict(images, verbose=0),
                               recipe.model.predict(images, verbose=0), atol=1e-6)


@pytest.mark.parametrize("field, value, expected", [
    ("ema", 1.0, "train.ema must be less than 1; got 1.0"),
    ("weight_decay", -0.1, "train.weight_decay must be at least 0; got -0.1"),
])
def test_out_of_range_values_are_clear_errors(field, value, expected):
    with pytest.raises(kdl.errors.ConfigError, match=expected):
        kdl.recipes.image_classifier(**{field: value})


def test_an_average_longer_than_the_run_is_a_warning_naming_a_fitting_value():
    recipe = kdl.recipes.image_classifier(epochs=1, filters=[8], ema=0.999)     # about 45 steps
    with pytest.warns(kdl.errors.KdlWarning, match=r"train.ema = 0.999 averages over about 1000 steps, "
                                                   r"but the run takes \d+: .* \(at most 0\.9\d"):
        recipe.fit(verbose=0)
