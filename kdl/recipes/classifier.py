"""What every classification recipe shares: the loss, the shared scorer, `predict` results.

>>> import numpy as np
>>> Predictions.from_probabilities(np.array([[0.2, 0.8]]), ["cat", "dog"]).labels
['dog']
"""

import dataclasses

import numpy as np

from kdl import evaluation
from kdl.recipes.recipe import Recipe


@dataclasses.dataclass
class Predictions:
    """What `predict` returns: a class name and the class probabilities per input."""

    labels: list            # predicted class name per input
    class_ids: np.ndarray   # (N,) predicted class index
    probabilities: np.ndarray  # (N, num_classes)
    class_names: list

    @classmethod
    def from_probabilities(cls, probabilities, class_names):
        class_ids = np.argmax(probabilities, axis=-1)
        return cls([class_names[i] for i in class_ids], class_ids, probabilities, list(class_names))

    def top(self, k=3):
        """Per input, the k most likely (class name, probability) pairs."""
        order = np.argsort(-self.probabilities, axis=-1)[:, :k]
        return [[(self.class_names[i], float(row[i])) for i in top] for top, row in
                zip(order, self.probabilities)]

    def __len__(self):
        return len(self.labels)


class Classifier(Recipe):
    """A recipe whose model maps inputs to class probabilities."""

    def compile_arguments(self):
        return {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}

    @property
    def class_names(self):
        return self.config.data.class_names or self.data.info.class_names

    def score(self, split):
        batches = self.batches(split)
        probabilities = self.model.predict(batches, verbose=0)
        labels = np.concatenate([y for _, y in batches.as_numpy_iterator()])
        return evaluation.classification(labels, probabilities, class_names=self.class_names)

    def predict(self, inputs):
        """Class names and probabilities for raw inputs (see the task's `prepare_inputs`)."""
        self._require_model("predict")
        x = self.prepare_inputs(inputs)
        probabilities = self.model.predict(x, batch_size=self.config.data.batch_size, verbose=0)
        return Predictions.from_probabilities(probabilities, self.class_names)

    def prepare_inputs(self, inputs):
        """Turn what a user passes to `predict` into the model's input batch."""
        raise NotImplementedError

    def save_report_extras(self, path):
        self.report.plot_confusion_matrix(path / "confusion_matrix.png")
