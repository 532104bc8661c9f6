"""Why a model decided: `recipe.explain(inputs, method=...)` and `kdl explain`, the same on every
backend (see docs/explain.md).

Methods: "integrated_gradients" (image pixels, text token embeddings, audio log-mel features or
waveform), "grad_cam" (models with 2-D convolutions: image and audio CNNs, the speech
recognizer's front-end), "occlusion" (model-agnostic: images, waveforms; text through shap's
Partition explainer) and "attention" (Transformer text classifiers and translators).
`methods(recipe)` lists those that apply. Classifiers explain a class's probability; the speech
recognizer explains the log-probability of its greedy transcript's best CTC path.

>>> import kdl
>>> clf = kdl.recipes.load("runs/digits_cnn")                             # doctest: +SKIP
>>> explanation = clf.explain(images[:4], method="grad_cam")             # doctest: +SKIP
>>> explanation.attributions.shape, explanation.save("explained/")       # doctest: +SKIP
"""

import dataclasses

import numpy as np
import scipy.ndimage

from kdl.errors import ConfigError, DataError, warn
from kdl.explain import gradients, occlusion
from kdl.explain.explanation import Explanation

METHODS = ("integrated_gradients", "grad_cam", "occlusion", "attention")
SETTINGS = {    # each method's settings and their defaults
    "integrated_gradients": {"steps": 32, "baseline": None, "at": None, "tolerance": gradients.TOLERANCE},
    "grad_cam": {"layer": None, "variant": "hires"},
    "occlusion": {"window": None, "stride": None, "baseline": 0.0, "max_evals": 300},
    "attention": {"beam_size": None, "length_penalty": None},     # a translator's decoding
}

__all__ = ["Explanation", "METHODS", "explain", "methods", "agreement_attributions"]


def methods(recipe):
    """The methods that apply to this recipe's model, in METHODS order."""
    from kdl.explain import attention

    found = []
    scored = _scored(recipe)
    if scored and recipe.explain_point() is not None:
        found.append("integrated_gradients")
    if scored and recipe.modality in ("image", "audio") and gradients.conv_layers(recipe.model):
        found.append("grad_cam")
    if scored:
        found.append("occlusion")
    if recipe.task in ("text_classifier", "translator") and attention.applies(recipe.model):
        found.append("attention")
    return found


def explain(recipe, inputs, method="integrated_gradients", target=None, names=None, **settings):
    """An Explanation of `recipe`'s model on raw `inputs` (what `recipe.predict` takes).

    target: the class to explain, by name or index, one for all inputs or one per input
    (default: each input's predicted class). settings: the method's own (SETTINGS)."""
    recipe._require_model("explain")
    if method not in METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; choose one of {', '.join(METHODS)}")
    usable = methods(recipe)
    if method not in usable:
        raise ConfigError(f"{method!r} does not apply to this {recipe.task} model "
                          f"({recipe.model.name}){_why(method)}; methods that do: "
                          f"{', '.join(usable) or 'none'}")
    unknown = sorted(set(settings) - set(SETTINGS[method]))
    if unknown:
        raise ConfigError(f"{method} has no setting {unknown[0]!r}; its settings: "
                          f"{', '.join(SETTINGS[method]) or 'none'}")
    settings = {**SETTINGS[method], **{k: v for k, v in settings.items() if v is not None}}
    if method == "attention":
        from kdl.explain import attention

        return attention.attention(recipe, inputs, names=names, beam_size=settings["beam_size"],
                                   length_penalty=settings["length_penalty"])
    x = recipe.prepare_inputs(inputs)
    if names is not None and len(names) != len(x):
        raise DataError(f"explain() got {len(names)} names for {len(x)} inputs")
    scored = _score(recipe, x, target)
    explained = {"integrated_gradients": _integrated_gradients, "grad_cam": _grad_cam,
                 "occlusion": _occlusion}[method](recipe, inputs, x, scored, settings)
    return Explanation(method, recipe.modality, inputs=x, predicted=scored.predicted, target=scored.target,
                       probability=scored.probability, names=names, **explained,
                       settings={"method": method, **_plain_settings(settings)})


def _scored(recipe):
    """Whether the recipe's model gives a score per input to explain: a class probability, or the
    log-probability of a recognizer's transcript."""
    from kdl.recipes.classifier import Classifier

    return isinstance(recipe, Classifier) or recipe.task == "speech_recognizer"


@dataclasses.dataclass
class Score:
    """What is explained: per input, the sum of the model's output times `selection` (N, *output)."""

    selection: np.ndarray
    predicted: list
    target: list
    probability: np.ndarray      # (N,) the target's probability (a transcript's best path)


