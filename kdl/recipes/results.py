"""What `recipe.predict` returns, one type per kind of task, each with the same three faces:
its natural fields (labels, translations, transcripts), `.rows()` (one JSON-ready dict per
input, the CLI's table) and `.to_json()`; `.outputs` holds the model's numbers behind it, and
`.score(references)` scores it with the task's function in `kdl.evaluation`.

>>> import numpy as np
>>> result = Classification.from_probabilities(np.array([[0.2, 0.8]]), ["cat", "dog"])
>>> result.labels, result.rows()[0]["label"]
(['dog'], 'dog')
>>> Translation(["a cat"], ["eine Katze"], np.array([-0.5])).rows()
[{'source': 'a cat', 'translation': 'eine Katze', 'log_probability': -0.5}]
"""

import dataclasses
import json
import re

import numpy as np

from kdl import evaluation
from kdl.errors import ConfigError, DataError


class Result:
    """The shape every task's result shares; subclasses are dataclasses with the task's fields."""

    scorer = None      # the kdl.evaluation function that scores this kind of result
    per_input = ()     # the fields with one entry per input (the others are settings)

    @classmethod
    def concatenate(cls, results):
        """One result of several of this type, in order (a dataset's splits, scored as one
        set): the per-input fields joined, the settings of the first."""
        first = results[0]
        joined = {}
        for name in (field.name for field in dataclasses.fields(first)):
            parts = [getattr(result, name) for result in results]
            if name not in cls.per_input:
                joined[name] = parts[0]
            elif isinstance(parts[0], np.ndarray):
                joined[name] = np.concatenate(parts)
            else:
                joined[name] = [item for part in parts for item in part]
        return cls(**joined)

    def rows(self, top_k=1):
        """One JSON-ready dict per input (`top_k`: classes to list, for classifiers)."""
        raise NotImplementedError

    def lines(self, top_k=1):
        """One line of text per input: what the CLI prints after the input's name."""
        raise NotImplementedError

    def to_json(self, top_k=1):
        return json.dumps(self.rows(top_k), ensure_ascii=False, indent=2)

    def score(self, references):
        """A kdl.evaluation Report of this result against the true `references`."""
        raise NotImplementedError

    def __len__(self):
        return len(self.outputs)


@dataclasses.dataclass
class Classification(Result):
    """Class names and probabilities, one per input."""

    labels: list                # predicted class name per input
    class_ids: np.ndarray       # (N,) predicted class index
    probabilities: np.ndarray   # (N, num_classes)
    class_names: list

    scorer = staticmethod(evaluation.classification)
    per_input = ("labels", "class_ids", "probabilities")

    @classmethod
    def from_probabilities(cls, probabilities, class_names):
        class_ids = np.argmax(probabilities, axis=-1)
        return cls([class_names[i] for i in class_ids], class_ids, probabilities, list(class_names))

    @property
    def outputs(self):
        return self.probabilities

    def top(self, k=3):
        """Per input, the k most likely (class name, probability) pairs (1 <= k <= classes)."""
        if not (isinstance(k, int) and 1 <= k <= len(self.class_names)):
            raise ConfigError(f"top k must be a whole number from 1 to {len(self.class_names)} (the "
                              f"number of classes); got {k!r}")
        order = np.argsort(-self.probabilities, axis=-1)[:, :k]
        return [[(self.class_names[i], float(row[i])) for i in top] for top, row in
                zip(order, self.probabilities)]

    def rows(self, top_k=1):
        return [{"label": best[0][0], "probability": best[0][1],
                 "top": [{"label": label, "probability": p} for label, p in best]}
                for best in self.top(top_k)]

    def lines(self, top_k=1):
        return [", ".join(f"{label} ({p:.3f})" for label, p in best) for best in self.top(top_k)]

    def score(self, references):
        return self.scorer(references, self.probabilities, class_names=self.class_names)


@dataclasses.dataclass
class Translation(Result):
    """Translations of source sentences, with the model's log-probability of each."""

    sources: list
    translations: list
    log_probabilities: np.ndarray   # (N,) of each translation, length-penalised as the search ranks them
    beam_size: int = 1
    length_penalty: float = 0.0
    examples: int = 5               # example translations kept in a report

    scorer = staticmethod(evaluation.translation)
    per_input = ("sources", "translations", "log_probabilities")

    @property
    def outputs(self):
        return self.log_probabilities

    def rows(self, top_k=1):
        return [{"source": s, "translation": t, "log_probability": float(p)}
                for s, t, p in zip(self.sources, self.translations, self.log_probabilities)]

    def lines(self, top_k=1):
        return list(self.translations)

    def score(self, references):
        report = self.scorer(self.translations, references, sources=self.sources, examples=self.examples)
        report.meta.update(beam_size=self.beam_size, length_penalty=self.length_penalty)
        return report


