"""Mixed precision (`train.precision`) on the active backend: bf16 trains the digits recipe to
the accuracy float32 reaches, fp16 gets Keras' loss scaling, and the global dtype policy is put
back after fit, so other recipes in the process still build in float32."""

import keras
import pytest

import kdl


def test_bf16_digits_reaches_93_percent():
    recipe = kdl.recipes.image_classifier(precision="bf16", epochs=5, filters=[16],
                                          learning_rate=5e-3)
    recipe.fit(verbose=0)
    conv = next(layer for layer in recipe.model.layers if "conv" in layer.name)
    assert conv.dtype_policy.name == "mixed_bfloat16"
    assert conv.kernel.dtype == "float32"                      # weights stay float32
    assert recipe.model.layers[-1].dtype_policy.name == "float32"   # the softmax head
    assert keras.config.dtype_policy().name == "float32"       # not leaked to the process
    assert kdl.recipes.image_classifier().build_model().layers[2].dtype_policy.name == "float32"
    assert recipe.evaluate()["accuracy"] >= 0.93


def test_fp16_wraps_the_optimizer_in_loss_scaling():
    from kdl import distribute

    recipe = kdl.recipes.image_classifier(precision="fp16", limit=64, filters=[8])
    with distribute.scope("single", "fp16"):
        recipe.model = recipe.build_model()
        recipe.compile_model(recipe.make_optimizer(10))
    assert recipe.model.dtype_policy.name == "mixed_float16"
    assert isinstance(recipe.model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_policy_is_restored_when_fit_fails():
    recipe = kdl.recipes.image_classifier(precision="bf16", epochs=1, limit=64, optimizer="nope")
    with pytest.raises(kdl.errors.ConfigError):
        recipe.fit(verbose=0)
    assert keras.config.dtype_policy().name == "float32"
