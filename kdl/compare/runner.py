"""Run one recipe on several backends, each in its own process, and collect a Comparison.

>>> import kdl
>>> result = kdl.compare("image_classifier", backends=["jax", "torch"], steps=20)  # doctest: +SKIP
>>> print(result)                                                                  # doctest: +SKIP
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from kdl.backend import BACKENDS
from kdl.compare.report import Comparison
from kdl.errors import ConfigError, RunError
from kdl.progress import bar, paused


def compare(recipe, backends=BACKENDS, *, epochs=None, steps=None, batch_size=None, out=None,
            overrides=(), data_root=None, tuned=False, baseline=False, agreement_steps=3,
            timeout=3600, progress=print):
    """Train `recipe` (a recipe .toml file or a task name) on each backend from the same
    initial weights, data order and settings; returns a Comparison (also written to `out`).

    epochs / steps: train that many epochs, or only `steps` batches (one epoch), on each.
    tuned: also run each backend with its own best setting (jit_compile=True: torch.compile
        on torch, XLA on jax/tensorflow), reported as extra rows such as "torch+tuned".
    baseline: in each run, also time a plain `model.fit` and the framework's native training
        loop on the same model, data and initial weights (torch.compile too when `tuned`),
        for the overhead table: kdl's step time over each baseline's.
    A backend that fails (not installed, crash, out of memory, timeout) gets a row with its
    error; the others still run. The report is rewritten after every run, so nothing
    already measured is lost.
    """
    backends = _check_backends(backends)
    if epochs is not None and steps is not None:
        raise ConfigError("give epochs or steps, not both")
    for name, value, least in (("epochs", epochs, 1), ("steps", steps, 1), ("batch_size", batch_size, 1),
                               ("agreement_steps", agreement_steps, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ConfigError(f"compare: {name} must be a whole number of at least {least}; got {value!r}")
    overrides = list(overrides) + ([f"data.batch_size={batch_size}"] if batch_size else [])
    _check_recipe(recipe, overrides)          # before any backend process starts
    out = pathlib.Path(out or tempfile.mkdtemp(prefix="kdl-compare-"))
    if out.exists() and not out.is_dir():
        raise ConfigError(f"compare: --out {str(out)!r} is a file; the report needs a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"compare: cannot make the report folder {str(out)!r}: "
                       f"{error.strerror or error}") from None
    spec = {"recipe": str(recipe), "overrides": overrides, "data_root": data_root and str(data_root),
            "epochs": epochs, "steps": steps, "agreement_steps": agreement_steps,
            "initial_model": str(out / "init" / "initial.keras"),
            "fixed_inputs": str(out / "init" / "fixed_inputs.npz"), "tuned": False,
            "baseline": baseline}
    comparison = Comparison(recipe=str(recipe), settings=_settings(spec), out=out)
    init = None
    for name in backends:   # the first backend that can build the model makes the weights
        progress(f"[init] building the model and initial weights on {name}")
        init = _run_worker(dict(spec, mode="init", out=str(out / "init")), name, timeout, progress)
        if "error" not in init:
            break
        progress(f"[init] {name} failed: {init['error']}")
    comparison.settings["initial_weights_from"] = init.get("backend")
    comparison.settings["parameters"] = init.get("parameters")
    runs = [(name, False) for name in backends] + ([(name, True) for name in backends] if tuned else [])
    for index, (name, is_tuned) in enumerate(runs, 1):
        label = f"{name}+tuned" if is_tuned else name
        progress(f"[{index}/{len(runs)}] {label}: training")
        if "error" in init:
            row = {"backend": name, "error": f"no initial weights: {init['error']}"}
        else:
            run_spec = dict(spec, mode="run", tuned=is_tuned, out=str(out / label),
                            baseline=baseline and not is_tuned, baseline_compiled=tuned,
                            tensorboard=str(out / "tensorboard" / label))   # one TensorBoard run each
            row = _run_worker(run_spec, name, timeout, lambda line: progress(f"  {label}: {line}"),
                              what=f"{label}: training")
        row["label"] = label
        comparison.add(row)
        comparison.write()
        progress(f"[{index}/{len(runs)}] {label}: {comparison.summary(label)}")
    return comparison


def _check_recipe(recipe, overrides):
    """The recipe file or task name and its overrides, read as each worker reads them (one
    ConfigError here rather than one per backend process)."""
    from kdl.compare.worker import make_recipe

    make_recipe({"recipe": str(recipe), "overrides": list(overrides), "data_root": None})


def _run_worker(spec, backend_name, timeout, progress, what="training"):
    """Run one worker process; its result dict, or {"error": ...} saying why it failed. Its
    lines go to `progress`, but for its training steps, shown as a bar (kdl.progress) named `what`."""
    from kdl.compare.worker import STEPS

    folder = pathlib.Path(spec["out"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.json").write_text(json.dumps(spec, indent=2))
    env = dict(os.environ, KERAS_BACKEND=backend_name, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    steps = None
    with open(folder / "stderr.log", "w") as errors:
        process = subprocess.Popen([sys.executable, "-m", "kdl.compare.worker", str(folder / "spec.json")],
                                   stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        try:
            for line in process.stdout:
                if line.startswith(f"{STEPS} "):      # "steps DONE TOTAL"
                    done, total = map(int, line.split()[1:])
                    steps = steps or bar(what=what, total=total, unit="steps")
                    steps.update(done - steps.n)
                    if done >= total:
                        steps.close()
                else:
                    with paused():
                        progress(line.rstrip())
                if time.perf_counter() - start > timeout:
                    raise subprocess.TimeoutExpired(process.args, timeout)
            process.wait(timeout=max(timeout - (time.perf_counter() - start), 1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return {"backend": backend_name, "error": f"timed out after {timeout} s"}
        finally:
            if steps is not None:
                steps.close()
    if process.returncode != 0:
        return {"backend": backend_name, "error": _last_error(folder / "stderr.log", process.returncode)}
    return json.loads((folder / "result.json").read_text())


def _last_error(log, returncode):
    """The line of a worker's stderr that says what went wrong (an exception line if any)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    exceptions = [line for line in lines if line.split(":")[0].endswith(("Error", "Exception"))]
    if returncode < 0:
        return (f"killed by signal {-returncode} (out of memory?)"
                + (f": {exceptions[-1]}" if exceptions else ""))
    return (exceptions or lines or [f"exit status {returncode}"])[-1][:500]


def _check_backends(backends):
    backends = [b.strip() for b in (backends.split(",") if isinstance(backends, str) else backends)]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ConfigError(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    return backends


def _settings(spec):
    keys = ("recipe", "overrides", "epochs", "steps", "agreement_steps", "baseline")
    return {key: spec[key] for key in keys}
