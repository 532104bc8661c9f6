"""The `kdl` command: a thin layer over the Python API.

    kdl info
    kdl train recipes/image_classification/digits_cnn.toml --backend jax --out runs/digits
    kdl evaluate runs/digits
    kdl predict runs/digits some_digit.png
    kdl predict runs/sst2 "a gripping film" reviews.txt
    kdl predict runs/multi30k_jax "A man is riding a bike." --beam-size 4     (or kdl translate)
    kdl predict runs/fsdd_digits_classifier 7_theo_0.wav
    kdl predict runs/text_mlm "a [MASK] and moving film" --top-k 3
    kdl predict runs/fsdd_digit_strings_ctc utterance.wav --decoder beam_search   (or kdl transcribe)
    kdl transcribe runs/fsdd_digit_strings_ctc utterance.wav --decoder lexicon [--words FILE] [--lm FILE]
    kdl export runs/digits --format onnx --out exports/digits
    kdl compare recipes/image_classification/digits_cnn.toml --backends jax,tensorflow,torch --epochs 2
    kdl serve runs/digits --port 8000          (HTTP endpoint + demo page; docs/serve.md)

`--backend` is applied before Keras is imported. Bad input prints one `kdl: error:` line
and exits with status 1.
"""

import argparse
import contextlib
import functools
import json
import os
import pathlib
import sys
import time
import warnings

from kdl import backend, distribute, progress
from kdl.errors import DataError, KdlError, KdlWarning


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with warnings.catch_warnings():
        warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
        try:
            args = _parser().parse_args(argv)
            progress.set_quiet(getattr(args, "quiet", False))     # --quiet: no progress from kdl
            if getattr(args, "backend", None):
                backend.select(args.backend)
            backend.check_environment()
            return args.handler(args) or 0
        except KdlError as error:
            print(f"kdl: error: {error}", file=sys.stderr)
            return 1
        except BrokenPipeError:     # `kdl ... | head`: the reader has gone; so do we, quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())      # as Python's docs advise: no error at exit
            return 141