def _score(recipe, x, target):
    outputs = recipe.model.predict(x, batch_size=recipe.config.data.batch_size, verbose=0)
    if recipe.task == "speech_recognizer":      # (N, frames, characters + 1) log-probabilities
        if target is not None:
            raise ConfigError("a speech_recognizer explains the transcript it decodes itself (its best "
                              f"CTC path, greedy); target must be None, got {target!r}")
        selection = np.eye(outputs.shape[-1], dtype="float32")[outputs.argmax(axis=-1)]
        transcripts = recipe.decode(outputs, "greedy")
        return Score(selection, transcripts, transcripts, np.exp((outputs * selection).sum(axis=(1, 2))))
    classes = list(recipe.class_names)
    predicted = outputs.argmax(axis=1)
    targets = _targets(target, predicted, classes)
    return Score(np.eye(len(classes), dtype="float32")[targets], [classes[i] for i in predicted],
                 [classes[i] for i in targets], outputs[np.arange(len(x)), targets])


def agreement_attributions(recipe, x, count=4, steps=32):
    """Integrated gradients of class 0 for the first `count` examples of a prepared input batch
    `x`, with exactly `steps` steps: what `kdl compare` checks the backends agree on under the
    shared initial weights. None when the model has no point to attribute to."""
    point = recipe.explain_point() if recipe.model is not None and _scored(recipe) else None
    if point is None or not isinstance(x, np.ndarray):
        return None
    x = x[:count]
    selection = np.zeros((len(x), *recipe.model.output.shape[1:]), "float32")
    selection[(slice(None),) + (0,) * (selection.ndim - 1)] = 1.0     # class 0 (a recognizer: frame 0 blank)
    return gradients.integrated_gradients(recipe.model, x, point[0], selection, steps=steps,
                                          tolerance=np.inf).attributions


def _why(method):
    return {"grad_cam": ": it needs a 2-D convolution (an image or audio CNN) at the model's top level",
            "integrated_gradients": ": it needs differentiable inputs (pixels, token embeddings at the "
                                    "model's top level, log-mel features) and class outputs",
            "attention": ": it needs a Transformer text classifier or translator",
            "occlusion": ": it needs a classifier of images, text or audio"}[method]


def _plain_settings(settings):
    return {k: ("array" if isinstance(v, np.ndarray) else v) for k, v in settings.items()}


def _targets(target, predicted, classes):
    """Class indices (N,): the predicted ones, or `target` (a name or index, or one per input)."""
    if target is None:
        return predicted
    wanted = list(target) if isinstance(target, (list, tuple, np.ndarray)) else [target] * len(predicted)
    if len(wanted) != len(predicted):
        raise DataError(f"explain() got {len(wanted)} targets for {len(predicted)} inputs; give one "
                        "target for all or one per input")
    found = []
    for item in wanted:
        if isinstance(item, str) and item in classes:
            found.append(classes.index(item))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool) and 0 <= item < len(classes):
            found.append(int(item))
        else:
            raise DataError(f"explain() target {item!r} is not a class of this model; its classes: "
                            f"{', '.join(classes[:20])}{' ...' if len(classes) > 20 else ''} (or their "
                            f"indices 0..{len(classes) - 1})")
    return np.asarray(found)


def _point(recipe, at):
    """(layer name, what) where integrated gradients attributes: the task's point, or (None) the
    model's input."""
    if at in (None, "features", "embeddings", "pixels"):
        return recipe.explain_point()
    if at in ("input", "waveform") and recipe.modality in ("image", "audio"):
        return None, "input"
    raise ConfigError(f"integrated_gradients at={at!r}: choose the default (None) or, for image and "
                      "audio models, 'input' (pixels or waveform samples)")


def _baseline(recipe, x, baseline):
    """(input baseline or None, baseline at the point or None) for integrated gradients."""
    if baseline is None:
        return np.zeros_like(x), None      # black image, all padding, silence
    if isinstance(baseline, str):
        if baseline == "zeros":
            return None, 0.0
        if baseline == "blur" and recipe.modality == "image":
            sigma = (0, x.shape[1] / 8, x.shape[2] / 8, 0)
            return scipy.ndimage.gaussian_filter(x, sigma).astype(x.dtype), None
        raise ConfigError(f"integrated_gradients baseline {baseline!r}: choose None (a black image, all "
                          "padding, silence), 'zeros' (zeros where attributions are computed), 'blur' "
                          "(images), a number or an array shaped like the inputs")
    if recipe.modality == "text":
        raise ConfigError("integrated_gradients on text takes baseline None (all padding) or 'zeros'")
    value = np.asarray(baseline, dtype=x.dtype)
    if value.ndim and value.shape != x.shape and value.shape != x.shape[1:]:
        raise DataError(f"integrated_gradients baseline has shape {value.shape}; expected a number, "
                        f"one input {x.shape[1:]} or the batch {x.shape}")
    return np.broadcast_to(value, x.shape).copy(), None


