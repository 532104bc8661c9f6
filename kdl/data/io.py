"""Reading and decoding the files kdl data sources are made of, with the file (and line) of every problem.

- text: `read_text` / `read_lines` (UTF-8, naming the line of a bad byte), `read_table` (CSV/TSV
  with a header). Every reader takes the same text: a leading UTF-8 byte-order mark is dropped,
  and "\\r\\n", "\\r" and "\\n" each end a line (`split_lines`);
- gzip: `read_gzip`, decompressing at most `GZIP_MAX_BYTES` (or what a header declares);
- audio: `read_wav` (PCM WAV -> float32 mono, resampled) and `resample`;
- folders and paths: `walk_folder` (every listing of a data folder: symbolic links checked for
  loops and dangling targets), `subfolders`, `resolve_path` (cwd, data_root, $KDL_DATA), and
  `unsupported_source`, the error for a source of a type no loader takes.

TensorFlow Datasets sources are prepared by `kdl.data.tfds_builder`.

>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
>>> _ = path.write_bytes("first\\nsecond caf\\xe9\\n".encode("utf-8"))
>>> read_lines(path)
['first', 'second café']
>>> _ = path.write_bytes(b"first\\nsecond caf\\xe9\\n")
>>> read_lines(path)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
kdl.errors.DataError: ...notes.txt, line 2: byte 0xe9 at column 11 is not UTF-8 text; save the file as UTF-8
"""

import codecs
import csv
import fractions
import gzip
import io
import math
import os
import pathlib
import wave
import zlib

import numpy as np

from kdl.errors import DataError

CSV_FIELD_LIMIT = 2**31 - 1     # the most csv.field_size_limit takes everywhere (a C long)
WAV_RATES = (1_000, 768_000)    # the frame rates (Hz) read_wav accepts, low and high
RESAMPLE_STEPS = 1_000          # resample's largest up/down factor: odd rate ratios are approximated
WAV_ERRORS = {EOFError: "it ends early", RuntimeError: "a chunk's size runs past the end of the file"}
# The most a gzip'd data file (IDX, aligned line files) may decompress to: 2 GiB, 40 times the
# largest file in ../shared/data. Past it a file is refused as a likely gzip bomb (a few MB that
# expand to fill memory) after decompressing just over the limit, never the whole stream.
GZIP_MAX_BYTES = 2**31
GZIP_CHUNK = 2**24               # bytes decompressed at a time

# --- text files ------------------------------------------------------------------------------------


def read_lines(path):
    """The lines of a UTF-8 text file; a DataError naming the line of the first non-UTF-8 byte."""
    return split_lines(read_text(path))


