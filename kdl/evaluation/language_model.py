"""Score a masked language model from its predictions: the true token of every masked position
and the model's probabilities over the vocabulary there.

Masked-token accuracy is the share of masked positions whose most likely token is the true one
(top-k accuracy: among the k most likely); cross-entropy is the mean of -log p(true token) in
nats, and perplexity is exp(cross-entropy). Probabilities are clipped at `FLOOR` before the log,
so a token the model gives exactly 0 costs -log(1e-12) = 27.6 nats rather than infinity.

>>> import numpy as np
>>> probabilities = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]])
>>> report = language_model([1, 2], probabilities, tokens=["[PAD]", "film", "fun"])
>>> report["accuracy"], round(report["perplexity"], 4)            # exp(-(log .7 + log .25) / 2)
(0.5, 2.3905)
>>> report.examples[1]
{'reference': 'fun', 'prediction': '[PAD]', 'probability': 0.25}
"""

import dataclasses

import numpy as np

from kdl.errors import DataError
from kdl.evaluation.report import Report

FLOOR = 1e-12      # probabilities are clipped here before the log
TOP_K = 5          # the top-k accuracy reported besides top-1
NUM_EXAMPLES = 5


@dataclasses.dataclass(eq=False)
class LanguageModelReport(Report, task="language_model"):
    """A `Report` of masked-token "accuracy", "top_5_accuracy", "cross_entropy" (nats) and
    "perplexity", and an "examples" table (context, reference, prediction, probability of the
    reference)."""

    task: str = "language_model"

    @property
    def examples(self):
        return self.tables.get("examples", [])


def language_model(references, probabilities, *, tokens=None, contexts=None, top_k=TOP_K,
                   examples=NUM_EXAMPLES):
    """Masked-token accuracy and perplexity of `probabilities` (N masked positions, vocabulary)
    against `references`, the true token id of each position (N,).

    tokens: the vocabulary (id -> token string), to show the examples as words; contexts: one
    string per masked position (the text it was masked in), shown beside the first `examples`.
    """
    references = np.asarray(references)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or references.shape != probabilities.shape[:1]:
        raise DataError(f"language_model() needs probabilities of shape (masked tokens, vocabulary) and one "
                        f"reference id per masked token; got probabilities {probabilities.shape} and "
                        f"references {references.shape}")
    if not len(references):
        raise DataError("language_model(): no masked tokens to score (every text is empty, or holds only "
                        "unknown words, which are never masked)")
    if references.dtype.kind not in "iu":
        raise DataError(f"language_model(): references must be integer token ids; got {references.dtype}")
    size = probabilities.shape[1]
    outside = references[(references < 0) | (references >= size)]
    if outside.size:
        raise DataError(f"language_model(): reference ids {outside[:5].tolist()} are outside the vocabulary "
                        f"of {size} tokens")
    if not np.isfinite(probabilities).all() or (probabilities < 0).any():
        raise DataError("language_model(): probabilities must be finite and non-negative")
    if contexts is not None and len(contexts) != len(references):
        raise DataError(f"language_model(): got {len(contexts)} contexts for {len(references)} masked tokens")
    rows = np.arange(len(references))
    true = probabilities[rows, references]                                        # (N,)
    predicted = probabilities.argmax(axis=1)                                      # (N,)
    k = min(top_k, size)
    ahead = (probabilities > true[:, None]).sum(axis=1)        # tokens ranked above the true one
    cross_entropy = float(-np.log(np.maximum(true, FLOOR)).mean())
    metrics = {"accuracy": float((predicted == references).mean()),
               f"top_{k}_accuracy": float((ahead < k).mean()),
               "cross_entropy": cross_entropy,
               "perplexity": float(np.exp(cross_entropy))}
    name = (lambda i: tokens[i] if 0 <= i < len(tokens) else str(i)) if tokens is not None else str
    table = [{**({"context": contexts[i]} if contexts is not None else {}),
              "reference": name(int(references[i])), "prediction": name(int(predicted[i])),
              "probability": float(true[i])}
             for i in range(min(examples, len(references)))]
    return LanguageModelReport(metrics=metrics, tables={"examples": table},
                               meta={"num_examples": len(references), "top_k": k})
