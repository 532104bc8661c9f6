"""The smoke command each recipe file documents (its header's `# Smoke:` line) trains, through the
`kdl train` command, a model that clearly beats chance on the recipe's real data.

"Chance" is the score of a model that does not look at its input: for a classifier the share of
the test split's most common class; for a speech recogniser an empty transcript (WER and CER 1);
for a translator the model's own translations given to the wrong sentences (each paired with
the reference of another test sentence), which scores what a fixed, fluent output would.

The runs take minutes on 2 CPU cores, so they are `slow` (`pytest -m slow tests/test_recipe_smoke.py`);
that every recipe file has a smoke command made of valid settings is checked in every run.
"""

import contextlib
import io
import json
import math
import pathlib
import shlex
import tomllib

import pytest

import kdl
from kdl import backend
from kdl.cli import main
from kdl.evaluation import translation

REPO = pathlib.Path(__file__).resolve().parents[1]
RECIPE_FILES = sorted((REPO / "recipes").rglob("*.toml"))
Z = 4.0     # "clearly": this many binomial standard deviations above chance, for classifiers


def smoke_arguments(path):
    """The arguments after `kdl train FILE` on the `# Smoke:` line of a recipe file's header."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("# Smoke:"):
            return shlex.split(line.removeprefix("# Smoke:"))
    return None


def settings(arguments):
    """The `section.field=value` settings of smoke arguments (`--set X`, `--epochs N`)."""
    pairs = list(zip(arguments[::2], arguments[1::2]))
    assert len(arguments) % 2 == 0 and all(flag in ("--set", "--epochs") for flag, _ in pairs), arguments
    return [value if flag == "--set" else f"train.epochs={value}" for flag, value in pairs]


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda path: path.stem)
def test_every_recipe_file_documents_a_smoke_command_of_valid_settings(path):
    arguments = smoke_arguments(path)
    assert arguments, f"{path.relative_to(REPO)} has no '# Smoke:' line in its header"
    recipe = kdl.recipes.load(path, settings(arguments))       # each setting known and in range
    assert recipe.config.train.epochs <= 3, "a smoke command trains a few epochs at most"


def classification_chance(report):
    """The accuracy of always answering the test split's most common class."""
    support = [row["support"] for row in report["tables"]["per_class"]]
    return max(support) / sum(support)


# Recipes whose smoke command does not yet beat chance: CTC and a 6-layer Transformer need far more
# steps than a smoke run takes on a CPU. Measured on jax, 2 busy CPU cores: fsdd_digit_strings_ctc
# with utterances=[400,50], max_digits=2 for 25 epochs (3 min) still decodes every utterance as ""
# (WER 1.0; the training loss stalls at 17.5, CTC's all-blank plateau); multi30k_en_de with limit=4000
# for 3 epochs (7 min) writes "Ein Mann in einem ..." for everything: chrF 18.0 against 16.7 for the
# same translations given to the wrong sentences. Strict: a smoke command that starts to beat chance
# fails here, to be moved to the list above.
NOT_YET = {
    "fsdd_digit_strings_ctc": "CTC stays on its all-blank plateau for the first several hundred steps",
    "multi30k_en_de": "a few hundred steps give one generic sentence for every input",
    "text_mlm": "23 steps of masked-LM training do not beat answering the commonest word (5.9%)",
}


def backbone_of(path):
    """The backbone a recipe file starts from (another run, made by the command its header gives)."""
    return tomllib.loads(path.read_text()).get("model", {}).get("backbone", "")


def smoke_cases():
    for path in RECIPE_FILES:
        reason = NOT_YET.get(path.stem)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        if backbone_of(path):
            marks.append(pytest.mark.skip(reason=f"starts from the run {backbone_of(path)!r}, which "
                                                 "its header's command makes first"))
        yield pytest.param(path, marks=marks, id=path.stem)


@pytest.mark.slow
@pytest.mark.parametrize("path", smoke_cases())
def test_the_smoke_command_trains_a_model_that_beats_chance(path, shared_data, tmp_path):
    out = tmp_path / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["train", str(path), *smoke_arguments(path), "--data-root", str(shared_data),
                     "--out", str(out), "--quiet", "--backend", backend.name()])
    assert code == 0, printed.getvalue()[-2000:]
    report = json.loads((out / "report.json").read_text())
    metrics, task = report["metrics"], tomllib.loads((out / "recipe.toml").read_text())["task"]
    if task.endswith("classifier"):
        chance, examples = classification_chance(report), report["meta"]["num_examples"]
        needed = chance + Z * math.sqrt(chance * (1 - chance) / examples)
        assert metrics["accuracy"] > needed, (f"accuracy {metrics['accuracy']:.3f}, chance {chance:.3f} "
                                              f"(needed {needed:.3f})", printed.getvalue()[-1500:])
    elif task == "language_model":           # answering "the" for every mask scores 5.9% on SST-2 dev
        assert metrics["accuracy"] > 0.059, (metrics, printed.getvalue()[-1500:])
    elif task == "speech_recognizer":        # an empty transcript scores WER = CER = 1
        assert metrics["cer"] < 0.5 and metrics["wer"] < 0.8, (metrics, printed.getvalue()[-1500:])
    else:
        recipe = kdl.recipes.load(out)
        result, references = recipe.predict_split("test")
        hypotheses = list(result.translations)
        shuffled = hypotheses[1:] + hypotheses[:1]           # each translation with another's reference
        chance = translation(shuffled, references).metrics["chrf"]
        assert translation(hypotheses, references).metrics["chrf"] == pytest.approx(metrics["chrf"])
        assert metrics["chrf"] > chance + 5 and metrics["bleu"] > 1, (metrics, chance,
                                                                       printed.getvalue()[-1500:])
