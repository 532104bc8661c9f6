"""Datasets for kdl: `load_images` (digits, IDX, image folders, TFDS, arrays), `load_texts`
(GLUE folders, CSV/TSV, class folders of .txt, TFDS, arrays), text `Tokenizer`s and `batches`.

>>> from kdl.data import batches, load_images
>>> data = load_images("digits", limit=100)
>>> [images.shape[0] for images, _ in batches(data.splits["test"], batch_size=64)]
[64, 36]
"""

from kdl.data.audio import AudioDataset, AudioDatasetInfo, load_audio, load_transcripts
from kdl.data.images import DatasetInfo, ImageDataset, load_images
from kdl.data.parallel import ParallelDataset, ParallelDatasetInfo, load_parallel
from kdl.data.pipeline import batches
from kdl.data.text import TextDataset, TextDatasetInfo, load_texts
from kdl.data.tokenizers import Tokenizer

__all__ = ["DatasetInfo", "ImageDataset", "TextDataset", "TextDatasetInfo", "Tokenizer", "batches",
           "load_images", "load_texts",
           "ParallelDataset", "ParallelDatasetInfo", "load_parallel",
           "AudioDataset", "AudioDatasetInfo", "load_audio", "load_transcripts"]
