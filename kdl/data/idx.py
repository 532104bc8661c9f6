"""Read the IDX files MNIST and Fashion-MNIST ship in, gzip'd or not.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of dims), one
big-endian uint32 per dim, then the values. Every problem is a `DataError` naming the file.

>>> import pathlib, struct, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
>>> _ = path.write_bytes(struct.pack(">BBBBI", 0, 0, 0x08, 1, 3) + bytes([7, 2, 1]))
>>> read_idx(path)
array([7, 2, 1], dtype=uint8)
>>> _ = path.write_bytes(struct.pack(">BBBBI", 0, 0, 0x08, 1, 5) + bytes([7, 2, 1]))
>>> read_idx(path)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
kdl.errors.DataError: ...labels-idx1-ubyte is truncated: its header says shape (5,), which needs 13 bytes, ...
"""

import math
import struct

import numpy as np

from kdl.data import io
from kdl.data.io import GZIP_CHUNK, read_gzip, walk_folder
from kdl.errors import DataError

# IDX dtype code -> big-endian NumPy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# Split -> (images file, labels file), without the optional ".gz".
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path):
    """The array stored in the IDX file at `path` (gzip'd or not), in native byte order.

    A gzip'd file is decompressed only as far as its header declares (and never past
    `kdl.data.io.GZIP_MAX_BYTES`): one that holds more is refused as a likely gzip bomb."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path} is truncated: {len(data)} bytes, fewer than the 4-byte IDX magic number")
    zeros, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zeros != 0 or dtype_code not in _IDX_DTYPES:
        raise DataError(
            f"{path} is not an IDX file: magic number 0x{data[:4].hex()}, expected 0x0000TTNN "
            "(TT a dtype code, NN the number of dims; e.g. 0x00000803 for images, 0x00000801 for labels)"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"{path} is truncated: its {ndim}-dim header needs {header_size} bytes, but it has {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = header_size + math.prod(shape) * dtype.itemsize
    if len(data) < expected:
        raise DataError(
            f"{path} is truncated: its header says shape {shape}, which needs {expected} bytes, "
            f"but it has {len(data)}"
        )
    values = np.frombuffer(data, dtype, count=math.prod(shape), offset=header_size)
    return values.reshape(shape).astype(dtype.newbyteorder("="))


def is_idx_folder(folder):
    """Whether `folder` holds IDX files (names containing 'ubyte')."""
    return any("ubyte" in path.name for path in folder.iterdir())


def load_idx_folder(folder):
    """Split ("train", "test") -> (images (N, H, W), labels (N,)) from an MNIST-layout folder."""
    present = {path.name: path for path in walk_folder(folder)[1]}      # links checked
    paths = {split: [_find_spelling(present, name) for name in names] for split, names in IDX_FILES.items()}
    missing = [
        name for split, names in IDX_FILES.items() for name, path in zip(names, paths[split]) if path is None
    ]
    if missing:
        raise DataError(
            f"{folder} is missing the IDX files {missing}; expected "
            f"{[name for names in IDX_FILES.values() for name in names]} (each may end in .gz, and "
            f"'-idx' may be spelt '.idx', as in train-images.idx3-ubyte), found {sorted(present)}"
        )
    return {split: _load_idx_split(*split_paths) for split, split_paths in paths.items()}


def _load_idx_split(images_path, labels_path):
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path} holds an array of shape {images.shape}; expected (N, height, width)")
    if labels.ndim != 1:
        raise DataError(f"{labels_path} holds an array of shape {labels.shape}; expected (N,)")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    return images, labels


def _find_spelling(present, name):
    """The present file named `name`, its '.idx' spelling, or either with '.gz'; None if absent."""
    spellings = (name, name.replace("-idx", ".idx"))
    return next((present[s + gz] for s in spellings for gz in ("", ".gz") if s + gz in present), None)


def _read_bytes(path):
    """The bytes of an IDX file; gzip'd, the decompressed bytes its header declares, no more."""
    with open(path, "rb") as file:
        gzipped = file.read(2) == b"\x1f\x8b"
    if not gzipped:
        return path.read_bytes()
    head = read_gzip(path, GZIP_CHUNK, prefix=True)     # the header; a small file whole, checked
    ndim = head[3] if len(head) >= 4 else 0
    if len(head) < 4 + 4 * ndim or head[:2] != b"\0\0" or head[2] not in _IDX_DTYPES:
        return head                                     # too short or not IDX: read_idx says which
    shape = struct.unpack(f">{ndim}I", head[4:4 + 4 * ndim])
    size = 4 + 4 * ndim + math.prod(shape) * np.dtype(_IDX_DTYPES[head[2]]).itemsize
    declared = f"the {size:,} bytes its header declares (shape {shape})"
    if size > io.GZIP_MAX_BYTES:
        raise DataError(f"{path}: its header declares shape {shape}, {size:,} bytes, more than kdl "
                        f"decompresses ({io.GZIP_MAX_BYTES:,}: kdl.data.io.GZIP_MAX_BYTES)")
    if len(head) > size:
        raise DataError(f"{path} decompresses to more than {declared}; refusing to read on: it is "
                        "corrupt, or a gzip bomb (a small file that expands to fill memory)")
    return head if len(head) < GZIP_CHUNK else read_gzip(path, size, declared=declared)
