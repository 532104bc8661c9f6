"""Leave-one-speaker-out: how a speech recipe does on voices it never heard.

For each speaker of the recipe's FSDD folder, train the recipe with that speaker held out
(`data.split = "speaker"`, `data.test_speakers = [SPEAKER]`) and score it on the speaker's clips
with the shared scorer (kdl.evaluation): WER and CER of greedy and lexicon decoding of the same
log-probabilities (speech_recognizer), or accuracy and macro-F1 (audio_classifier). Prints a
per-speaker table and the mean, and writes results.json and results.md into --out.

    python benchmarks/leave_one_speaker_out.py recipes/speech/fsdd_digit_strings_ctc.toml \\
        --backend tensorflow --out runs/loso_ctc [--speakers george,theo] [--set train.epochs=5] [--official]

Each fold is its own run directory (OUT/SPEAKER); a fold whose fold.json exists is not trained
again, so a killed benchmark continues where it stopped. `--official` adds a fold on the
source's own split (`data.split = "default"`; FSDD: recording index 0-4 as test), for the numbers
side by side.
"""

import argparse
import json
import pathlib
import re
import sys
import time

FSDD_SPEAKER = re.compile(r"^[^_/]+_(?P<speaker>[^_/]+)_\d+\.wav$", re.IGNORECASE)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", help="a speech recipe .toml (speech_recognizer or audio_classifier)")
    parser.add_argument("--out", default="runs/loso",
                        help="folder of the fold runs and results (default runs/loso)")
    parser.add_argument("--backend", choices=("jax", "tensorflow", "torch"), default=None)
    parser.add_argument("--speakers", default=None,
                        help="comma-separated speakers to hold out (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override a recipe field in every fold (repeatable)")
    parser.add_argument("--official", action="store_true", help="also train and score the recipe's own split")
    parser.add_argument("--data-root", default=None,
                        help="folder of relative data paths (default: $KDL_DATA)")
    args = parser.parse_args(argv)

    from kdl import backend
    if args.backend:
        backend.select(args.backend)
    import kdl
    from kdl.data.io import resolve_path

    out = pathlib.Path(args.out)
    recipe = kdl.recipes.load(args.recipe, args.set, data_root=args.data_root)
    folder = resolve_path(recipe.config.data.source.removeprefix("fsdd_digit_strings:"), args.data_root,
                          "an FSDD recordings folder")
    speakers = sorted({m["speaker"] for p in folder.iterdir() if (m := FSDD_SPEAKER.match(p.name))})
    if args.speakers:
        unknown = sorted(set(args.speakers.split(",")) - set(speakers))
        if unknown:
            parser.error(f"--speakers {unknown} are not speakers of {folder}; its speakers: {speakers}")
        speakers = args.speakers.split(",")
    folds = [(s, [s]) for s in speakers] + ([("official", [])] if args.official else [])
    results = {}
    for name, held_out in folds:
        overrides = args.set + (['data.split="speaker"', f"data.test_speakers={json.dumps(held_out)}"]
                                if held_out else ['data.split="default"', "data.test_speakers=[]"])
        results[name] = run_fold(args.recipe, overrides, args.data_root, out / name)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    summary = summarize(results, recipe.task, backend.name(), args)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "results.md").write_text(summary["table"] + "\n")
    print(summary["table"])
    return 0


def run_fold(recipe_file, overrides, data_root, run_dir):
    """Train one fold into `run_dir` and score it; its scores are kept in run_dir/fold.json."""
    import kdl
    from kdl import evaluation

    done = run_dir / "fold.json"
    if done.is_file():
        return json.loads(done.read_text())
    recipe = kdl.recipes.load(recipe_file, overrides, data_root=data_root)
    start = time.perf_counter()
    recipe.fit(out=run_dir, verbose=0)
    seconds = time.perf_counter() - start
    if recipe.task == "speech_recognizer":
        result, references = recipe.predict_split("test")
        scores = {}
        for decoder in ("greedy", "lexicon"):
            begin = time.perf_counter()
            hypotheses = recipe.decode(result.log_probabilities, decoder)
            report = evaluation.speech_recognition(references, hypotheses)
            scores[decoder] = {"wer": report["wer"], "cer": report["cer"],
                               "sentence_accuracy": report["sentence_accuracy"],
                               "decode_seconds": round(time.perf_counter() - begin, 2),
                               "examples": report.examples[:4]}
        recipe.report = report
    else:
        report = recipe.evaluate("test")
        scores = {"accuracy": report["accuracy"], "f1_macro": report["f1_macro"]}
    recipe.save(run_dir)
    fold = {"test_examples": recipe.data.info.num_examples["test"], "fit_seconds": round(seconds, 1),
            **scores}
    done.write_text(json.dumps(fold, indent=2) + "\n")
    return fold


def summarize(results, task, backend_name, args):
    speakers = [name for name in results if name != "official"]
    if task == "speech_recognizer":
        columns = [("greedy", "wer"), ("greedy", "cer"), ("lexicon", "wer"), ("lexicon", "cer")]
        value = lambda fold, c: fold[c[0]][c[1]]  # noqa: E731
        header = "| held-out speaker | greedy WER | greedy CER | lexicon WER | lexicon CER | fit seconds |"
    else:
        columns = [("accuracy",), ("f1_macro",)]
        value = lambda fold, c: fold[c[0]]  # noqa: E731
        header = "| held-out speaker | accuracy | macro-F1 | fit seconds |"
    mean = {"/".join(c): sum(value(results[s], c) for s in speakers) / len(speakers) for c in columns} \
        if speakers else {}
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for name, fold in results.items():
        cells = " | ".join(f"{100 * value(fold, c):.2f}%" for c in columns)
        label = "(official split)" if name == "official" else name
        lines.append(f"| {label} | {cells} | {fold['fit_seconds']:,.0f} |")
    if speakers:
        cells = " | ".join(f"**{100 * mean['/'.join(c)]:.2f}%**" for c in columns)
        lines.append(f"| mean of {len(speakers)} held-out speakers | {cells} | |")
    command = " ".join(["python", *sys.argv])
    return {"task": task, "backend": backend_name, "recipe": args.recipe, "overrides": args.set,
            "folds": results, "mean": mean, "table": "\n".join(lines), "command": command}


if __name__ == "__main__":
    raise SystemExit(main())