class _Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are one `kdl: error:` line (exit status 1) like every other."""

    def error(self, message):
        raise KdlError(f"{message} (see `{self.prog} --help`)")


def _show_warning(default, message, category, *args, **kwargs):
    """A KdlWarning is one `kdl: warning:` line; other warnings are shown as Python shows them."""
    if issubclass(category, KdlWarning):
        print(f"kdl: warning: {message}", file=sys.stderr)
    else:
        default(message, category, *args, **kwargs)


def _info(args):
    found = backend.info()
    if args.json:
        print(json.dumps(found, indent=2))
        return
    print(f"backend      {found['backend']}")
    print(f"devices      {', '.join(found['devices'])}")
    print(f"accelerator  {found['accelerator']}")
    if found["compile_cache"]:
        print(f"compile cache {found['compile_cache']}")
    for package, version in found["versions"].items():
        print(f"{package:<12} {version or '-'}")


def _train(args):
    from kdl import recipes, runs
    from kdl.callbacks import EpochLine
    from kdl.recipes.recipe import CHECKPOINT_FILE, check_run_directory

    path = pathlib.Path(args.recipe)
    overrides = args.set + ([f"train.epochs={args.epochs}"] if args.epochs is not None else [])
    overrides += [f'train.{name}="{getattr(args, name)}"' for name in ("distribute", "precision")
                  if getattr(args, name, None)]
    overrides += _track_overrides(args)
    if args.recipe.endswith(".toml") or path.is_dir():
        recipe = recipes.load(path, overrides, data_root=args.data_root, unsafe=args.unsafe)
    else:
        recipe = recipes.create(args.recipe, overrides, data_root=args.data_root)
    out = pathlib.Path(args.out or pathlib.Path("runs") / path.stem)
    distribute.initialize(recipe.config.train.distribute)   # join a multi-process run first
    chief = distribute.is_chief()     # process 0 of a multi-process run writes and reports
    if not chief:
        progress.set_quiet(True)
    say = print if chief else (lambda *args, **kwargs: None)
    model = recipe.config.model
    model = f"backbone {model.backbone!r}" if model.backbone else f"model {model.name!r}"
    count = distribute.world()[1]
    say(f"kdl: training {recipe.task} ({model}, data {recipe.config.data.source!r}) on "
        f"{backend.name()} [{', '.join(backend.devices())}]"
        f"{f' with {count} processes' if count > 1 else ''}", flush=True)
    lines = [EpochLine(recipe.config.train.epochs)] if args.quiet and chief else []   # instead of the bar
    if chief:
        check_run_directory(out, recipe.task, overwrite=args.overwrite)
    try:
        with runs.lock(out) if chief else contextlib.nullcontext():   # fit, evaluate and save as one
            start = time.perf_counter()
            recipe.fit(out=out, verbose=0 if args.quiet or not chief else "auto", callbacks=lines,
                       restart=args.restart, overwrite=args.overwrite)
            seconds = time.perf_counter() - start
            report = recipe.evaluate(args.split)      # every process predicts its part of the split
            report.meta["fit_seconds"] = round(seconds, 2)
            say(report)
            if chief:
                recipe.save(out)
        distribute.barrier("run saved")       # the others end once process 0 has saved the run
    except KeyboardInterrupt:
        checkpoint = out / CHECKPOINT_FILE
        kept = f"; the last finished epoch is in {checkpoint}" if checkpoint.is_file() else ""
        print(f"kdl: interrupted{kept}. Run the same command again to resume from {out}.", file=sys.stderr)
        return 130
    if chief:
        print(f"kdl: fit took {seconds:.1f} s on {backend.name()}; run saved to {out}")
        _print_tracking(recipe.config.track, recipe.task, out)


def _evaluate(args):
    from kdl import config, recipes

    if args.interpretation_out is not None and args.top_losses is None:
        raise KdlError("--interpretation-out DIR needs --top-losses N")
    if args.top_losses is not None and args.top_losses < 1:
        raise KdlError(f"--top-losses takes how many examples to list, at least 1; got {args.top_losses}")
    recipe = recipes.load(args.run, data_root=args.data_root, unsafe=args.unsafe)
    options = {name: value for name, value in (("text_column", args.text_column),
                                               ("label_column", args.label_column)) if value}
    for assignment in args.set:          # read and type-checked as `kdl train --set` reads them
        section, _, name = assignment.partition("=")[0].strip().partition(".")
        if section != "data" or not name:
            raise KdlError(f"--set {assignment!r}: kdl evaluate takes data.FIELD=VALUE settings of the "
                           "data it scores, e.g. --set data.text_column=review")
        options[name] = getattr(config.override(recipe.config, assignment).data, name)
    if options and args.data is None:
        raise KdlError("data settings (--set, --text-column, --label-column) need --data PATH")
    if args.top_losses is not None:      # which examples it gets wrong (kdl.recipes.interpret)
        from kdl.recipes.interpret import interpret

        split = args.split or ("all" if args.data else "test")
        out = pathlib.Path(args.interpretation_out or pathlib.Path(args.run) / f"interpretation-{split}")
        found = interpret(recipe, args.split, data=args.data, n=args.top_losses, out=out, **options)
        if args.json:
            print(found.to_json())
            return
        print(f"kdl: {args.run} scored on {found.meta['source']} ({found.meta['split']}); wrote "
              f"{', '.join(found.meta['files'])} to {out}")
        print(found.summary())
        return
    report = recipe.evaluate(args.split, data=args.data, **options)
    if args.json:
        print(report.to_json())
    else:
        print(f"kdl: {args.run} scored on {report.meta['source']} ({report.meta['split']})")
        print(report)


def _predict(args, task=None):
    """`kdl predict` for every task (and `kdl translate` / `kdl transcribe`, which also check
    the run's task): one line (or JSON object, or CSV row) per input, named by its file or
    position. Folders are expanded to the task's files; `-` reads standard input."""
    from kdl import recipes
    from kdl.inputs import prediction_units

    recipe = recipes.load(args.run, unsafe=args.unsafe)
    if task is not None and recipe.task != task:
        raise KdlError(f"{args.run} holds a {recipe.task!r} run; `kdl {args.command}` needs a {task} run "
                       f"(`kdl predict` works for every task)")
    options = {name: getattr(args, name) for name in ("beam_size", "decoder", "words", "lm")
               if getattr(args, name, None) is not None}
    rows, failed = [], 0
    units = prediction_units(args.inputs, recipe, args.text)
    total = sum(len(names) for names, _, _ in units)
    with progress.bar(what="predicting", total=total, unit="inputs") as shown:    # long work only
        while units:
            names, inputs, chunk = units.pop(0)
            try:      # a bad file is reported on its own line; the other inputs are still predicted
                if isinstance(inputs, DataError):
                    raise inputs
                result = recipe.predict(inputs, **options)
            except DataError as error:
                if chunk and len(names) > 1:       # which file of the chunk? predict them one by one
                    units[:0] = [([name], [name], True) for name in names]
                    continue
                with progress.paused():
                    print(f"kdl: error: {error}", file=sys.stderr)
                failed += 1
                shown.update(len(names))
                continue
            top_k = () if args.top_k is None else (args.top_k,)    # None: the result's own default
            for name, row, line in zip(names, result.rows(*top_k), result.lines(*top_k)):
                rows.append(({"input": name, **row}, line))
            shown.update(len(names))
    _print_rows(rows, args.output)
    return 1 if failed else 0


def _print_rows(rows, output):
    if output == "json":
        print(json.dumps([row for row, _ in rows], indent=2, ensure_ascii=False))
    elif output == "csv":
        import csv

        columns = list(dict.fromkeys(key for row, _ in rows for key in row))
        writer = csv.DictWriter(sys.stdout, columns, lineterminator="\n")
        writer.writeheader()
        for row, _ in rows:
            writer.writerow({key: "; ".join(" ".join(str(v) for v in part.values()) for part in value)
                             if isinstance(value, list) else value for key, value in row.items()})
    else:
        for row, line in rows:
            print(f"{row['input']}\t{line}")


def _explain(args):
    """`kdl explain RUN INPUT...`: one explanation of all the inputs (read as `kdl predict` reads
    them), saved as pictures, .npy files and an index.html in --out."""
    from kdl import explain, recipes
    from kdl.inputs import class_target, prediction_units

    recipe = recipes.load(args.run, unsafe=args.unsafe)
    settings = {name: getattr(args, name) for name in ("steps", "at", "layer", "window")
                if getattr(args, name) is not None}
    if args.baseline is not None:
        settings["baseline"] = _number_or_word(args.baseline)
    if args.method == "occlusion" and "baseline" in settings and isinstance(settings["baseline"], str):
        raise KdlError(f"--baseline {args.baseline!r}: occlusion fills its window with a number")
    target = None if args.target is None else class_target(args.target, recipe)
    parts = []
    for names, inputs, _ in prediction_units(args.inputs, recipe, args.text):
        if isinstance(inputs, DataError):
            raise inputs
        parts.append(recipe.explain(inputs, method=args.method, target=target, names=names, **settings))
        print(f"kdl: explained {sum(len(part) for part in parts)} inputs", file=sys.stderr)
    explanation = explain.Explanation.concatenate(parts)
    out = pathlib.Path(args.out or pathlib.Path(args.run) / f"explain-{args.method}")
    explanation.save(out)
    print(explanation.summary())
    print(f"kdl: {args.method} of {len(explanation)} inputs on {backend.name()} written to {out} "
          "(index.html, attributions.npy)")


def _number_or_word(text):
    try:
        return float(text)
    except ValueError:
        return text


def _tune(args):
    """`kdl tune RECIPE --out DIR`: run or resume a search (kdl.tune), write its results."""
    from kdl import tune

    track = _track_overrides(args)
    overrides = args.set + track + ([f"train.epochs={args.epochs}"] if args.epochs is not None else [])
    recipe, search = tune.read(args.recipe, overrides, data_root=args.data_root, space=args.space)
    if args.trials is not None:
        search.trials = args.trials
    out = pathlib.Path(args.out or pathlib.Path("runs") / f"tune-{pathlib.Path(args.recipe).stem}")
    if args.workers < 1:
        raise KdlError(f"--workers takes how many processes to run, at least 1; got {args.workers}")
    passed = [f"--set={item}" for item in args.set + track] + [     # what each --workers process must see too
        f"--{name.replace('_', '-')}={getattr(args, name)}"
        for name in ("epochs", "trials", "space", "data_root") if getattr(args, name) is not None]
    if args.worker is None:
        where = args.storage or out / tune.DATABASE
        print(f"kdl: tuning {args.recipe} ({search.trials} trials, {args.workers} worker"
              f"{'s' * (args.workers > 1)}) on {backend.name()}; study in {where}",
              file=sys.stderr, flush=True)
    helper = args.worker is not None
    study = tune.tune(recipe, search, out, workers=1 if helper else args.workers, storage=args.storage,
                      recipe_path=args.recipe, worker_args=passed, quiet=helper, worker=args.worker or 0)
    if helper:
        return 0
    print(tune.summary(study, search, out))
    _print_tracking(recipe.config.track, recipe.task, out / tune.TRIALS_DIR)
    if args.retrain_best:
        report = tune.retrain_best(out, data_root=args.data_root)
        print(f"kdl tune: the best recipe retrained on train + validation, scored once on test "
              f"({out}/retrained):")
        print(report)
    return 0


def _compare(args):
    from kdl.compare import compare

    name = pathlib.Path(args.recipe).stem
    out = pathlib.Path(args.out or pathlib.Path("runs") / f"compare-{name}")
    comparison = compare(args.recipe, args.backends, epochs=args.epochs, steps=args.steps,
                         batch_size=args.batch_size, out=out, overrides=args.set + _track_overrides(args),
                         data_root=args.data_root, tuned=args.tuned, baseline=args.baseline,
                         agreement_steps=args.agreement_steps, timeout=args.timeout)
    print()
    print(comparison)
    print(f"kdl: report written to {out}/comparison.md (+ comparison.json, throughput.png, loss_curves.png)")
    if (out / "tensorboard").is_dir():
        print(f"kdl: one TensorBoard run per backend: tensorboard --logdir {out}/tensorboard")
    return 0 if comparison.succeeded else 1


def _serve(args):
    """`kdl serve RUN`: the run behind an HTTP endpoint and a demo page until stopped (kdl.serve)."""
    try:
        from kdl import serve
    except ModuleNotFoundError as error:
        if error.name not in ("fastapi", "starlette", "uvicorn", "python_multipart"):
            raise
        raise KdlError(f"kdl serve needs FastAPI, uvicorn and python-multipart ({error.name} is missing): "
                       "pip install 'kdl[serve]'") from None
    if not 0 < args.max_body_mb < float("inf"):
        raise KdlError(f"--max-body-mb takes the MiB a request body may hold, above 0; got "
                       f"{args.max_body_mb}")
    serve.serve(args.run, args.host, args.port, max_body=int(args.max_body_mb * 2**20),
                max_batch=args.max_batch, unsafe=args.unsafe)


def _export(args):
    from kdl import recipes

    recipe = recipes.load(args.run, unsafe=args.unsafe)
    out = pathlib.Path(args.out or pathlib.Path(args.run) / f"export-{args.format}")
    recipe.export(out, args.format)
    print(f"kdl: exported {recipe.task} as {args.format} on {backend.name()} to {out} "
          "(signature in signature.json)")


def _parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--backend", choices=backend.BACKENDS, default=argparse.SUPPRESS,
                        help="Keras backend for this run (default: $KERAS_BACKEND, else tensorflow)")
    parser = _Parser(prog="kdl", parents=[common], description=(
        "Train, evaluate and use kdl task recipes on JAX, TensorFlow or PyTorch."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", parents=[common],
                               help="show the backend, its devices and library versions")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=_info)

    train = commands.add_parser("train", parents=[common], help="train a recipe, evaluate it, save the run",
                                description="Train a recipe file (or a task's defaults), print the "
                                            "evaluation report and write the run directory.")
    train.add_argument("recipe", help="a recipe .toml file, or a task name such as image_classifier")
    train.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                       help="override a config field, e.g. --set train.epochs=3 (repeatable)")
    train.add_argument("--epochs", type=int, help="shorthand for --set train.epochs=N")
    train.add_argument("--out", help="run directory (default: runs/<recipe name>)")
    train.add_argument("--restart", action="store_true",
                       help="discard what --out holds of an earlier run (an interrupted run's backup, a "
                            "finished run's model and history) and train from the start")
    train.add_argument("--overwrite", action="store_true",
                       help="allow --out to be a non-empty folder that is not a kdl run (its files are kept)")
    train.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    train.add_argument("--quiet", action="store_true",
                       help="one line per epoch instead of the progress bar; no other progress display")
    train.add_argument("--distribute", metavar="MODE",
                       help="shorthand for --set train.distribute=MODE: single, auto, data_parallel, "
                            "model_parallel[:M] or tpu (see docs/tpu.md)")
    train.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                       help="shorthand for --set train.precision=P (bf16/fp16: mixed precision)")
    _data_root_option(train)
    _unsafe_option(train)
    _tracking_options(train, mlflow=True)
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", parents=[common],
                                   help="score a saved run on its test split or on new labelled data")
    evaluate.add_argument("run", help="a run directory written by `kdl train`")
    evaluate.add_argument("--data", metavar="PATH",
                          help="score on this labelled data instead (any source the task trains from: a "
                               "folder, a CSV/TSV file, line files, tfds:NAME), all of it unless --split")
    evaluate.add_argument("--split", default=None,
                          help="split to score (default: test of the run's data; all of --data)")
    evaluate.add_argument("--set", action="append", default=[], metavar="data.FIELD=VALUE",
                          help="how to read --data (repeatable), e.g. data.text_column=review")
    evaluate.add_argument("--text-column", help="text runs: --data's text column (default: the run's)")
    evaluate.add_argument("--label-column", help="text runs: --data's label column (default: the run's)")
    evaluate.add_argument("--json", action="store_true",
                          help="print the report as JSON (with --top-losses: interpretation.json)")
    evaluate.add_argument("--top-losses", type=int, metavar="N",
                          help="classifiers: find the N examples with the highest loss, the most-confused "
                               "classes and each class's errors; writes them (with the images or texts) to "
                               "--interpretation-out")
    evaluate.add_argument("--interpretation-out", metavar="DIR",
                          help="with --top-losses: folder to write into (default: RUN/interpretation-SPLIT, "
                               "SPLIT 'all' with --data)")
    _data_root_option(evaluate)
    _unsafe_option(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    predict = commands.add_parser("predict", parents=[common], help="predict with a saved run of any task",
                                  description="Run a saved model on inputs: class names (classifiers), "
                                              "translations (translator), transcripts (speech_recognizer) "
                                              "or the tokens that fill each [MASK] (language_model).")
    _predict_options(predict, "inputs: image files or .npy arrays of images; for text runs (classifier, "
                              "translator, language_model: with [MASK] where a word is missing), strings or "
                              ".txt files (one example a line); for audio runs, .wav files or .npy waveforms")
    predict.add_argument("--top-k", type=int, default=None,
                         help="classifiers: classes to show per input (default 1); language_model: "
                              "candidate tokens per [MASK] (default: the run's predict.top_k)")
    predict.add_argument("--beam-size", type=int, default=None,
                         help="translator: beams to keep (1 is greedy; default: the run's decode.beam_size)")
    predict.add_argument("--decoder", choices=["greedy", "beam_search", "lexicon"], default=None,
                         help="speech_recognizer: CTC decoding (default: the run's model.decoder); lexicon: "
                              "a beam search that writes only lexicon words")
    _lexicon_options(predict, "speech_recognizer, --decoder lexicon: ")
    predict.set_defaults(handler=_predict)

    export = commands.add_parser(
        "export", parents=[common], help="export a saved run for serving (keras, saved_model, onnx)",
        description="Write a run's model as a .keras file, a TensorFlow SavedModel or an ONNX file, "
                    "with signature.json and the task's assets; the export is checked against the "
                    "Keras model. Not every backend produces every format (docs/export.md): "
                    "--backend tensorflow produces all three.")
    export.add_argument("run", help="a run directory written by `kdl train`")
    export.add_argument("--format", required=True, help="what to write: keras, saved_model or onnx")
    export.add_argument("--out", help="export folder (default: RUN/export-FORMAT)")
    _unsafe_option(export)
    export.set_defaults(handler=_export)

    translate = commands.add_parser("translate", parents=[common],
                                    help="kdl predict for a translator run: translate sentences")
    _predict_options(translate, "sentences to translate, or .txt files (one a line)")
    translate.add_argument("--beam-size", type=int, default=None,
                           help="beams to keep (1 is greedy; default: the run's decode.beam_size)")
    translate.set_defaults(handler=lambda args: _predict(args, "translator"), top_k=1)

    transcribe = commands.add_parser("transcribe", parents=[common],
                                     help="kdl predict for a speech_recognizer run: transcribe WAV files")
    _predict_options(transcribe, "WAV files (resampled and mixed down to the run's format)")
    transcribe.add_argument("--decoder", choices=["greedy", "beam_search", "lexicon"], default=None,
                            help="CTC decoding (default: the run's model.decoder); lexicon: a beam search "
                                 "that writes only lexicon words")
    _lexicon_options(transcribe, "--decoder lexicon: ")
    transcribe.set_defaults(handler=lambda args: _predict(args, "speech_recognizer"), top_k=1)

    explain = commands.add_parser(
        "explain", parents=[common], help="why a saved run decided: attributions as pictures, .npy files "
        "and an index.html (docs/explain.md)")
    _input_options(explain, "inputs to explain: image or WAV files, .npy arrays, .txt files (one text "
                     "a line), or strings with --text")
    explain.add_argument("--method", default="integrated_gradients",
                         help="integrated_gradients (default), grad_cam, occlusion or attention")
    explain.add_argument("--target", help="the class to explain, by name or index (default: the "
                         "predicted one)")
    explain.add_argument("--steps", type=int, help="integrated_gradients: first number of path steps "
                         "(doubled until complete; default 32)")
    explain.add_argument("--baseline", help="integrated_gradients: zeros, blur or a number; occlusion: the "
                         "number that fills the window (default: a black image, all padding, silence)")
    explain.add_argument("--at", choices=["input"], help="integrated_gradients on image or audio models: "
                         "attribute to the raw input (pixels, waveform samples) instead of the default")
    explain.add_argument("--layer", help="grad_cam: the convolution to use (default: the last one)")
    explain.add_argument("--window", type=int, help="occlusion: window size in pixels or samples")
    explain.add_argument("--out", help="output folder (default: RUN/explain-METHOD)")
    explain.set_defaults(handler=_explain)

    tune = commands.add_parser(
        "tune", parents=[common], help="search a recipe's settings with Optuna: trials, best.toml, plots "
        "(docs/tune.md)")
    tune.add_argument("recipe", help="a recipe .toml file (its [tune] section: metric, trials, space)")
    tune.add_argument("--out", help="study folder (default: runs/tune-<recipe name>)")
    tune.add_argument("--trials", type=int, help="finished trials to run to (default: the [tune] section's)")
    tune.add_argument("--space", help="default: the task's default search space instead of the file's")
    tune.add_argument("--workers", type=int, default=1, help="processes searching together on this machine")
    tune.add_argument("--storage", help="an Optuna storage URL shared by workers on several machines, e.g. "
                      "postgresql://user:password@host/db (default: sqlite in OUT/study.db)")
    tune.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                      help="override a recipe field for every trial (repeatable)")
    tune.add_argument("--epochs", type=int, help="shorthand for --set train.epochs=N")
    tune.add_argument("--retrain-best", action="store_true",
                      help="then train best.toml on train + validation and score the test split once")
    tune.add_argument("--worker", type=int, help=argparse.SUPPRESS)   # K: a process --workers started
    _data_root_option(tune)
    _tracking_options(tune, mlflow=True)
    tune.set_defaults(handler=_tune)

    compare = commands.add_parser(
        "compare", help="train one recipe on several backends side by side",
        description="Train the same recipe, data order and initial weights on each backend, each in "
                    "its own process; report speed, compile time, memory, metrics and numeric agreement.")
    compare.add_argument("recipe", help="a recipe .toml file, or a task name such as image_classifier")
    compare.add_argument("--backends", default="jax,tensorflow,torch",
                         help="comma-separated backends (default: jax,tensorflow,torch)")
    length = compare.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="epochs per backend (default: the recipe's)")
    length.add_argument("--steps", type=int, help="train only this many batches per backend")
    compare.add_argument("--batch-size", type=int, help="override data.batch_size")
    compare.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                         help="override a config field (repeatable)")
    compare.add_argument("--tuned", action="store_true",
                         help="also run each backend with jit_compile=True (torch.compile on torch)")
    compare.add_argument("--baseline", action="store_true",
                         help="also time a plain model.fit and each framework's native training loop "
                              "(JAX+optax, tf.function, torch eager; torch.compile with --tuned)")
    compare.add_argument("--agreement-steps", type=int, default=3,
                         help="identical deterministic steps for the loss-agreement check (default 3)")
    compare.add_argument("--timeout", type=float, default=3600, help="seconds allowed per backend run")
    compare.add_argument("--out", help="report folder (default: runs/compare-<recipe name>)")
    _data_root_option(compare)
    _tracking_options(compare, mlflow=False)
    compare.set_defaults(handler=_compare)

    serve = commands.add_parser(
        "serve", parents=[common], help="serve a saved run over HTTP, with a demo page (docs/serve.md)",
        description="Load a run once and serve it until stopped: POST /predict and /explain (JSON or "
                    "file uploads), GET /health and /metadata, the OpenAPI page /docs, a demo page at /.")
    serve.add_argument("run", help="a run directory written by `kdl train`")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: "
                            "every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    serve.add_argument("--max-body-mb", type=float, default=16.0,
                       help="largest request body in MiB (default 16); larger is answered 413")
    serve.add_argument("--max-batch", type=int, default=64,
                       help="most inputs in one request (default 64); more is answered 413")
    _unsafe_option(serve)
    serve.set_defaults(handler=_serve)
    return parser


