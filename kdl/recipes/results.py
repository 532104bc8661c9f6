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

import numpy as np

from kdl import evaluation
from kdl.errors import ConfigError


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
