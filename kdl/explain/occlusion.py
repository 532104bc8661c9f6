"""Model-agnostic explanations: they only call a prediction function (inputs -> class
probabilities), so they explain any model, exported ones too (an ONNX or SavedModel session
wrapped as a function).

`occlusion` (Zeiler and Fergus, 2014) slides a window over an image (or a waveform), fills it with
a baseline value and records how much the target class's probability drops. It is a few lines
of NumPy: Captum's `Occlusion` does the same but only for PyTorch modules. Text goes through
shap's Partition explainer (`text_partition`), which masks words in a hierarchy of phrases, a
well-kept implementation we use rather than write again.

>>> import numpy as np
>>> def predict(x):                       # class 1 is "the top-left corner is bright"
...     p = x[:, :2, :2, 0].mean(axis=(1, 2)) / 255
...     return np.stack([1 - p, p], axis=1)
>>> images = np.zeros((1, 8, 8, 1), "float32"); images[0, :2, :2] = 255
>>> heat = occlusion(predict, images, targets=[1], window=2, stride=2)
>>> np.unravel_index(heat[0].argmax(), heat[0].shape)[0] < 2
np.True_
"""

import numpy as np

from kdl.errors import ConfigError


def occlusion(predict, x, targets, window, stride=None, baseline=0.0):
    """(N, *spatial) attributions: per position, the mean drop in the target class's probability
    over the windows that cover it. predict: inputs -> class probabilities (N, C); x: images
    (N, H, W, C) (windows over H, W) or waveforms (N, S) (windows over S); window/stride: an int
    (the same on every axis) or one per axis."""
    return occlusion_scores(lambda batch, i: np.asarray(predict(batch))[:, targets[i]], x, window, stride,
                            baseline)


def occlusion_scores(score, x, window, stride=None, baseline=0.0):
    """`occlusion` of any score: score(batch, i) -> (rows,) the score of each row of a batch of
    versions of input i (a class probability, a transcript's log-probability)."""
    x = np.asarray(x, dtype="float32")
    axes = x.shape[1:3] if x.ndim == 4 else x.shape[1:2]
    window = _per_axis(window, axes, "window")
    stride = _per_axis(stride or [max(1, w // 2) for w in window], axes, "stride")
    starts = [range(0, max(size - w, 0) + 1, s) for size, w, s in zip(axes, window, stride)]
    corners = np.stack(np.meshgrid(*starts, indexing="ij"), axis=-1).reshape(-1, len(axes))
    heat = np.zeros((len(x), *axes), "float32")
    for i in range(len(x)):
        variants = np.repeat(x[i:i + 1], len(corners), axis=0)                     # (windows, ...)
        covered = np.zeros((len(corners), *axes), bool)
        for k, corner in enumerate(corners):
            box = tuple(slice(c, c + w) for c, w in zip(corner, window))
            variants[(k, *box)] = baseline
            covered[(k, *box)] = True
        scores = np.asarray(score(np.concatenate([x[i:i + 1], variants]), i))
        drops = scores[0] - scores[1:]                                              # (windows,)
        counts = covered.sum(axis=0)
        heat[i] = np.tensordot(drops, covered, axes=1) / np.maximum(counts, 1)
    return heat


def _per_axis(value, axes, name):
    values = [value] * len(axes) if np.isscalar(value) else list(value)
    if len(values) != len(axes) or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in values):
        raise ConfigError(f"occlusion {name} must be a whole number >= 1 or one per axis "
                          f"({len(axes)}); got {value!r}")
    return [min(int(v), size) for v, size in zip(values, axes)]


def text_partition(predict, texts, targets, max_evals=300):
    """(tokens, attributions): shap's Partition explainer over the words of each text, a masked
    word (a run of masked words together) replaced with "...". tokens: per text its words;
    attributions: per text (words,) the target class's SHAP values (they sum to f(text) -
    f(every word masked)). `predict`: a list of strings -> class probabilities (N, C)."""
    import shap

    # words split on non-word characters; a masked run of words becomes one "..." (kdl's word
    # tokenizer drops punctuation, so for it a masked word is a removed word)
    masker = shap.maskers.Text(mask_token="...", collapse_mask_token=True)
    explainer = shap.Explainer(lambda batch: np.asarray(predict([str(t) for t in batch])), masker,
                               algorithm="partition", seed=0)
    explained = explainer(list(texts), max_evals=max_evals, silent=True)
    tokens = [[str(token).strip() for token in explained[i].data] for i in range(len(texts))]
    values = [np.asarray(explained[i].values)[:, targets[i]] for i in range(len(texts))]
    return tokens, values
