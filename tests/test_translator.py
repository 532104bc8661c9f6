"""The translation recipe end to end on the active backend: a tiny Transformer overfits 64 sentence
pairs until greedy decoding reproduces every target, beam search scores at least greedy's model
log-probability, evaluate/translate/save/load, truncation warnings, bad input, the CLI, and the
Multi30k recipe file. What every task shares (cross-backend reload included) is
tests/test_contract.py."""

import json
import pathlib

import numpy as np
import pytest

import kdl
from kdl import backend
from kdl.cli import main
from kdl.errors import ConfigError, DataError, KdlWarning
from kdl.evaluation import TranslationReport

WORDS = {"the": "der", "a": "ein", "red": "rote", "big": "große", "small": "kleine", "cat": "Katze",
         "dog": "Hund", "man": "Mann", "woman": "Frau", "sees": "sieht", "eats": "isst", "likes": "mag"}
TINY = dict(epochs=28, data={"batch_size": 16}, max_length=12, vocabulary_size=200, encoder_layers=1,
            decoder_layers=1, width=32, heads=2, intermediate=64, dropout=0.0, learning_rate=6e-3,
            warmup_steps=20, label_smoothing=0.0, beam_size=3)


def toy_pairs(n, seed=0):
    """n distinct (English, German-like) sentence pairs of a 12-word toy grammar."""
    rng = np.random.default_rng(seed)
    pairs = set()
    while len(pairs) < n:
        d, a, s, v, o = (str(rng.choice(options)) for options in (
            ["the", "a"], ["red", "big", "small"], ["cat", "dog", "man", "woman"],
            ["sees", "eats", "likes"], ["cat", "dog", "man", "woman"]))
        pairs.add((f"{d} {a} {s} {v} the {o}.".capitalize(),
                   f"{WORDS[d].capitalize()} {WORDS[a]} {WORDS[s]} {WORDS[v]} den {WORDS[o]}."))
    pairs = sorted(pairs)
    return [en for en, _ in pairs], [de for _, de in pairs]


REPO = pathlib.Path(__file__).resolve().parents[1]
SOURCES, TARGETS = toy_pairs(64)
UNSEEN = [s for s in toy_pairs(100, seed=1)[0] if s not in SOURCES][:8]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A tiny Transformer trained on 64 toy pairs (test split: 16 of them), evaluated, saved."""
    recipe = kdl.recipes.translator({"train": (SOURCES, TARGETS), "test": (SOURCES[:16], TARGETS[:16])},
                                    source="en", target="de", **TINY)
    recipe.fit(verbose=0)
    report = recipe.evaluate()
    run_dir = recipe.save(tmp_path_factory.mktemp("runs") / "toy")
    return recipe, report, run_dir


def test_overfits_64_pairs_greedy_reproduces_every_target(toy_run):
    recipe, report, _ = toy_run
    translations = recipe.translate(SOURCES, beam_size=1)
    wrong = [(s, t, o) for s, t, o in zip(SOURCES, TARGETS, translations) if t != o]
    assert not wrong, f"{len(wrong)} of 64 differ, e.g. {wrong[:3]}"
    assert isinstance(report, TranslationReport) and report["bleu"] == pytest.approx(100)
    assert report.meta["backend"] == backend.name() and report.meta["num_examples"] == 16
    assert report.examples[0] == {"source": SOURCES[0], "reference": TARGETS[0], "translation": TARGETS[0]}


def test_beam_search_scores_at_least_greedy(toy_run):
    recipe, _, _ = toy_run
    ids = recipe._source_ids(SOURCES[:8] + UNSEEN, "test")
    greedy_tokens, greedy = recipe.decode(ids, beam_size=1, length_penalty=0.0)
    beam_tokens, beam = recipe.decode(ids, beam_size=4, length_penalty=0.0)
    assert greedy.shape == beam.shape == (16,) and np.isfinite(greedy).all()
    assert (beam >= greedy - 1e-4).all(), np.stack([greedy, beam])
    assert (greedy <= 0).all()
    end = recipe.tokenizers["target"].token_id("[SEP]")
    assert ((beam_tokens == end).sum(axis=1) == 1).all()      # each translation ends once


def test_translate_single_string_and_bad_input(toy_run):
    recipe, _, _ = toy_run
    assert recipe.translate(SOURCES[3]) == [TARGETS[3]]
    with pytest.raises(DataError, match="a string or a non-empty list of strings"):
        recipe.translate([])
    with pytest.raises(DataError, match="takes strings; item 1 is int 3"):
        recipe.translate(["A cat.", 3])
    with pytest.raises(ConfigError, match="beam_size must be a positive int"):
        recipe.translate("A cat.", beam_size=0)


def test_long_sentences_are_cut_with_a_warning(toy_run):
    recipe, _, _ = toy_run
    with pytest.warns(KdlWarning, match=r"1 of 2 source sentences are longer than data.max_length=12") as w:
        out = recipe.translate([SOURCES[0], " ".join([SOURCES[0]] * 5)])
    assert out[0] == TARGETS[0] and isinstance(out[1], str)
    # shown at the caller's line (here), not at a line of kdl's code that Python would echo
    assert [warning.filename for warning in w if warning.category is KdlWarning] == [__file__]


def test_saved_run_holds_its_vocabularies_and_translates_the_same(toy_run):
    recipe, report, run_dir = toy_run
    names = {path.name for path in run_dir.iterdir()}
    assert {"source_vocabulary.txt", "target_vocabulary.txt"} <= names
    sentences = SOURCES[:4] + UNSEEN[:4]
    assert kdl.recipes.load(run_dir).translate(sentences) == recipe.translate(sentences)


def test_cli_translates(toy_run, capsys):
    _, _, run_dir = toy_run
    assert main(["translate", str(run_dir), SOURCES[5], SOURCES[6], "--beam-size", "2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"{SOURCES[5]}\t{TARGETS[5]}", f"{SOURCES[6]}\t{TARGETS[6]}"]
    assert main(["predict", str(run_dir), SOURCES[5], "--json"]) == 0      # the same through kdl predict
    assert json.loads(capsys.readouterr().out)[0]["translation"] == TARGETS[5]


def test_config_and_options_are_checked():
    with pytest.raises(ConfigError, match="no option 'layers'"):
        kdl.recipes.translator((SOURCES, TARGETS), layers=2)
    recipe = kdl.recipes.translator("multi30k/task1_raw", width=64)
    assert recipe.config.data.splits == {"validation": "val", "test": "test_2016_flickr"}
    assert recipe.config.model.options == {"width": 64}


def test_multi30k_recipe_file(shared_data):
    recipe = kdl.recipes.load(REPO / "recipes" / "translation" / "multi30k_en_de.toml",
                              ["data.limit=50"], data_root=shared_data)
    assert recipe.task == "translator" and recipe.config.decode.beam_size == 4
    assert recipe.config.model.options["encoder_layers"] == recipe.config.model.options["decoder_layers"] == 3
    assert recipe.data.info.num_examples == {"train": 50, "validation": 50, "test": 50}
    assert recipe.data.texts("test")[1][0][0].isupper()     # raw, cased references
