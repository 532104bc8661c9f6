"""Recipe configs: TOML round trip, overrides, bounds, and clear errors for unknown or mistyped fields."""

import dataclasses
import inspect
import pathlib

import pytest

import kdl
from kdl import config as configs
from kdl.errors import ConfigError
from kdl.recipes.image_classifier import ImageClassifierConfig

RECIPE_FILES = sorted((pathlib.Path(__file__).parents[1] / "recipes").rglob("*.toml"))


def test_toml_round_trip_keeps_every_field():
    config = ImageClassifierConfig()
    config.data.image_size = [16, 16]
    config.model.options = {"filters": [8, 16]}
    text = configs.to_toml(config, header="a header line")
    assert text.startswith("# a header line\n")
    assert configs.from_toml(ImageClassifierConfig, text) == config


def test_override_parses_toml_values():
    config = ImageClassifierConfig()
    config = configs.override(config, "train.epochs=3")
    config = configs.override(config, "train.learning_rate=1e-2")
    config = configs.override(config, "model.options.filters=[8, 16]")
    config = configs.override(config, "data.source=fashion-mnist")   # a bare word is a string
    assert config.train.epochs == 3 and config.train.learning_rate == 0.01
    assert config.model.options == {"filters": [8, 16]}
    assert config.data.source == "fashion-mnist"


@pytest.mark.parametrize("assignment, message", [
    ("train.epoch=3", "unknown setting 'train.epoch'; did you mean 'epochs'"),
    ("train.epochs=three", r"train.epochs: expected int, got 'three' \(str\)"),
    ("epochs", "expected section.field=value"),
    ("train.epochs.x=1", "'epochs' has no sub-settings"),
])
def test_bad_override_is_a_clear_error(assignment, message):
    with pytest.raises(ConfigError, match=message):
        configs.override(ImageClassifierConfig(), assignment)


def test_bad_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('task = "image_classifier"\n[train]\nepochs = "ten"\n')
    with pytest.raises(ConfigError, match=r"bad.toml: train: epochs: expected int, got 'ten'"):
        kdl.recipes.load(path)
    path.write_text('task = "image_classifer"\n')
    with pytest.raises(ConfigError, match="unknown task 'image_classifer'; did you mean 'image_classifier'"
                                          ".*Known tasks: .*text_classifier"):
        kdl.recipes.load(path)
    path.write_text('task = [\n')
    with pytest.raises(ConfigError, match="not a valid TOML recipe"):
        kdl.recipes.load(path)


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: p.name)
def test_recipe_files_parse_and_say_how_to_run_them(path):
    recipe = kdl.recipes.load(path)
    header = path.read_text().split("\n\n")[0]
    assert "# Run:" in header and "kdl train recipes/" in header and "# Expect:" in header
    assert configs.from_toml(type(recipe.config), configs.to_toml(recipe.config)) == recipe.config


def test_keyword_overrides_route_to_their_section():
    recipe = kdl.recipes.image_classifier(epochs=2, batch_size=16, filters=[8], augment=["zoom"])
    config = recipe.config
    assert (config.train.epochs, config.data.batch_size) == (2, 16)
    assert config.model.options == {"filters": [8]} and config.model.augment == ["zoom"]
    with pytest.raises(ConfigError, match="model 'cnn' has no option 'blocks'.*filters="):
        kdl.recipes.image_classifier(blocks=3)


def test_a_keyword_two_sections_have_is_an_error_naming_both():
    pairs = (["a cat", "a dog"] * 4, ["eine Katze", "ein Hund"] * 4)
    with pytest.raises(ConfigError, match="'batch_size' is ambiguous: data.batch_size and decode.batch_size"):
        kdl.recipes.translator(pairs, batch_size=8)
    recipe = kdl.recipes.translator(pairs, data={"batch_size": 8}, decode={"batch_size": 4, "beam_size": 2})
    assert (recipe.config.data.batch_size, recipe.config.decode.batch_size) == (8, 4)
    assert recipe.config.decode.beam_size == 2


@pytest.mark.parametrize("task", sorted(kdl.recipes.RECIPES))
def test_every_task_config_has_the_same_sections_and_checks_its_bounds(task):
    cls = kdl.recipes.RECIPES[task]
    config = cls.Config()
    assert isinstance(config.data, configs.DataConfig) and isinstance(config.model, configs.ModelConfig)
    assert isinstance(config.train, configs.TrainConfig) and config.task == task
    loader_takes = inspect.signature(cls.loader).parameters
    assert set(configs.loader_options(config.data)) <= set(loader_takes)   # every data field has a taker
    config.data.batch_size = 0
    with pytest.raises(ConfigError, match="data.batch_size must be at least 1; got 0"):
        cls(config)
    with pytest.raises(ConfigError, match="data.validation_split must be less than 1; got 1.5"):
        cls(configs.replace(cls.Config(), ["data", "validation_split"], 1.5))


def test_a_warmup_longer_than_the_whole_run_is_a_clear_error():
    train = configs.TrainConfig(schedule="warmup_cosine", warmup_steps=400, learning_rate=1e-3)
    with pytest.raises(ConfigError, match=r"train.warmup_steps = 400 is longer than the whole run: 90 steps "
                                          r"\(epochs x batches per epoch\); .* at most 90 .* more epochs"):
        configs.check_schedule(train, total_steps=90)
    configs.check_schedule(dataclasses.replace(train, warmup_steps=90), total_steps=90)   # all warm-up
    configs.check_schedule(dataclasses.replace(train, schedule="cosine"), total_steps=90)  # no warm-up
