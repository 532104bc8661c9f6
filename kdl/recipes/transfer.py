"""Where a recipe's backbone comes from (`[model] backbone = ...`): new, a kdl run, or a keras-hub preset.

- "" (the default): a new `model.name` model, as `build_model` makes it.
- a kdl run directory: that run's trained model up to its head (`transfer_features`), with a
  new softmax head for this recipe's classes; the run's learned vocabulary comes with it.
- "hub:NAME" (downloaded by keras-hub on a connected machine) or a local keras-hub preset
  folder: the task's `build_from_preset` hook, with the preset's own preprocessing inside.

How the backbone then trains (frozen epochs, a lower learning rate) is `kdl.finetune`.

>>> base = kdl.recipes.image_classifier(x, y, classes=["0", "1"])        # doctest: +SKIP
>>> base.fit(out="runs/base")                                           # doctest: +SKIP
>>> tuned = kdl.recipes.image_classifier(x2, y2, backbone="runs/base", freeze_epochs=2)  # doctest: +SKIP
"""

import pathlib

import keras
from keras import layers

from kdl.data.io import search_roots
from kdl.errors import ConfigError

HUB_PREFIX = "hub:"
PRESET_FILES = ("config.json", "metadata.json")    # what keras-hub's save_to_preset writes


def build(recipe, build_new):
    """The recipe's new model: `build_new()` when `model.backbone` is empty, else a model whose
    backbone comes from the run or preset it names."""
    spec = recipe.config.model.backbone
    if not spec:
        return build_new()
    kind, where = locate(spec, recipe.data_root)
    if kind == "preset":
        return recipe.build_from_preset(where)
    return from_run(recipe, where)


def locate(spec, data_root=None):
    """("run", path) for a kdl run directory, ("preset", name or folder) for a keras-hub preset;
    a ConfigError naming the field for anything else. Relative folders are looked up as given,
    then under `data_root` / $KDL_DATA."""
    if not isinstance(spec, str):
        raise ConfigError(f"model.backbone must be a string (a run directory, \"hub:NAME\" or a "
                          f"preset folder); got {type(spec).__name__} {spec!r}")
    if spec.startswith(HUB_PREFIX):
        name = spec[len(HUB_PREFIX):]
        if not name:
            raise ConfigError('model.backbone "hub:" names no preset; e.g. "hub:resnet_18_imagenet"')
        return "preset", name
    for root in search_roots(data_root):      # the data layer's lookup order for relative paths
        folder = root / pathlib.Path(spec).expanduser()
        if (folder / "recipe.toml").is_file():
            return "run", folder
        if all((folder / name).is_file() for name in PRESET_FILES):
            return "preset", str(folder)
        if folder.is_dir():
            raise ConfigError(f"model.backbone {spec!r}: {folder} is neither a kdl run directory "
                              f"(recipe.toml) nor a keras-hub preset folder ({', '.join(PRESET_FILES)})")
    raise ConfigError(f"model.backbone {spec!r}: no such run directory or preset folder; give a kdl "
                      'run directory, a keras-hub preset folder, or "hub:NAME" for a keras-hub preset')


def from_run(recipe, folder):
    """`recipe`'s model: the trained model of the run in `folder` up to its head, then a new
    softmax head for `recipe`'s classes. The run's learned vocabularies (a text tokenizer) are
    given to `recipe`, so its data is encoded as the backbone learned it."""
    from kdl.recipes.recipe import load

    source = load(folder)
    features = source.transfer_features()
    if source.modality != recipe.modality or features is None:
        usable = "" if features is not None else f", and a {source.task} model is not a backbone"
        raise ConfigError(f"model.backbone {str(folder)!r} is a {source.task} run ({source.modality} "
                          f"inputs{usable}); a {recipe.task} can start from a run of a {recipe.modality} "
                          "classifier or language model")
    for name in recipe.learned:                 # the vocabulary the backbone's embedding was trained on
        recipe.__dict__[name] = getattr(source, name)
    for name in recipe.backbone_fields:         # how that vocabulary encodes a text
        setattr(recipe.config.data, name, getattr(source.config.data, name))
    _take_model_section(recipe.config.model, source.config.model, folder)
    mismatch = _input_mismatch(recipe.data.info, source)
    if mismatch:
        raise ConfigError(f"model.backbone {str(folder)!r}: {mismatch}")
    inputs = source.transfer_inputs()
    outputs = layers.Dense(len(recipe.class_names), activation="softmax", dtype="float32",
                           name="probabilities")(features)            # (B, classes)
    return keras.Model(inputs, outputs, name=f"{recipe.task}_from_{source.model.name}")


def _take_model_section(model, source, folder):
    """The backbone run's architecture (model name, options, augmentation layers) is this model's:
    the config records it. A field this recipe set to something else is a ConfigError."""
    defaults = type(model)()
    for name in ("name", "options", "augment"):
        if not hasattr(model, name) or not hasattr(source, name):
            continue
        mine, theirs = getattr(model, name), getattr(source, name)
        if mine != theirs and mine != getattr(defaults, name):
            raise ConfigError(f"model.{name} = {mine!r}, but the backbone run {str(folder)!r} has "
                              f"{theirs!r}: a backbone comes with its architecture and augmentation; "
                              f"leave model.{name} out of this recipe")
        setattr(model, name, theirs)


def _input_mismatch(info, source):
    """How this recipe's data differs from what the backbone run's model takes, or None."""
    expected = tuple(source.model.input_shape[1:])
    if info.image_shape is not None and tuple(info.image_shape) != expected:
        return (f"its model takes images of {expected} (height, width, channels) but this recipe's data "
                f"gives {tuple(info.image_shape)}; set data.image_size = {list(expected[:2])} (a grey/RGB "
                "difference needs images of the backbone's kind)")
    rate = getattr(source.config.data, "sample_rate", None)
    if info.sample_rate is not None and (info.sample_rate, info.num_samples) != (rate, expected[0]):
        return (f"its model takes {expected[0]} samples at {rate} Hz but this recipe's data gives "
                f"{info.num_samples} at {info.sample_rate} Hz; set data.sample_rate and data.max_seconds "
                "as the backbone run has them")
    return None
