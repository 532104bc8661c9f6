"""kdl.data.pipeline: batches, and the encodings recipes feed model.fit: tokenized text,
0-padded token ids, length-bucketed translation batches and CTC character labels."""

import numpy as np
import pytest
import tensorflow as tf

from kdl.data import Tokenizer, batches, bucketed_batches, ctc_labels, pad_ids, tokenized
from kdl.errors import DataError


def test_batches_shuffle_is_seeded_and_reshuffled_each_epoch():
    dataset = tf.data.Dataset.range(20)
    first = batches(dataset, 5, shuffle=True, seed=1)
    epochs = [np.concatenate(list(first.as_numpy_iterator())).tolist() for _ in range(2)]
    again = np.concatenate(list(batches(dataset, 5, shuffle=True, seed=1).as_numpy_iterator())).tolist()
    assert sorted(epochs[0]) == list(range(20)) and epochs[0] != list(range(20))
    assert epochs[0] != epochs[1] and again == epochs[0]
    assert [len(b) for b in batches(dataset, 8, drop_remainder=True).as_numpy_iterator()] == [8, 8]


def test_tokenized_keeps_labels_order_and_cardinality():
    texts = [f"film {i % 7} was {'good' if i % 2 else 'bad'}" for i in range(1100)]   # > one chunk of 1024
    labels = np.arange(1100) % 2
    split = tf.data.Dataset.from_tensor_slices((texts, labels))
    tokenizer = Tokenizer.learn(split.map(lambda text, label: text), vocabulary_size=50, max_length=6)
    tokens = tokenized(split, tokenizer)
    assert int(tokens.cardinality()) == 1100
    assert tokens.element_spec[0].shape.as_list() == [6] and tokens.element_spec[0].dtype == tf.int32
    ids, got_labels = (np.stack(part) for part in zip(*tokens.as_numpy_iterator()))
    np.testing.assert_array_equal(ids, tokenizer.to_numpy(texts))
    np.testing.assert_array_equal(got_labels, labels)


def test_pad_ids_frames_and_zero_pads():
    assert pad_ids([[4, 5, 6], []], 4).tolist() == [[4, 5, 6, 0], [0, 0, 0, 0]]
    framed = pad_ids([[4, 5], [7]], 5, start_id=2, end_id=3)
    assert framed.dtype == np.int32 and framed.tolist() == [[2, 4, 5, 3, 0], [2, 7, 3, 0, 0]]
    assert pad_ids([], 3).shape == (0, 3)
    with pytest.raises(DataError, match="token list 1 has 5 ids .* width is 4; cut the lists to 2"):
        pad_ids([[1], [1, 2, 3]], 4, start_id=2, end_id=3)


def translation_ids(count=50, max_length=20, seed=0):
    """(source ids (N, L), target ids (N, L + 2)) of random lengths, as the translator pads them."""
    rng = np.random.default_rng(seed)
    sources = [rng.integers(5, 99, rng.integers(1, max_length + 1)).tolist() for _ in range(count)]
    targets = [rng.integers(5, 99, rng.integers(1, max_length + 1)).tolist() for _ in range(count)]
    return pad_ids(sources, max_length), pad_ids(targets, max_length + 2, start_id=2, end_id=3)


def test_bucketed_batches_hold_every_pair_once_padded_to_a_bucket():
    sources, targets = translation_ids()
    seen = []
    for inputs, labels in bucketed_batches(sources, targets, 8, seed=0).as_numpy_iterator():
        width = labels.shape[1]
        assert width % 8 == 0 or width == sources.shape[1] + 1                 # a bucket, or the cap 21
        assert inputs["source_ids"].shape == inputs["target_ids"].shape == labels.shape
        np.testing.assert_array_equal(inputs["target_ids"][:, 1:], labels[:, :-1])   # next-token labels
        for source, decoder_in, label in zip(inputs["source_ids"], inputs["target_ids"], labels):
            row = next(i for i in range(len(targets)) if (targets[i, :width] == decoder_in).all()
                       and (targets[i, 1:width + 1] == label).all())
            length = sources.shape[1]
            assert (sources[row, :width] == source[:length]).all() and not source[length:].any()
            seen.append(row)
    assert sorted(seen) == list(range(len(sources)))


def test_bucketed_batches_group_similar_lengths_and_shuffle_by_seed():
    sources, targets = translation_ids(count=64)

    def first_labels(**options):
        dataset = bucketed_batches(sources, targets, 8, **options)
        return [labels[:, 0].tolist() for _, labels in dataset.as_numpy_iterator()]

    widths = [labels.shape[1] for _, labels in bucketed_batches(sources, targets, 8, 0).as_numpy_iterator()]
    assert widths == sorted(widths) and len(set(widths)) > 1
    first = first_labels(seed=0, shuffle=True)
    assert first == first_labels(seed=0, shuffle=True) and first != first_labels(seed=1, shuffle=True)
    assert sorted(first) == sorted(first_labels(seed=0))
    with pytest.raises(DataError, match="no sentence pairs"):
        bucketed_batches(sources[:0], targets[:0], 8, seed=0)


def test_ctc_labels_are_character_ids_from_one_padded_with_zero():
    waveforms = np.arange(12, dtype="float32").reshape(3, 4)
    split = tf.data.Dataset.from_tensor_slices((waveforms, ["one", "no", "eon?"]))
    pairs = list(ctc_labels(split, " eno", 6).as_numpy_iterator())
    assert [ids.tolist() for _, ids in pairs] == [[4, 3, 2, 0, 0, 0], [3, 4, 0, 0, 0, 0], [2, 4, 3, 0, 0, 0]]
    np.testing.assert_array_equal(np.stack([waveform for waveform, _ in pairs]), waveforms)
    assert ctc_labels(split, " eno", 6).element_spec[1].shape.as_list() == [6]


def test_a_learned_wordpiece_vocabulary_with_space_like_tokens_saves_and_loads(tmp_path):
    # Multi30k's German has U+00A0 (no-break space) between words: WordPiece keeps it as a token
    # (cased), or " " (lower-cased), and the saved vocabulary must load back (found by running
    # the README's commands).
    texts = tf.data.Dataset.from_tensor_slices(["ein\u00a0Hund", "zwei\u2009Katzen", "ein Vogel"] * 20)
    tokenizer = Tokenizer.learn(texts, kind="wordpiece", vocabulary_size=200, max_length=None)
    assert " " in tokenizer.vocabulary
    tokenizer.save(tmp_path / "vocabulary.txt")
    loaded = Tokenizer.load(tmp_path / "vocabulary.txt", kind="wordpiece", max_length=None)
    assert loaded.vocabulary == tokenizer.vocabulary
    assert loaded.to_lists(["ein\u00a0Hund"]) == tokenizer.to_lists(["ein\u00a0Hund"])