def _predict_options(command, inputs_help):
    _input_options(command, inputs_help)
    command.add_argument("--quiet", action="store_true", help="no progress display on long work")
    formats = command.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_const", dest="output", const="json",
                         help="print a JSON list, one object per input")
    formats.add_argument("--csv", action="store_const", dest="output", const="csv",
                         help="print CSV, a header then one row per input")


def _input_options(command, inputs_help):
    """A run and the inputs to use it on, read as `kdl predict` reads them."""
    command.add_argument("run", help="a run directory written by `kdl train`")
    command.add_argument("inputs", nargs="+", help=inputs_help + "; a folder: its files of the task's "
                                                                  "types, recursively; -: standard input")
    command.add_argument("--text", action="store_true",
                         help="the inputs are literal strings (even one ending in .txt or .npy)")
    _unsafe_option(command)


def _lexicon_options(command, prefix):
    command.add_argument("--words", metavar="FILE", default=None,
                         help=prefix + "the lexicon, a word list file (default: the run's model.words, else "
                                       "its training transcripts' words)")
    command.add_argument("--lm", metavar="FILE", default=None,
                         help=prefix + "an ARPA n-gram language model that ranks word sequences (its words "
                                       "are the lexicon when no --words is given)")


def _unsafe_option(command):
    command.add_argument("--unsafe", action="store_true",
                         help="load a model.keras that holds Python code (Lambda layers); this runs "
                              "code from the file: only for files you trust")


