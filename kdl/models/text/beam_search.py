"""Beam search over a trained `translator` model's layers, with key/value caches.

`BeamSearch` finds the translator's layers by name (source_embedding, encoder_0.., encoder_norm,
target_embedding, decoder_0.., decoder_norm, logits). `beam_size=1` is greedy search. It is a
keras.Model, so `predict` compiles it on every backend (XLA on JAX and TensorFlow).

>>> import numpy as np
>>> from kdl.models.text.translator import translator
>>> model = translator(source_vocabulary_size=50, target_vocabulary_size=60, max_length=9,
...                    encoder_layers=1, decoder_layers=1, width=16, heads=2, intermediate=32)
>>> search = BeamSearch(model, max_length=8, start_id=2, end_id=3, beam_size=2)
>>> tokens, scores = search.predict(np.array([[5, 6, 7, 0]], "int32"), verbose=0)
>>> tokens.shape, scores.shape
((1, 10), (1,))
"""

import keras
from keras import ops

NEG_INF = -1e9


class BeamSearch(keras.Model):
    """Beam search (greedy when `beam_size=1`) over a trained `translator` model's layers.

    Input: source ids (B, S) int32. Output: `(tokens, scores)`: tokens (B, max_length + 2) int32,
    the start token, the translation, the end token, then padding; scores (B,) the model's
    log-probability of that sequence. Finished beams are frozen; among the final beams the best
    by `score / ((5 + length) / 6) ** length_penalty` wins (0 = plain log-probability).
    """

    def __init__(self, model, *, max_length, start_id, end_id, beam_size=4, length_penalty=0.6, **kwargs):
        super().__init__(**kwargs)
        self.source_embedding = model.get_layer("source_embedding")
        self.encoders = _numbered(model, "encoder_")
        self.encoder_norm = model.get_layer("encoder_norm")
        self.target_embedding = model.get_layer("target_embedding")
        self.decoders = _numbered(model, "decoder_")
        self.decoder_norm = model.get_layer("decoder_norm")
        self.logits = model.get_layer("logits")
        self.max_length, self.beam_size, self.length_penalty = max_length, beam_size, length_penalty
        self.start_id, self.end_id = start_id, end_id
        width = self.target_embedding.embedding_dim
        self.heads = self.decoders[0].num_heads
        self.head_size = width // self.heads
        self.built = True

    def _decode_step(self, token, index, encoded, source_mask, caches, cross_caches, fill_cross):
        """One token per row (N,) at position `index` -> log-probabilities (N, V), new caches."""
        y = self.target_embedding(token[:, None], start_index=index)                  # (N, 1, W)
        new_caches, new_cross = [], []
        for decoder, cache, cross in zip(self.decoders, caches, cross_caches):
            y, cache, cross = decoder(
                y, encoded, encoder_padding_mask=source_mask, self_attention_cache=cache,
                self_attention_cache_update_index=index, cross_attention_cache=cross,
                cross_attention_cache_update_index=0 if fill_cross else None)          # (N, 1, W)
            new_caches.append(cache)
            new_cross.append(cross)
        logits = self.logits(self.decoder_norm(y))[:, 0, :]                           # (N, V)
        return ops.log_softmax(ops.cast(logits, "float32"), axis=-1), new_caches, new_cross

    def call(self, source_ids):
        k, length = self.beam_size, self.max_length + 1          # decoder positions 0..length-1
        source_ids = ops.cast(source_ids, "int32")                                   # (B, S)
        batch, source_length = ops.shape(source_ids)[0], ops.shape(source_ids)[1]
        source_ids = ops.repeat(source_ids, k, axis=0)                                # (N=B*K, S)
        source_mask = ops.not_equal(source_ids, 0)                                    # (N, S)
        x = self.source_embedding(source_ids)                                         # (N, S, W)
        for encoder in self.encoders:
            x = encoder(x, padding_mask=source_mask)                                  # (N, S, W)
        encoded = self.encoder_norm(x)                                                # (N, S, W)
        n = batch * k
        caches = [ops.zeros((n, 2, length, self.heads, self.head_size), encoded.dtype)
                  for _ in self.decoders]                                             # (N, 2, L, H, D)
        cross = [ops.zeros((n, 2, source_length, self.heads, self.head_size), encoded.dtype)
                 for _ in self.decoders]                                              # (N, 2, S, H, D)
        tokens = ops.zeros((n, length + 1), "int32")                                  # (N, L + 1)
        tokens = ops.slice_update(tokens, [0, 0], ops.full((n, 1), self.start_id, "int32"))
        start = ops.full((n,), self.start_id, "int32")
        log_probs, caches, cross = self._decode_step(start, 0, encoded, source_mask, caches, cross, True)
        # only the first beam of each source is live at first, so the K beams come out distinct
        first = ops.tile(ops.convert_to_tensor([0.0] + [NEG_INF] * (k - 1)), [batch])  # (N,)
        state = (tokens, ops.stack(caches), first, ops.zeros((n,), "bool"),
                 log_probs, ops.convert_to_tensor(1, "int32"))

        def cond(tokens, caches, scores, finished, log_probs, index):
            return ops.logical_not(ops.all(finished))

        def body(tokens, caches, scores, finished, log_probs, index):
            vocabulary = ops.shape(log_probs)[-1]
            # a finished beam can only add padding (id 0), at no cost
            pad_only = ops.where(ops.arange(vocabulary) == 0, 0.0, NEG_INF)            # (V,)
            log_probs = ops.where(finished[:, None], pad_only[None, :], log_probs)      # (N, V)
            candidates = ops.reshape(scores[:, None] + log_probs, (batch, k * vocabulary))
            scores, picked = ops.top_k(candidates, k)                                  # (B, K)
            beam = picked // vocabulary + ops.arange(batch)[:, None] * k               # (B, K) rows
            beam, token = ops.reshape(beam, (-1,)), ops.cast(ops.reshape(picked % vocabulary, (-1,)), "int32")
            tokens = ops.take(tokens, beam, axis=0)
            tokens = ops.slice_update(tokens, [0, index], token[:, None])             # (N, L + 1)
            caches = ops.take(caches, beam, axis=1)                                   # (layers, N, ...)
            finished = ops.logical_or(ops.take(finished, beam, axis=0),
                                      ops.logical_or(token == self.end_id, index >= length))
            step = ops.minimum(index, length - 1)           # past the end: a throw-away step
            next_log_probs, new_caches, _ = self._decode_step(
                token, step, encoded, source_mask, ops.unstack(caches), cross, False)
            return (tokens, ops.stack(new_caches), ops.reshape(scores, (-1,)), finished,
                    next_log_probs, index + 1)

        tokens, _, scores, _, _, _ = ops.while_loop(cond, body, state, maximum_iterations=length)
        lengths = ops.sum(ops.cast(ops.not_equal(tokens, 0), "float32"), axis=-1) - 1.0  # (N,)
        penalty = ops.power((5.0 + lengths) / 6.0, self.length_penalty)
        ranked = ops.reshape(scores / penalty, (batch, k))
        best = ops.argmax(ranked, axis=-1) + ops.arange(batch) * k                     # (B,)
        return ops.take(tokens, best, axis=0), ops.take(scores, best, axis=0)


def _numbered(model, prefix):
    """The layers named prefix0, prefix1, ... in order."""
    found = {int(layer.name[len(prefix):]): layer for layer in model.layers
             if layer.name.startswith(prefix) and layer.name[len(prefix):].isdigit()}
    return [found[i] for i in sorted(found)]
