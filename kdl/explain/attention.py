"""Attention maps (method "attention"): the softmax weights of a Transformer's multi-head
attention layers, recorded during one eager forward pass of the unchanged model.

A text classifier gives each encoder block's self-attention, (N, layers, heads, L, L), rows and
columns the input's tokens; a translator gives each decoder block's cross-attention for its own
translation, (N, layers, heads, T, S), rows the translation's tokens, columns the source's.

keras-hub's TransformerEncoder/Decoder layers do not return their attention weights (and the
models do not output them), so `recording` wraps each keras MultiHeadAttention layer's
`_compute_attention` for the pass to ask it for its weights too, then restores the layer. The
model's outputs are the same (its layers compute attention the explicit way while recording), on
JAX, TensorFlow and PyTorch alike.

>>> import keras, numpy as np
>>> x = keras.Input((3, 8))
>>> block = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
>>> model = keras.Model(x, block(x, x))
>>> applies(model)
True
>>> with recording([block]) as kept:
...     _ = model(np.ones((1, 3, 8), "float32"), training=False)
>>> [(layer is block, weights.shape) for layer, weights in kept]            # (B, heads, T, S)
[(True, (1, 2, 3, 3))]
>>> clf = kdl.recipes.load("runs/sst2_transformer")                          # doctest: +SKIP
>>> attention(clf, ["a gripping, funny film"]).attributions.shape            # doctest: +SKIP
(1, 2, 4, 64, 64)
"""

import contextlib

import keras
import numpy as np
from keras import ops

from kdl.errors import ConfigError
from kdl.explain.explanation import Explanation

TASKS = ("text_classifier", "translator")