def _tracking_options(command, mlflow):
    """--no-tensorboard, and (mlflow) --track mlflow and --tracking-uri: the [track] section."""
    command.add_argument("--no-tensorboard", action="store_true",
                         help="write no TensorBoard event files (--set track.tensorboard=false)")
    if mlflow:
        command.add_argument("--track", choices=["mlflow"],
                             help="also log the saved run (a study: each trial, nested) to MLflow "
                                  "(pip install 'kdl[track]'; docs/tracking.md)")
        command.add_argument("--tracking-uri", metavar="URI",
                             help="with --track mlflow: the MLflow store or server (default: "
                                  "$MLFLOW_TRACKING_URI, else sqlite:///runs/mlflow.db)")


def _track_overrides(args):
    """The tracking options as `track.*` settings."""
    overrides = ["track.tensorboard=false"] if args.no_tensorboard else []
    if getattr(args, "tracking_uri", None) is not None and getattr(args, "track", None) != "mlflow":
        raise KdlError(f"--tracking-uri {args.tracking_uri!r} names where MLflow logs: add --track mlflow")
    if getattr(args, "track", None) == "mlflow":
        overrides.append("track.mlflow=true")
    if getattr(args, "tracking_uri", None) is not None:
        overrides.append(f"track.tracking_uri={json.dumps(args.tracking_uri)}")    # a TOML string
    return overrides


def _print_tracking(track, task, logdir):
    """Where to look at what was logged."""
    if track.tensorboard:
        print(f"kdl: TensorBoard: tensorboard --logdir {logdir}")
    if track.mlflow:
        from kdl.tracking import mlflow

        uri = mlflow.tracking_uri(track)
        print(f"kdl: logged to MLflow at {uri} (experiment {mlflow.experiment_name(track, task)!r})"
              + (f": mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite:") else ""))


def _data_root_option(command):
    command.add_argument("--data-root", default=None,
                         help="folder that relative dataset paths in recipes are read from "
                              "(default: $KDL_DATA)")


if __name__ == "__main__":
    raise SystemExit(main())
