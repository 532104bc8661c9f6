"""kdl.data.Dataset: every loader returns the one Dataset type, its DatasetInfo holding the common
fields (source, num_examples, class_names) and only its own modality's extra fields."""

import numpy as np

from kdl.data import (
    Dataset,
    DatasetInfo,
    load_audio,
    load_images,
    load_parallel,
    load_texts,
    load_transcripts,
)

MODALITY_FIELDS = {"image_shape", "sample_rate", "num_samples", "source_language", "target_language"}


def set_fields(info):
    return {name for name in MODALITY_FIELDS if getattr(info, name) is not None}


def test_every_loader_returns_one_dataset_type():
    clips = [np.full(n, 0.1, "float32") for n in (50, 100)] * 5
    datasets = {
        "images": load_images("digits", limit=20),
        "texts": load_texts((["good", "bad"] * 5, [1, 0] * 5)),
        "audio": load_audio((clips, [0, 1] * 5), sample_rate=100, max_seconds=1.0),
        "transcripts": load_transcripts((clips, ["a b", "b"] * 5), sample_rate=100, max_seconds=1.0),
        "parallel": load_parallel((["a cat", "a dog"] * 5, ["eine Katze", "ein Hund"] * 5)),
    }
    assert all(type(data) is Dataset and type(data.info) is DatasetInfo for data in datasets.values())
    assert {name: set_fields(data.info) for name, data in datasets.items()} == {
        "images": {"image_shape"}, "texts": set(), "audio": {"sample_rate", "num_samples"},
        "transcripts": {"sample_rate", "num_samples"}, "parallel": {"source_language", "target_language"}}
    assert datasets["images"].info.image_shape == (8, 8, 1)
    assert datasets["texts"].info.class_names == ["0", "1"] and datasets["parallel"].info.class_names == []
    assert datasets["transcripts"].info.class_names == [] and datasets["audio"].info.class_names == ["0", "1"]
    for data in datasets.values():
        counts = {name: int(split.cardinality()) for name, split in data.splits.items()}
        assert data.info.num_examples == counts
    assert set(datasets["transcripts"].transcripts) == set(datasets["transcripts"].splits)
    assert datasets["images"].transcripts == {}
    sources, targets = datasets["parallel"].texts("test")
    assert len(sources) == 2 and all(isinstance(text, str) for text in sources + targets)
    translations = {"a cat": "eine Katze", "a dog": "ein Hund"}
    assert all(translations[source] == target for source, target in zip(sources, targets))