def attention_layers(model):
    """The model's keras MultiHeadAttention layers at any depth (keras-hub's blocks hold them;
    keras-hub's CachedMultiHeadAttention is one)."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.MultiHeadAttention)]


def applies(model):
    """Whether the model has multi-head attention layers to explain."""
    return model is not None and bool(attention_layers(model))


@contextlib.contextmanager
def recording(layers):
    """Within it, each of `layers` (keras MultiHeadAttention) appends (layer, weights) to the
    list it yields each time it runs, weights (B, heads, T, S) NumPy float32 (eager calls
    only). The layers are restored on leaving, also after an error."""
    layers = list(dict.fromkeys(layers))
    kept = []
    saved = [(layer, vars(layer).get("_compute_attention"), layer._flash_attention) for layer in layers]
    try:
        for layer in layers:
            # set on the instance, past Keras' attribute tracking; the class keeps its method
            object.__setattr__(layer, "_compute_attention", _keeping(layer, kept))
            object.__setattr__(layer, "_flash_attention", False)   # flash attention gives no weights
        yield kept
    finally:
        for layer, own, flash in saved:
            if own is None:
                vars(layer).pop("_compute_attention", None)
            else:
                object.__setattr__(layer, "_compute_attention", own)
            object.__setattr__(layer, "_flash_attention", flash)


def _keeping(layer, kept):
    """`layer._compute_attention` that always computes the weights and keeps a copy of them."""
    compute = layer._compute_attention

    def compute_and_keep(query, key, value, attention_mask=None, training=None,
                         return_attention_scores=False, **options):
        output, weights = compute(query, key, value, attention_mask, training, True, **options)
        kept.append((layer, ops.convert_to_numpy(ops.cast(weights, "float32"))))  # (B, heads, T, S)
        return output, (weights if return_attention_scores else None)

    return compute_and_keep


def forward(model, layers, inputs, batch_size=64):
    """Eager passes of `model` over `inputs` (an array or a dict of arrays, N rows) in batches ->
    (outputs (N, ...), weights (N, layers, heads, T, S) in the order the layers ran, their paths
    such as "decoder_0/cross_attention")."""
    paths = _paths(model)
    count = len(next(iter(inputs.values())) if isinstance(inputs, dict) else inputs)
    outputs, weights, names = [], [], []
    for start in range(0, count, batch_size):
        rows = slice(start, start + batch_size)
        batch = {key: value[rows] for key, value in inputs.items()} if isinstance(inputs, dict) \
            else inputs[rows]
        with recording(layers) as kept:
            outputs.append(ops.convert_to_numpy(model(batch, training=False)))
        weights.append(np.stack([w for _, w in kept], axis=1))                 # (B, layers, heads, T, S)
        names = [paths.get(id(layer), layer.name) for layer, _ in kept]
    return np.concatenate(outputs), np.concatenate(weights).astype("float32"), names


def _paths(model):
    """{id(layer): "outer/inner"} for every layer inside `model`."""
    paths, queue = {}, [(layer, layer.name) for layer in model._layers]
    while queue:
        layer, path = queue.pop(0)
        if id(layer) not in paths:
            paths[id(layer)] = path
            queue += [(child, f"{path}/{child.name}") for child in getattr(layer, "_layers", [])]
    return paths


def self_attention(model, ids, batch_size=64):
    """Token ids (N, L) -> (the model's outputs (N, ...), the self-attention weights of every
    block (N, layers, heads, L, L) with padding query rows zero, the layers' paths)."""
    ids = np.asarray(ids, "int32")
    outputs, weights, names = forward(model, attention_layers(model), ids, batch_size)
    return outputs, weights * (ids != 0)[:, None, None, :, None], names


def cross_layers(model):
    """The cross-attention layers of the model's Transformer decoder blocks (keras-hub's
    TransformerDecoder keeps its own as `_cross_attention_layer`)."""
    return [layer._cross_attention_layer for layer in model._flatten_layers(include_self=False)
            if getattr(layer, "_cross_attention_layer", None) is not None]


def cross_attention(model, source_ids, target_ids, batch_size=64):
    """A teacher-forced pass of a translator model -> (the cross-attention weights of every
    decoder block (N, layers, heads, T, S), the layers' paths).

    source_ids: (N, S); target_ids: (N, T + 1), start token, translation, end token, padding
    (what the recipe's `decode` gives). Row t is the step that produced target_ids[:, t + 1];
    the rows after the last token produced are zero (`produced_rows`)."""
    source_ids, target_ids = np.asarray(source_ids, "int32"), np.asarray(target_ids, "int32")
    inputs = {"source_ids": source_ids, "target_ids": target_ids[:, :-1]}       # (N, S), (N, T)
    _, weights, names = forward(model, cross_layers(model), inputs, batch_size)
    return weights * produced_rows(target_ids)[:, None, None, :, None], names


def produced_rows(target_ids):
    """Target ids (N, T + 1) as `decode` gives them -> (N, T) bool: the steps up to the last
    token produced (an untrained model may produce id 0 before its end token: still a step)."""
    produced = np.asarray(target_ids)[:, 1:]                                   # (N, T)
    steps = np.arange(produced.shape[1])                                       # (T,)
    last = np.where(produced != 0, steps, -1).max(axis=1)                      # (N,)
    return steps[None, :] <= last[:, None]                                     # (N, T)


def check(recipe):
    """A ConfigError unless `recipe` is a trained text classifier with Transformer blocks or a
    translator (the message ends without a full stop, so a caller may add to it)."""
    model = recipe.config.model
    what = f"task {recipe.task!r} with model {model.name!r}{_backbone(model)}"
    if recipe.task not in TASKS:
        raise ConfigError(f"attention maps need a Transformer (a text_classifier with Transformer blocks, "
                          f"or a translator); got {what}")
    if recipe.model is None:
        raise ConfigError("cannot explain: this recipe has no model yet; call fit() first or load a "
                          "trained run with kdl.recipes.load(run_dir)")
    if not applies(recipe.model):
        raise ConfigError(f"attention maps need a Transformer: {what} has no multi-head attention layers "
                          "(a text_classifier with model 'transformer' or 'bert' has them)")


def _backbone(model):
    backbone = getattr(model, "backbone", None)
    return f", backbone {backbone!r}" if backbone else ""


def attention(recipe, inputs, names=None, *, beam_size=None, length_penalty=None):
    """The attention maps of a text classifier or a translator for `inputs` (strings, as its
    `predict` takes them) -> Explanation(method="attention", modality="attention").

    A translator explains its own translation, decoded with `beam_size` and `length_penalty`
    (default: its config's decode section); a text classifier ignores them."""
    check(recipe)
    if recipe.task == "translator":
        return _translator(recipe, inputs, names, beam_size, length_penalty)
    return _text_classifier(recipe, inputs, names)


def _text_classifier(recipe, inputs, names):
    ids = recipe.prepare_inputs(inputs)                                          # (N, L)
    probabilities, weights, layers = self_attention(recipe.model, ids, recipe.config.data.batch_size)
    best = probabilities.argmax(axis=-1)                                         # (N,)
    classes = [recipe.class_names[i] for i in best]
    return Explanation("attention", "attention", weights, ids, classes, list(classes),
                       probabilities[np.arange(len(best)), best].astype("float32"),
                       settings={"attention": "self", "layers": layers}, names=names,
                       tokens=recipe.tokenizer.tokens(ids))


def _translator(recipe, inputs, names, beam_size, length_penalty):
    decode = recipe.config.decode
    beam_size = decode.beam_size if beam_size is None else beam_size
    length_penalty = decode.length_penalty if length_penalty is None else length_penalty
    source_ids = recipe.source_ids(recipe.prepare_inputs(inputs))                # (N, S)
    target_ids, log_probabilities = recipe.decode(source_ids, beam_size, length_penalty)  # (N, T + 1), (N,)
    weights, layers = cross_attention(recipe.model, source_ids, target_ids, recipe.config.data.batch_size)
    translations = recipe.tokenizers["target"].detokenize(target_ids)
    probability = np.exp(np.asarray(log_probabilities, "float64")).astype("float32") \
        if log_probabilities is not None else np.full(len(source_ids), np.nan, "float32")
    return Explanation("attention", "attention", weights, source_ids, translations, list(translations),
                       probability, settings={"attention": "cross", "layers": layers, "beam_size": beam_size,
                                              "length_penalty": length_penalty},
                       names=names, tokens=recipe.tokenizers["source"].tokens(source_ids),
                       target_tokens=_row_tokens(recipe.tokenizers["target"], target_ids))


def _row_tokens(tokenizer, target_ids):
    """The token each row produced, "" after the last; a padding id produced before it: "[PAD]"."""
    rows = produced_rows(target_ids)                                           # (N, T)
    return [[token or ("[PAD]" if real else "") for token, real in zip(tokens, row)]
            for tokens, row in zip(tokenizer.tokens(np.asarray(target_ids)[:, 1:]), rows)]
