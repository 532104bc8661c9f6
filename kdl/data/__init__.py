"""Datasets for kdl: one call per task loads a source into a `Dataset` of tf.data splits, and
`kdl.data.pipeline` turns a split into what `model.fit` reads.

- `load_images` (digits, IDX, image folders, TFDS, arrays), `load_texts` (GLUE folders, CSV/TSV,
  class folders of .txt, TFDS, arrays), `load_audio` / `load_transcripts` (WAV folders, FSDD,
  LJSpeech, digit strings, TFDS, arrays), `load_parallel` (aligned line files, TSV pairs, TFDS, arrays);
- `Dataset` / `DatasetInfo`: what they all return (`kdl.data.dataset`);
- `Tokenizer` (`kdl.data.tokenizers`); `batches`, `tokenized`, `pad_ids`, `bucketed_batches`,
  `ctc_labels` (`kdl.data.pipeline`); `waveform_batch` (`kdl.data.audio`);
- `read_wav`, `read_lines` (`kdl.data.io`); the split rules are in `kdl.data.splits`.

>>> from kdl.data import batches, load_images
>>> data = load_images("digits", limit=100)
>>> [images.shape[0] for images, _ in batches(data.splits["test"], batch_size=64)]
[64, 36]
"""

from kdl.data.audio import load_audio, load_transcripts, waveform_batch
from kdl.data.dataset import Dataset, DatasetInfo
from kdl.data.images import load_images
from kdl.data.io import read_lines, read_wav
from kdl.data.parallel import load_parallel
from kdl.data.pipeline import batches, bucketed_batches, ctc_labels, pad_ids, tokenized
from kdl.data.text import load_texts
from kdl.data.tokenizers import Tokenizer

__all__ = [
    "Dataset", "DatasetInfo",
    "load_images", "load_texts", "load_audio", "load_transcripts", "load_parallel",
    "Tokenizer", "batches", "tokenized", "bucketed_batches", "pad_ids", "ctc_labels", "waveform_batch",
    "read_wav", "read_lines",
]