@dataclasses.dataclass
class Transcription(Result):
    """Transcripts of speech, with the per-frame CTC log-probabilities they were decoded from."""

    transcripts: list
    log_probabilities: np.ndarray   # (N, frames, characters + 1), id 0 the CTC blank
    decoder: str = "greedy"
    characters: str = ""

    scorer = staticmethod(evaluation.speech_recognition)
    per_input = ("transcripts", "log_probabilities")

    @property
    def outputs(self):
        return self.log_probabilities

    def rows(self, top_k=1):
        return [{"transcript": text} for text in self.transcripts]

    def lines(self, top_k=1):
        return list(self.transcripts)

    def score(self, references):
        report = self.scorer(references, self.transcripts)
        report.meta.update(decoder=self.decoder, characters=self.characters)
        return report


MASK = "[MASK]"      # marks a token to fill in, in the texts a language model's predict takes


@dataclasses.dataclass
class MaskFilling(Result):
    """A masked language model's candidates for every "[MASK]" of each text: the model's
    probabilities over the vocabulary at each masked position, masks in text order."""

    texts: list                     # per input: the text, "[MASK]" at each token to fill in
    mask_counts: np.ndarray         # (N,) masks per text
    probabilities: np.ndarray       # (total masks, vocabulary): the masks of text 0, then of text 1, ...
    tokens: list = dataclasses.field(default_factory=list)   # the vocabulary: token id -> string
    skip: tuple = ()                # token ids never offered as candidates (padding, unknown, [MASK])
    top_k: int = 5                  # candidates per mask that rows() and lines() list by default
    examples: int = 5               # masked tokens shown in a report

    scorer = staticmethod(evaluation.language_model)
    per_input = ("texts", "mask_counts", "probabilities")

    @property
    def outputs(self):
        return self.probabilities

    def __len__(self):
        return len(self.texts)

    def top(self, k=None):
        """Per input, per mask, the k most likely (token, probability) pairs (special tokens left out)."""
        k = self.top_k if k is None else k
        offered = len(self.tokens) - len(set(self.skip))
        if not (isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= offered):
            raise ConfigError(f"top k must be a whole number from 1 to {offered} (the vocabulary's tokens); "
                              f"got {k!r}")
        scores = np.array(self.probabilities, dtype=np.float64)          # (total masks, vocabulary)
        scores[:, list(self.skip)] = -1.0
        order = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
        masks = [[(self.tokens[i], float(row[i])) for i in best]
                 for best, row in zip(order, self.probabilities)]
        starts = np.concatenate([[0], np.cumsum(self.mask_counts)]).astype(int)
        return [masks[starts[i]:starts[i + 1]] for i in range(len(self.texts))]

    def filled(self, k=None):
        """Each text with its masks replaced by the most likely token."""
        return [_fill(text, [candidates[0][0] for candidates in masks])
                for text, masks in zip(self.texts, self.top(k))]

    def rows(self, top_k=None):
        return [{"text": text, "filled": _fill(text, [candidates[0][0] for candidates in masks]),
                 "masks": [[{"token": token, "probability": p} for token, p in candidates]
                           for candidates in masks]}
                for text, masks in zip(self.texts, self.top(top_k))]

    def lines(self, top_k=None):
        return [_fill(text, [candidates[0][0] for candidates in masks]) + "\t" +
                " | ".join(", ".join(f"{token} ({p:.3f})" for token, p in candidates) for candidates in masks)
                for text, masks in zip(self.texts, self.top(top_k))]

    def to_json(self, top_k=None):
        return json.dumps(self.rows(top_k), ensure_ascii=False, indent=2)

    def score(self, references):
        """Masked-token accuracy and perplexity against the true token of each mask, in order:
        token ids, or token strings of the vocabulary."""
        references = list(references.tolist() if hasattr(references, "tolist") else references)
        if references and all(isinstance(item, str) for item in references):
            index = {token: i for i, token in enumerate(self.tokens)}
            unknown = [token for token in references if token not in index]
            if unknown:
                raise DataError(f"references {unknown[:5]} are not tokens of the vocabulary; each reference "
                                "is the true token (or token id) of one mask")
            references = [index[token] for token in references]
        contexts = [text for text, count in zip(self.texts, self.mask_counts) for _ in range(int(count))]
        if len(references) != len(self.probabilities):
            raise DataError(f"got {len(references)} references for {len(self.probabilities)} masks; give the "
                            "true token of every mask, in text order")
        report = self.scorer(np.asarray(references, dtype=np.int64), self.probabilities, tokens=self.tokens,
                             contexts=contexts, examples=self.examples)
        report.meta["num_texts"] = len(self.texts)
        return report


def _fill(text, words):
    """`text` with its "[MASK]"s replaced by `words`, in order."""
    words = iter(words)
    return MASK_PATTERN.sub(lambda match: next(words, match.group(0)), text)


MASK_PATTERN = re.compile(re.escape(MASK), re.IGNORECASE)