def split_lines(text):
    """The lines of `text`: "\\r\\n", "\\r" and "\\n" end a line (as in the csv module), nothing
    else does (unlike str.splitlines, which also splits on form feeds and U+2028)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def read_text(path):
    """The text of a UTF-8 file (without a byte-order mark); a DataError naming the line of the
    first non-UTF-8 byte."""
    return decode_text(pathlib.Path(path).read_bytes(), path)


def decode_text(data, path):
    """`data`, the bytes of the file `path`, as text: UTF-8, a leading byte-order mark dropped."""
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        line, column = before.count(b"\n") + 1, len(before) - before.rfind(b"\n")
        utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        raise DataError(
            f"{path}, line {line}: byte 0x{data[error.start]:02x} at column {column} is not UTF-8 text"
            f"{' (the file starts with a UTF-16 byte-order mark)' if utf16 else ''}; save the file as UTF-8"
        ) from None


def read_table(path, text_column, label_column):
    """(texts, raw labels, where) from a CSV/TSV file with a header; `where[i]` is "file, line N"."""
    text = read_text(path)
    # One field may be as long as the file: the csv module's default limit is 131,072 characters.
    csv.field_size_limit(max(csv.field_size_limit(), min(len(text) + 1, CSV_FIELD_LIMIT)))
    separator = "\t" if path.suffix.lower() == ".tsv" else ","
    dialect = dict(delimiter="\t", quoting=csv.QUOTE_NONE) if separator == "\t" else {}
    reader = csv.reader(io.StringIO(text, newline=""), **dialect)
    rows = _csv_rows(reader, path)
    header = next(rows, None)
    missing = [name for name in (text_column, label_column) if name not in (header or [])]
    if missing:
        # a one-column header holding another usual separator: a ';'-separated export, say
        other = [s for s in (",", ";", "\t", "|") if s != separator and header and len(header) == 1
                 and s in header[0]]
        raise DataError(
            f"{path}, line 1: no column {missing[0]!r}; the header has columns {header or []}. " + (
                f"The file looks separated by {other[0]!r}, but a {path.suffix} file is read as "
                f"{separator!r}-separated: save it with {separator!r} between fields"
                if other else "Pass text_column= and label_column= to name the ones to read")
        )
    text_at, label_at = header.index(text_column), header.index(label_column)
    texts, labels, where = [], [], []
    for row in rows:
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"{path}, line {reader.line_num}: {len(row)} fields, but the header has "
                            f"{len(header)} {header}")
        texts.append(row[text_at])
        labels.append(row[label_at].strip())
        where.append(f"{path}, line {reader.line_num}")
    return texts, labels, where


def _csv_rows(reader, path):
    try:
        yield from reader
    except csv.Error as error:
        raise DataError(f"{path}, line {reader.line_num}: {error}") from None


# --- gzip'd files ----------------------------------------------------------------------------------


def read_gzip(path, limit=None, *, declared="", prefix=False):
    """The decompressed bytes of the gzip file `path`, decompressed in chunks, never more than
    `limit` + 1 bytes (default `GZIP_MAX_BYTES`): a stream that holds more is a DataError (a
    gzip bomb, or a file larger than its header says: `declared` tells what said so), and so is
    a corrupt or truncated one. With `prefix`, just its first `limit` bytes (fewer if shorter).

    >>> import gzip, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "zeros.gz"
    >>> _ = path.write_bytes(gzip.compress(bytes(10_000)))   # 10,000 bytes in 45
    >>> len(read_gzip(path)), read_gzip(path, 4, prefix=True)
    (10000, b'\\x00\\x00\\x00\\x00')
    >>> read_gzip(path, 1000, declared="the size its header declares")     # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kdl.errors.DataError: ...zeros.gz decompresses to more than 1,000 bytes, the size its header declares; ...
    """
    if limit is None:
        limit, declared = GZIP_MAX_BYTES, declared or "the most kdl reads (kdl.data.io.GZIP_MAX_BYTES)"
    wanted, chunks, size = limit if prefix else limit + 1, [], 0
    try:
        with gzip.open(path, "rb") as stream:
            while size < wanted:
                chunk = stream.read(min(wanted - size, GZIP_CHUNK))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except (OSError, EOFError, zlib.error) as error:      # not gzip, truncated, a corrupt stream
        raise DataError(f"{path} is a corrupt gzip stream (not a complete gzip file): {error}") from None
    if size > limit:
        raise DataError(f"{path} decompresses to more than {limit:,} bytes, {declared or 'the limit'}; "
                        "refusing to read on: it is corrupt, or a gzip bomb (a small file that expands "
                        "to fill memory)")
    return b"".join(chunks)


# --- WAV files -------------------------------------------------------------------------------------


def read_wav(path, sample_rate=None):
    """(waveform float32 mono in [-1, 1], sample rate) of a PCM WAV file, resampled to `sample_rate`
    when given. A corrupt, empty or non-PCM file, or one whose frame rate is outside `WAV_RATES`,
    is a DataError naming it."""
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    # What the wave module raises for a bad file; RuntimeError (bare) is a chunk longer than its parent.
    except (wave.Error, EOFError, OSError, RuntimeError) as error:
        reason = str(error) or WAV_ERRORS.get(type(error), type(error).__name__)
        raise DataError(f"cannot read WAV file {os.fspath(path)!r}: {reason}; "
                        "expected a PCM .wav file (8, 16, 24 or 32 bit)") from None
    if width not in (1, 2, 3, 4) or channels < 1:
        raise DataError(f"WAV file {os.fspath(path)!r} has {width * 8}-bit samples and {channels} "
                        "channels; expected 8, 16, 24 or 32-bit PCM")
    if not WAV_RATES[0] <= rate <= WAV_RATES[1]:
        raise DataError(f"WAV file {os.fspath(path)!r} has a frame rate of {rate} Hz; expected "
                        f"{WAV_RATES[0]:,} to {WAV_RATES[1]:,} Hz")
    usable = len(frames) - len(frames) % (width * channels)
    if usable == 0:
        raise DataError(f"WAV file {os.fspath(path)!r} is empty (no audio frames)")
    waveform = _pcm_to_float(frames[:usable], width).reshape(-1, channels).mean(axis=1)   # mono mixdown
    return resample(waveform, rate, sample_rate or rate), sample_rate or rate


def _pcm_to_float(data, width):
    if width == 1:                                   # 8-bit WAV is unsigned
        return (np.frombuffer(data, np.uint8).astype(np.float32) - 128) / 128
    if width == 3:                                   # 24-bit: widen to 32-bit little-endian
        raw = np.frombuffer(data, np.uint8).reshape(-1, 3)
        data = np.concatenate([np.zeros((len(raw), 1), np.uint8), raw], axis=1).tobytes()
        width = 4
    dtype = {2: "<i2", 4: "<i4"}[width]
    return (np.frombuffer(data, dtype).astype(np.float64) / 2 ** (8 * width - 1)).astype(np.float32)


def resample(waveform, from_rate, to_rate):
    """`waveform` at `to_rate` Hz (polyphase filtering, scipy.signal.resample_poly).

    A rate ratio that needs more than `RESAMPLE_STEPS` up or down steps (44,101 Hz to 8,000 Hz
    is 8,000 up and 44,101 down) is replaced by the nearest ratio that does not, so that the
    filter stays small; the length is then off by less than 0.1%.

    >>> len(resample(np.zeros(44_100), 44_100, 8_000)), len(resample(np.zeros(44_101), 44_101, 8_000))
    (8000, 8001)
    """
    waveform = np.asarray(waveform, np.float32)
    if from_rate == to_rate:
        return waveform
    from scipy.signal import resample_poly

    ratio = fractions.Fraction(int(to_rate), int(from_rate))
    if max(ratio.numerator, ratio.denominator) > RESAMPLE_STEPS:
        steps = max(RESAMPLE_STEPS, math.ceil(max(ratio, 1 / ratio)))
        ratio = ratio.limit_denominator(steps) if ratio < 1 else 1 / (1 / ratio).limit_denominator(steps)
    return resample_poly(waveform, ratio.numerator, ratio.denominator).astype(np.float32)


# --- folders, paths and TensorFlow Datasets --------------------------------------------------------


def walk_folder(folder, suffixes=None, recursive=False):
    """(sub-folders, files) of a data folder, each sorted: its direct sub-folders and files, or,
    with `recursive`, no folders and every file beneath it: how the loaders (images, IDX, text,
    parallel) list a data folder, so that each gets the same checks.

    `suffixes` (lower-case, e.g. (".png", ".jpg")) keeps only the files whose name ends in one,
    in any case. Hidden entries (".name") are left out. Symbolic links are followed once checked:
    a link that cannot be followed (dangling, or leading to itself) is a DataError naming it
    when it would be read (its name has one of `suffixes`, or none are given), and so is a link
    to a folder that holds it (`cat/loop -> ..`, `data/up -> ..`, `a/b -> ../c` with `c/d -> ../a`):
    following it would never end. A folder that cannot be listed is a DataError naming it. The
    walk keeps its own stack, so a deep tree is no RecursionError.

    >>> import tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "cat" / "more").mkdir(parents=True)
    >>> for name in ("a.png", "more/b.PNG", ".hidden.png", "notes.txt"):
    ...     (root / "cat" / name).touch()
    >>> [p.relative_to(root).as_posix() for p in walk_folder(root / "cat", (".png",), recursive=True)[1]]
    ['cat/a.png', 'cat/more/b.PNG']
    >>> (root / "cat" / "loop").symlink_to("..")
    >>> walk_folder(root / "cat", (".png",), recursive=True)      # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kdl.errors.DataError: .../cat/loop is a symbolic link to '..', the folder ..., which holds the link: ...
    """
    root = pathlib.Path(folder)
    suffixes = tuple(suffixes) if suffixes is not None else None
    folders, files = [], []
    pending = [(root, (os.path.realpath(root),))]    # (a folder, the real paths of it and those above)
    while pending:
        directory, chain = pending.pop()
        for entry in _entries(directory):
            path = directory / entry.name
            wanted = suffixes is None or entry.name.lower().endswith(suffixes)
            real = _followed_link(path, chain, wanted) if entry.is_symlink() else path
            if real is None:
                continue
            if entry.is_dir():                       # a link to a folder too
                if recursive:
                    pending.append((path, (*chain, os.path.realpath(real))))
                else:
                    folders.append(path)
            elif wanted:
                files.append(path)
    return sorted(folders), sorted(files)


def _entries(directory):
    """The entries (os.DirEntry) of a folder, hidden ones left out; a DataError if it cannot be listed."""
    try:
        with os.scandir(directory) as entries:
            return [entry for entry in entries if not entry.name.startswith(".")]
    except OSError as error:
        raise DataError(f"cannot list the data folder {directory}: {error.strerror or error}") from None


def _followed_link(path, chain, wanted):
    """Where the symbolic link `path` leads, checked (see `walk_folder`): None for a dangling link
    that is not `wanted`; a DataError for a wanted dangling link, or a link to a folder in
    `chain` (the folders the walk is in) or above one of them."""
    try:
        os.stat(path)
    except OSError as error:             # no target (ENOENT), or a link to itself (ELOOP)
        if not wanted:
            return None
        how = "it dangles" if isinstance(error, FileNotFoundError) else "it leads back to itself"
        raise _link_error(path, f"which cannot be followed ({error.strerror or error}): {how}")
    real = os.path.realpath(path)
    inside = real.rstrip(os.sep) + os.sep
    if os.path.isdir(real) and any(at == real or at.startswith(inside) for at in chain):
        raise _link_error(path, f"the folder {real}, which holds the link: reading it would loop forever")
    return real


def _link_error(path, problem):
    return DataError(f"{path} is a symbolic link to {os.readlink(path)!r}, {problem}; remove the link "
                     "or point it at the data")


def subfolders(folder):
    """The sub-folders of `folder`, sorted, hidden ones (".name") left out; links checked
    (`walk_folder`)."""
    return walk_folder(folder)[0]


def unsupported_source(source, accepted):
    """The DataError for a source of a type no loader takes; `accepted` describes the ones it does."""
    return DataError(f"unsupported data source of type {type(source).__name__}; accepted: {accepted}")


def resolve_path(source, data_root, accepted):
    """The existing path `source` names: as given, or relative to the cwd, data_root, then $KDL_DATA.

    `accepted` describes the sources the caller takes, for the error message.
    """
    path = pathlib.Path(source).expanduser()
    candidates = [path] if path.is_absolute() else [root / path for root in search_roots(data_root)]
    found = next((candidate for candidate in candidates if candidate.exists()), None)
    if found is None:
        raise DataError(
            f"data source {os.fspath(source)!r} not found; tried {', '.join(map(str, candidates))}. "
            "Relative paths are looked up in the current directory, then data_root (--data-root), then "
            f"the KDL_DATA environment variable{'' if os.environ.get('KDL_DATA') else ' (not set)'}. "
            f"Accepted sources: {accepted}"
        )
    return found


def source_root(source, data_root):
    """The folder a relative path `source` is found under (see `resolve_path`), as an absolute
    path, so a run can find its data again from another directory; "" for anything else."""
    if not isinstance(source, (str, os.PathLike)) or str(source).startswith("tfds:"):
        return ""
    path = pathlib.Path(source).expanduser()
    if path.is_absolute():
        return ""
    found = next((root for root in search_roots(data_root) if (root / path).exists()), None)
    return str(found.resolve()) if found is not None else ""


def search_roots(data_root):
    """Where relative sources are looked up, in order: the cwd, data_root, $KDL_DATA."""
    roots = (pathlib.Path.cwd(), data_root, os.environ.get("KDL_DATA"))
    return [pathlib.Path(root).expanduser() for root in roots if root]
