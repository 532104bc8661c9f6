"""Make docs/explain.md's pictures from runs of the shipped recipes, and print what each shows.

    KDL_DATA=../shared/data python benchmarks/explain_pictures.py DIGITS_RUN SST2_RUN FSDD_RUN MULTI30K_RUN

Each run directory is a `kdl train` of recipes/image_classification/digits_cnn.toml,
recipes/text_classification/sst2_transformer.toml, recipes/speech/fsdd_digits_classifier.toml and
recipes/translation/multi30k_en_de.toml (docs/explain.md says with which settings; the FSDD run
in docs is a leave-one-speaker-out fold without george, benchmarks/leave_one_speaker_out.py). Writes
docs/images/explain/{digits_grad_cam,digits_integrated_gradients,sst2_integrated_gradients,
fsdd_grad_cam,multi30k_attention}.png.
"""

import os
import pathlib
import sys

import numpy as np

import kdl

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "images" / "explain"


def picture(explanation, name, index=0):
    figure = explanation.plot(index)
    figure.savefig(OUT / f"{name}.png", dpi=90, bbox_inches="tight")
    print(f"{name}.png:", explanation.summary().splitlines()[index])


def main(digits, sst2, fsdd, multi30k=None):
    OUT.mkdir(parents=True, exist_ok=True)
    root = os.environ.get("KDL_DATA", "../shared/data")
    clf = kdl.recipes.load(digits)
    images = np.stack([x for x, _ in clf.data.splits["test"].take(1).as_numpy_iterator()])
    picture(clf.explain(images, method="grad_cam"), "digits_grad_cam")
    picture(clf.explain(images), "digits_integrated_gradients")
    text = kdl.recipes.load(sst2)
    picture(text.explain(["a gripping , funny film , if a little too long"]), "sst2_integrated_gradients")
    audio = kdl.recipes.load(fsdd)
    clip = pathlib.Path(root) / "fsdd" / "recordings" / "7_george_3.wav"
    picture(audio.explain([str(clip)], method="grad_cam", names=[clip.name]), "fsdd_grad_cam")
    if multi30k is None:
        return
    translator = kdl.recipes.load(multi30k)
    picture(translator.explain(["A man is riding a bike ."], method="attention"), "multi30k_attention")


if __name__ == "__main__":
    main(*sys.argv[1:5])