def _integrated_gradients(recipe, inputs, x, scored, settings):
    point, _ = _point(recipe, settings["at"])
    start, at_point = _baseline(recipe, x, settings["baseline"])
    found = gradients.integrated_gradients(
        recipe.model, x, point, scored.selection, baseline=start, baseline_point=at_point,
        steps=int(settings["steps"]), tolerance=float(settings["tolerance"]))
    converged = gradients.within(found.gaps, found.differences, settings["tolerance"])
    if not converged:
        warn(f"integrated gradients did not converge: the largest completeness gap is "
             f"{found.gaps.max():.3g} (tolerance {settings['tolerance']} x max(1, |f(x) - f(baseline)|)) "
             f"after {found.steps} steps")
    checks = {"completeness_gap": found.gaps, "difference": found.differences, "steps": found.steps,
              "tolerance": settings["tolerance"], "converged": converged}
    attributions = found.attributions
    explained = {"checks": checks}
    if recipe.modality == "image":
        attributions = attributions.sum(axis=-1)                      # (N, H, W): over colours
    elif recipe.modality == "text":
        attributions = attributions.sum(axis=-1)                      # (N, L): over the embedding
        explained["tokens"] = recipe.tokenizer.tokens(x)
    elif recipe.modality == "audio":
        explained["features"] = found.values if point is not None else _features(recipe, x)
    return {**explained, "attributions": attributions.astype("float32")}


def _features(recipe, x):
    """The log-mel features the audio model computes from waveforms x."""
    point, _ = recipe.explain_point()
    front, _, _ = gradients.split(recipe.model, point)
    return gradients._numpy(front(x, training=False))


def _grad_cam(recipe, inputs, x, scored, settings):
    layers = gradients.conv_layers(recipe.model)
    name = settings["layer"]
    if name is None:
        layer = layers[-1]
    else:
        layer = next((layer for layer in layers if layer.name == name), None)
        if layer is None:
            raise ConfigError(f"grad_cam layer {name!r} is not a 2-D convolution of this model; its "
                              f"convolutions: {', '.join(layer.name for layer in layers)}")
    explained = {}
    if recipe.modality == "audio":
        explained["features"] = _features(recipe, x)
        shape = explained["features"].shape[1:3]
    else:
        shape = x.shape[1:3]
    if settings["variant"] not in ("hires", "mean"):
        raise ConfigError(f"grad_cam variant must be 'hires' (HiResCAM, the default) or 'mean' (the "
                          f"original Grad-CAM); got {settings['variant']!r}")
    cams = gradients.grad_cam(recipe.model, x, layer.name, scored.selection, shape, settings["variant"])
    settings["layer"] = layer.name
    return {**explained, "attributions": cams.astype("float32")}


def _occlusion(recipe, inputs, x, scored, settings):
    def predict(batch):
        return recipe.model.predict(batch, batch_size=recipe.config.data.batch_size, verbose=0)

    if recipe.modality == "text":
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        targets = scored.selection.argmax(axis=1)
        words, values = occlusion.text_partition(
            lambda batch: predict(recipe.prepare_inputs(batch)), texts, targets, int(settings["max_evals"]))
        width = max(len(w) for w in words)
        attributions = np.zeros((len(texts), width), "float32")
        for i, row in enumerate(values):
            attributions[i, :len(row)] = row
        settings.update(window=None, stride=None, baseline="masked words -> ...")
        return {"attributions": attributions, "tokens": [w + [""] * (width - len(w)) for w in words]}
    axes = x.shape[1:3] if recipe.modality == "image" else x.shape[1:2]
    window = settings["window"] or [max(1, size // 8) for size in axes]
    settings["window"] = window
    def score(batch, i):        # (rows,): the sum of the output times input i's selection
        selected = predict(batch) * scored.selection[i]
        return selected.reshape(len(batch), -1).sum(axis=1)

    heat = occlusion.occlusion_scores(score, x, window, settings["stride"], settings["baseline"])
    explained = {"features": _features(recipe, x)} if recipe.modality == "audio" else {}
    return {**explained, "attributions": heat}
