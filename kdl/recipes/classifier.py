"""What every classification recipe shares: the loss, predicting on a split or a batch, the
confusion-matrix plot. Image, text and audio classifiers differ only in their data, model and
`prepare_inputs`.

>>> from kdl.recipes import AudioClassifier, ImageClassifier, TextClassifier
>>> all(issubclass(cls, Classifier) for cls in (ImageClassifier, TextClassifier, AudioClassifier))
True
"""

import numpy as np

from kdl.data.dataset import relabel
from kdl.recipes.recipe import Recipe
from kdl.recipes.results import Classification

HEAD = "probabilities"      # every classifier model's last layer: Dense(classes, softmax)


class Classifier(Recipe):
    """A recipe whose model maps inputs to class probabilities."""

    Result = Classification

    @property
    def class_names(self):
        """The class names (from the config once the data is loaded; `data.classes`: that subset)."""
        data = self.config.data
        return data.classes or data.class_names or self.data.info.class_names

    def compile_arguments(self):
        return {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}

    def predict_inputs(self, x):
        probabilities = self.model.predict(x, batch_size=self.config.data.batch_size, verbose=0)
        return Classification.from_probabilities(probabilities, self.class_names)

    def predict_split(self, split):
        batches = self.batches(split)
        probabilities = self.model.predict(batches, verbose=0)
        labels = np.concatenate([y for _, y in batches.as_numpy_iterator()])
        return Classification.from_probabilities(probabilities, self.class_names), labels

    def adapt_data(self, dataset):
        """Another source's labels renumbered to this run's classes, by name."""
        return relabel(dataset, self.class_names)

    def output_width(self):
        names = self.config.data.classes or self.config.data.class_names
        return len(names) if names else None

    def transfer_features(self):
        return self.model.get_layer(HEAD).input            # (B, F): what the softmax head reads

    def save_report_extras(self, path):
        self.report.plot_confusion_matrix(path / "confusion_matrix.png")

    def card_notes(self):
        count = len(self.config.data.classes or self.config.data.class_names or [])
        return [f"Always answers one of its {count} classes, even for an input that is none of them "
                "(it has no \"other\" class); a high probability does not mean the input is like its "
                "training data.", *super().card_notes()]
