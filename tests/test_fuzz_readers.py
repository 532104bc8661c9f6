"""Property-based fuzzing (Hypothesis) of kdl's file readers: whatever a file holds, a reader gives
a result or a kdl error (`DataError` / `ConfigError`) whose message names the file, never another
exception (no raw ValueError, UnicodeDecodeError, struct.error, zlib.error, csv.Error, PIL or
tf.errors). Readers fuzzed:

- images: `load_images` on a folder of two class sub-folders holding PIL-written PNG, JPEG, GIF
  and BMP files of every mode (1, L, LA, P, RGB, RGBA, I;16), damaged copies of them (truncated,
  bytes overwritten, junk inserted) and raw bytes; each split is then read to the end, so a bad
  file is caught at load time, not mid-fit; and an image recipe's `prepare_inputs([path])`;
- WAV: `read_wav` on headers with fuzzed fields (channels 0-8, sample width 0-5, any frame rate,
  any format tag, lying sizes, truncation) and raw bytes; `load_audio` on a folder of them;
- CSV/TSV: `load_texts` on fuzzed tables (any text, quotes, delimiters, NUL, fields longer than
  the csv module's default limit, BOM, \\r\\n and lone \\r line endings, non-UTF-8 bytes);
- translation: `load_parallel` on folders of train/test `.en`/`.de` line files (plain or gzip'd,
  intact or damaged) and on `.tsv` pair files;
- recipes: `kdl.recipes.load` on fuzzed TOML text and on valid TOML setting real fields of every
  task to fuzzed values (wrong types, ints beyond int64, NaN/inf, negative sizes, empty strings,
  tables where scalars belong).

Besides "no other exception", the line-ending and BOM variants of one file must read the same.

Hypothesis profiles (tests/conftest.py): "kdl", the default, runs 40 examples per property,
derandomized (the same examples on every run and backend) and takes well under a minute on two
cores. For a long random search, run the `slow` variants (500 examples of each property):

    KERAS_BACKEND=jax .venv/bin/python -m pytest tests/test_fuzz_readers.py -m slow

or run every property here with the long profile: `HYPOTHESIS_PROFILE=long pytest
tests/test_fuzz_readers.py`. The long profile prints a `@reproduce_failure` blob for a failure.
"""

import contextlib
import csv
import dataclasses
import gzip
import io
import os
import pathlib
import struct
import tempfile
import types
import typing

import numpy as np
import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import kdl
from kdl.data import load_audio, load_images, load_parallel, load_texts, read_lines, read_wav
from kdl.data.images import IMAGE_SUFFIXES, read_image
from kdl.data.io import read_table
from kdl.errors import DataError, KdlError

# --- helpers --------------------------------------------------------------------------------------


@contextlib.contextmanager
def tree(files):
    """A temporary folder holding `files` ({relative path: bytes}); made here, not by a pytest
    fixture, so that each Hypothesis example gets a fresh one."""
    with tempfile.TemporaryDirectory() as folder:
        root = pathlib.Path(folder)
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        yield root


def outcome(read, where):
    """What `read()` returns, or the KdlError it raises, which must name `where` (a file or folder);
    any other exception fails the test."""
    try:
        return read()
    except KdlError as error:
        assert str(where) in str(error), f"{type(error).__name__} does not name {where}: {error}"
        return error


def fuzz_long(name, strategy, check):
    """A slow test case running `check` on many random examples of `strategy` (the "long" profile)."""
    return pytest.param(strategy, check, marks=pytest.mark.slow, id=name)


def mostly(good, other):
    """A strategy drawing `good` (a value or a strategy) about three times in four, else from
    `other`: most examples are plausible files with one odd part, so they get past the first check."""
    good = good if isinstance(good, st.SearchStrategy) else st.just(good)
    return st.one_of(good, good, good, other)


BOM = "\ufeff".encode()
ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])
NOT_UTF8 = st.sampled_from([b"\xff", b"\xe9", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xfe\xff"])


@st.composite
def encoded(draw, text, broken=None):
    """`text` as the bytes of a file: UTF-8, maybe with a BOM; with a non-UTF-8 byte inserted when
    `broken` (None: one time in five)."""
    data = (BOM if draw(mostly(False, st.just(True))) else b"") + text.encode("utf-8")
    if broken or (broken is None and draw(st.integers(0, 4)) == 0):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(NOT_UTF8) + data[at:]
    return data


def odd_part(*parts):
    """Which part of a file to make odd: none (about one example in three) or one of `parts`."""
    return st.sampled_from(["none", "none", "none", *parts, *parts])


@st.composite
def damaged(draw, data):
    """`data` intact, truncated, with bytes overwritten, or with junk inserted."""
    how = draw(mostly("intact", st.sampled_from(["truncated", "overwritten", "junk"])))
    if how == "truncated" and data:
        return data[:draw(st.integers(0, len(data) - 1))]
    if how == "overwritten" and data:
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "junk":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=24)) + data[at:]
    return data


# --- images -----------------------------------------------------------------------------------------

FORMATS = {   # PIL mode -> the formats PIL writes it in
    "1": ("PNG", "BMP", "GIF", "JPEG"), "L": ("PNG", "BMP", "GIF", "JPEG"), "LA": ("PNG", "GIF"),
    "P": ("PNG", "BMP", "GIF"), "RGB": ("PNG", "BMP", "GIF", "JPEG"), "RGBA": ("PNG", "BMP", "GIF"),
    "I;16": ("PNG", "GIF"),
}
MAGIC = st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"GIF87a", b"BM"])


def pil_image(mode, height, width, seed):
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    if mode == "P":
        image = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), "L")
        image = image.convert("P")
        image.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
        return image
    return Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA").convert(mode)


@st.composite
def valid_images(draw, size=None):
    """(bytes, suffix) of an image PIL writes: any mode, format and size (or `size`, (H, W))."""
    mode = draw(st.sampled_from(sorted(FORMATS)))
    fmt = draw(st.sampled_from(FORMATS[mode]))
    height, width = size or (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    buffer = io.BytesIO()
    pil_image(mode, height, width, draw(st.integers(0, 2**32 - 1))).save(buffer, fmt)
    return buffer.getvalue(), "." + fmt.lower()


@st.composite
def image_files(draw, size=None):
    """(bytes, suffix): a PIL-written image, damaged or not, or raw bytes."""
    kind = draw(mostly("image", st.sampled_from(["bytes", "magic"])))
    if kind == "image":
        data, suffix = draw(valid_images(size))
        return draw(damaged(data)), suffix
    prefix = draw(MAGIC) if kind == "magic" else b""
    return prefix + draw(st.binary(max_size=200)), draw(st.sampled_from(IMAGE_SUFFIXES))


@st.composite
def image_folders(draw):
    """{path: bytes} of two class sub-folders of 1-3 images each, mostly all of one size, one of
    them sometimes damaged or not an image."""
    size = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    stems = [f"{name}/{i}" for name in ("cat", "dog") for i in range(draw(st.integers(1, 3)))]
    odd = draw(st.one_of(st.none(), st.sampled_from(stems)))
    files = {}
    for stem in stems:
        image_size = draw(mostly(size, st.none()))
        data, suffix = draw(image_files(image_size) if stem == odd else valid_images(image_size))
        files[stem + suffix] = data
    return files


def check_image_folder(files, image_size):
    with tree(files) as root:
        data = outcome(lambda: load_images(root, image_size=image_size), root)
        if isinstance(data, KdlError):
            return
        channels = data.info.image_shape[-1]
        assert channels in (1, 3) and data.info.class_names == ["cat", "dog"]
        for split in data.splits.values():     # a bad file must have failed above, not here
            for image, label in split:
                assert image.shape[-1] == channels and int(label) in (0, 1)
                assert image_size is None or list(image.shape[:2]) == list(image_size)


IMAGE_SIZES = st.sampled_from([None, (6, 5)])


@given(files=image_folders(), image_size=IMAGE_SIZES)
def test_image_folders_load_or_name_the_bad_file(files, image_size):
    check_image_folder(files, image_size)


@pytest.fixture(scope="module")
def image_recipe():
    """An image recipe on the digits (8x8 grey images) with a built, untrained model."""
    recipe = kdl.recipes.image_classifier(filters=[4], dense=8)
    recipe.model = recipe.build_model()
    return recipe


@given(file=image_files())
def test_predict_reads_an_image_path_or_names_it(image_recipe, file):
    data, suffix = file
    with tree({f"input{suffix}": data}) as root:
        path = root / f"input{suffix}"
        x = outcome(lambda: image_recipe.prepare_inputs([str(path)]), path)
        if not isinstance(x, KdlError):
            assert x.shape == (1, 8, 8, 1) and x.dtype == np.float32 and 0 <= x.min() <= x.max() <= 255


def test_decompression_bombs_are_refused_naming_the_file_and_pixels(image_recipe, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    big, huge = io.BytesIO(), io.BytesIO()
    Image.new("L", (15, 10)).save(big, "PNG")      # 150 pixels: over the limit (PIL only warns)
    Image.new("L", (30, 30)).save(huge, "PNG")     # 900: over twice the limit (PIL refuses)
    files = {"cat/big.png": big.getvalue(), "dog/huge.png": huge.getvalue()}
    with tree(files) as root:
        with pytest.warns(Image.DecompressionBombWarning), pytest.raises(
                DataError, match=r"big.png has 150 pixels \(10x15, HxW\), more than PIL's limit of 100 .*"
                                 "decompression bomb"):
            load_images(root)
        with pytest.raises(DataError, match="huge.png has 900 pixels, more than PIL's limit of 100"):
            image_recipe.prepare_inputs(str(root / "dog" / "huge.png"))


def test_a_corrupt_body_behind_a_valid_header_fails_at_load_time():
    good = io.BytesIO()
    pil_image("RGB", 12, 12, 0).save(good, "PNG")
    truncated = good.getvalue()[:-40]     # the header and the start of the pixel data
    with tree({"cat/a.png": good.getvalue(), "dog/b.png": truncated}) as root:
        with Image.open(root / "dog" / "b.png") as image:
            assert image.size == (12, 12)  # the header alone looks fine
        with pytest.raises(DataError, match=r"cannot read image .*b\.png: .*expected a complete PNG"):
            load_images(root)


def test_image_file_names_that_are_not_utf8_are_read():
    """A Linux file name is bytes: tf.data gets the path as bytes, not as UTF-8 text."""
    png = io.BytesIO()
    Image.new("L", (4, 3)).save(png, "PNG")
    try:
        files = {os.fsdecode(f"{name}/caf".encode() + b"\xe9.png"): png.getvalue() for name in ("cat", "dog")}
        with tree(files) as root:
            images = [image.shape.as_list() for image, _ in load_images(root).splits["train"]]
    except (OSError, UnicodeError):       # a file system that takes only UTF-8 names
        pytest.skip("this file system refuses a file name that is not UTF-8")
    assert images == [[3, 4, 1]]


def test_sixteen_bit_images_decode_the_same_for_training_and_predict(image_recipe):
    pixels = np.full((8, 8), 25700, np.uint16)       # 25700 / 257 = 100 on 8 bits
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    with tree({"cat/a.png": buffer.getvalue(), "dog/b.png": buffer.getvalue()}) as root:
        image, _ = next(iter(load_images(root).splits["train"]))
        assert image.dtype.name == "uint8" and np.all(image.numpy() == 100)
        assert np.all(image_recipe.prepare_inputs(str(root / "cat" / "a.png")) == 100)
        assert np.all(read_image(root / "cat" / "a.png", 3) == 100)


# --- WAV files ----------------------------------------------------------------------------------

RATES = st.one_of(st.sampled_from([0, 1, 999, 1000, 4000, 8000, 16000, 44100, 44101, 768000, 768001,
                                   2**31 - 1, 2**32 - 1]), st.integers(0, 2**32 - 1))


def wav_bytes(channels, width, rate, data, *, format_tag=1, fmt_size=16, data_size=None):
    """A RIFF/WAVE file with these header fields, true or not."""
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, (rate * channels * width) % 2**32,
                      (channels * width) % 2**16, (8 * width) % 2**16)
    fmt = fmt[:fmt_size].ljust(fmt_size, b"\0")
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", fmt_size) + fmt + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@st.composite
def wav_files(draw):
    """The bytes of a WAV file: a header with fuzzed fields (mostly one or two odd ones) and data,
    damaged or not, or raw bytes."""
    kind = draw(mostly("header", st.sampled_from(["bytes", "riff"])))
    if kind != "header":
        return (b"RIFF" if kind == "riff" else b"") + draw(st.binary(max_size=120))
    data = wav_bytes(
        draw(mostly(1, st.integers(0, 8))), draw(mostly(2, st.integers(0, 5))), draw(mostly(8000, RATES)),
        draw(st.binary(min_size=1, max_size=300)),
        format_tag=draw(mostly(1, st.one_of(st.sampled_from([3, 0xFFFE]), st.integers(0, 2**16 - 1)))),
        fmt_size=draw(mostly(16, st.sampled_from([0, 2, 14, 18, 40]))),
        data_size=draw(mostly(None, st.integers(0, 2**32 - 1))),
    )
    return draw(damaged(data))


def check_wav(data, sample_rate):
    with tree({"clip.wav": data}) as root:
        result = outcome(lambda: read_wav(root / "clip.wav", sample_rate), root / "clip.wav")
        if isinstance(result, KdlError):
            return
        waveform, rate = result
        assert waveform.dtype == np.float32 and waveform.ndim == 1 and waveform.size >= 1
        assert np.isfinite(waveform).all() and rate == (sample_rate or rate)


@given(data=wav_files(), sample_rate=st.sampled_from([None, 8000, 16000]))
def test_read_wav_reads_or_names_the_file(data, sample_rate):
    check_wav(data, sample_rate)


@st.composite
def wav_folders(draw):
    """{path: bytes} of two label sub-folders of 1-2 WAV files, mostly plausible ones."""
    good = st.builds(wav_bytes, st.sampled_from([1, 2]), st.sampled_from([1, 2, 3, 4]),
                     st.sampled_from([4000, 8000, 44100]), st.binary(min_size=24, max_size=200))
    return {f"{label}/{i}.wav": draw(st.one_of(good, good, good, wav_files()))
            for label in ("yes", "no") for i in range(draw(st.integers(1, 2)))}


def check_wav_folder(files):
    with tree(files) as root:
        data = outcome(lambda: load_audio(root, sample_rate=8000, max_seconds=0.05), root)
        if not isinstance(data, KdlError):
            for split in data.splits.values():
                for waveform, label in split:
                    assert waveform.shape == (400,) and int(label) in (0, 1)


@given(files=wav_folders())
def test_load_audio_on_a_folder_of_fuzzed_wavs(files):
    check_wav_folder(files)


# --- CSV / TSV tables -------------------------------------------------------------------------------

LONG_FIELD = "y" * 140_000    # longer than the csv module's default field_size_limit (131,072)
WORDS = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\t,\""), max_size=12)
ODD_FIELDS = st.one_of(st.text(max_size=12), st.just(LONG_FIELD), st.sampled_from(
    ['"', '""', ",", "\t", "\0", "\r", "\n", "\r\n", '"a,b"', 'x"y', "\ufeff", " ", "\\"]))
ODD_LABELS = st.one_of(st.text(max_size=4), st.sampled_from(
    ["", " 1 ", "-1", "²", "١", "--5", "1.5", "nan", "inf", "99999999999999999999", "0x1", '"1"', "1"]))
ODD_HEADERS = st.sampled_from([("label", "sentence"), ("sentence", "label", "extra"), ("text", "label"), ()])


@st.composite
def tables(draw):
    """(bytes, suffix) of a CSV or TSV file: a sentence,label header and rows of a text and a label
    (indices or names), written raw or by csv.writer; one part odd, or none."""
    suffix = draw(st.sampled_from([".csv", ".tsv"]))
    delimiter, ending = ("\t" if suffix == ".tsv" else ","), draw(ENDINGS)
    odd = draw(odd_part("header", "row", "label", "field", "bytes"))
    classes = draw(st.sampled_from([("0", "1"), ("neg", "pos")]))
    rows = [list(draw(ODD_HEADERS)) if odd == "header" else ["sentence", "label"]]
    rows += [[draw(WORDS), classes[i % 2]] for i in range(draw(st.integers(0, 8)))]
    if odd in ("row", "label", "field") and len(rows) > 1:
        row = rows[draw(st.integers(1, len(rows) - 1))]
        if odd == "row":
            row[:] = draw(st.lists(st.one_of(WORDS, ODD_FIELDS), max_size=4))
        elif odd == "label":
            row[1] = draw(ODD_LABELS)
        else:
            row[0] = draw(ODD_FIELDS)
    if draw(st.booleans()):
        text = "".join(delimiter.join(row) + ending for row in rows)
    else:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=delimiter, lineterminator=ending).writerows(rows)
        text = buffer.getvalue()
    return draw(encoded(text, broken=odd == "bytes")), suffix


def check_table(file):
    data, suffix = file
    with tree({f"table{suffix}": data}) as root:
        path = root / f"table{suffix}"
        dataset = outcome(lambda: load_texts(path), path)
        if not isinstance(dataset, KdlError):
            assert len(dataset.info.class_names) >= 2
            texts = [text for split in dataset.splits.values() for text, _ in split]
            assert sum(dataset.info.num_examples.values()) == len(texts)


@given(file=tables())
def test_load_texts_on_fuzzed_csv_and_tsv(file):
    check_table(file)


CLEAN_TEXT = st.text(st.characters(blacklist_characters='\r\n\t,"\ufeff', blacklist_categories=["Cs"]),
                     max_size=10)


@given(texts=st.lists(CLEAN_TEXT, min_size=2, max_size=6), suffix=st.sampled_from([".csv", ".tsv"]),
       ending=ENDINGS, bom=st.booleans())
def test_line_endings_and_bom_read_the_same_in_every_text_reader(texts, suffix, ending, bom):
    delimiter = "\t" if suffix == ".tsv" else ","
    labels = [str(i % 2) for i in range(len(texts))]
    table = [f"sentence{delimiter}label"] + [delimiter.join(row) for row in zip(texts, labels)]
    lines = [text if text.strip() else "-" for text in texts]      # line files hold no blank line

    def write(lines, ending, bom):
        return (BOM if bom else b"") + "".join(line + ending for line in lines).encode()

    pairs = [f"{line}\t{line}" for line in lines]
    plain = {"t" + suffix: write(table, "\n", False), "lines.txt": write(lines, "\n", False),
             "p/train.en": write(lines, "\n", False), "p/train.de": write(lines, "\n", False),
             "p/test.en": write(lines, "\n", False), "p/test.de": write(lines, "\n", False),
             "pairs.tsv": write(pairs, "\n", False)}
    variant = {name: write(split_text, ending, bom) for name, split_text in (
        ("t" + suffix, table), ("lines.txt", lines), ("p/train.en", lines), ("p/train.de", lines),
        ("p/test.en", lines), ("p/test.de", lines), ("pairs.tsv", pairs))}
    variant["p/train.de"] = write(lines, "\n", False)      # mixed within one folder
    variant["p/test.de.gz"] = gzip.compress(variant.pop("p/test.de"))

    def read(files):
        with tree(files) as root:
            folder, pairs = load_parallel(root / "p"), load_parallel(root / "pairs.tsv")
            return (read_table(root / f"t{suffix}", "sentence", "label")[:2], read_lines(root / "lines.txt"),
                    folder.texts("train"), folder.texts("test"), pairs.texts("train"))

    assert read(variant) == read(plain)
    assert read(plain)[0] == (texts, labels) and read(plain)[1] == lines


# --- aligned line files and TSV pairs (translation) --------------------------------------------

SENTENCES = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\t"),
                    min_size=1, max_size=12).filter(str.strip)
ODD_LINES = st.one_of(st.text(max_size=12), st.sampled_from(
    ["", " ", "\t", "a\tb", "\x0c", "\u2028", "\x85", "\0", "a\rb", "\n", "\ufeff"]))


@st.composite
def line_folders(draw):
    """{path: bytes} of train and test .en and .de line files of one sentence a line, plain or
    gzip'd; one part odd (a line, a line too many or too few, a byte, a damaged gzip file), or none."""
    files = {}
    odd = draw(odd_part("line", "count", "bytes", "gzip"))
    odd_file = draw(st.sampled_from([f"{split}.{language}" for split in ("train", "test")
                                     for language in ("en", "de")]))
    for split in ("train", "test"):
        count = draw(st.integers(1, 5))
        for language in ("en", "de"):
            name = f"{split}.{language}"
            lines = draw(st.lists(SENTENCES, min_size=count, max_size=count))
            if name == odd_file and odd == "line":
                lines[draw(st.integers(0, count - 1))] = draw(ODD_LINES)
            if name == odd_file and odd == "count":
                lines = lines[1:] if draw(st.booleans()) else lines + ["one line too many"]
            data = draw(encoded("".join(line + draw(ENDINGS) for line in lines), broken=name == odd_file
                                and odd == "bytes"))
            if draw(st.booleans()) or (name == odd_file and odd == "gzip"):
                name, data = name + ".gz", gzip.compress(data)
                data = draw(damaged(data)) if odd == "gzip" else data
            files[name] = data
    return files


def check_line_folder(files):
    with tree(files) as root:
        data = outcome(lambda: load_parallel(root, source_language="en", target_language="de"), root)
        if not isinstance(data, KdlError):
            for split in data.splits:
                sources, targets = data.texts(split)
                assert len(sources) == len(targets) and all(text.strip() for text in sources + targets)


@given(files=line_folders())
def test_load_parallel_on_fuzzed_line_files(files):
    check_line_folder(files)


@st.composite
def pair_files(draw):
    """(bytes, suffix) of a file of source<TAB>target[<TAB>...] lines; one part odd, or none."""
    odd = draw(odd_part("line", "field", "bytes"))
    rows = [[draw(SENTENCES) for _ in range(draw(st.integers(2, 3)))] for _ in range(draw(st.integers(1, 6)))]
    row = draw(st.sampled_from(rows))
    if odd == "line":
        row[:] = [draw(ODD_LINES)]
    elif odd == "field":
        row[draw(st.integers(0, len(row) - 1))] = draw(ODD_LINES)
    text = "".join("\t".join(row) + draw(ENDINGS) for row in rows)
    return draw(encoded(text, broken=odd == "bytes")), draw(st.sampled_from([".tsv", ".txt"]))


def check_pair_file(file):
    data, suffix = file
    with tree({f"pairs{suffix}": data}) as root:
        path = root / f"pairs{suffix}"
        result = outcome(lambda: load_parallel(path, reverse=True), path)
        if not isinstance(result, KdlError):
            assert len(result.texts("train")[0]) == result.info.num_examples["train"]


@given(file=pair_files())
def test_load_parallel_on_fuzzed_tsv_pairs(file):
    check_pair_file(file)


# --- TOML recipe files ------------------------------------------------------------------------------


def settings_of(config_class, prefix=()):
    """(path, type hint) of every setting of a task's config, e.g. (("train", "epochs"), int);
    "task" left out."""
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        if dataclasses.is_dataclass(hints[field.name]):
            yield from settings_of(hints[field.name], prefix + (field.name,))
        elif prefix or field.name != "task":
            yield prefix + (field.name,), hints[field.name]


SETTINGS = {task: sorted(settings_of(recipe.Config), key=str) for task, recipe in kdl.recipes.RECIPES.items()}
SCALARS = st.one_of(
    st.integers(-5, 5), st.sampled_from([0, -1, 2**63 - 1, -2**63, 2**63, 2**64, -2**63 - 1, 10**100]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([float("nan"), float("inf"), -0.0]),
    st.text(max_size=8), st.just(""), st.booleans(),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(min_size=1, max_size=6), inner, max_size=3), max_leaves=6)
TYPED = {int: st.integers(-2, 10**6) | st.sampled_from([2**63 - 1, 2**63, -2**63 - 1]),
         float: st.floats(-1, 10) | st.sampled_from([float("nan"), float("inf"), 1e308]),
         str: st.text(max_size=8), bool: st.booleans()}


def values_for(hint):
    """Values of the setting's own type (in range or not), mostly; else anything TOML holds."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        typed = st.lists(values_for(args[0]), max_size=3)
    elif origin is dict:
        typed = st.dictionaries(st.text(min_size=1, max_size=6), values_for(args[1]), max_size=3)
    else:
        typed = TYPED.get(hint, VALUES)
    return mostly(typed, VALUES)


@st.composite
def recipe_tables(draw):
    """A recipe file's table: a real task, and fuzzed values for 1-4 of its real settings (and
    sometimes an unknown one)."""
    task = draw(st.sampled_from(sorted(SETTINGS)))
    table = {"task": task}
    for path, hint in draw(st.lists(st.sampled_from(SETTINGS[task]), min_size=1, max_size=4, unique=True)):
        if draw(st.integers(0, 11)) == 0:
            path = path[:-1] + (draw(st.text(min_size=1, max_size=6).filter(lambda key: key != "task")),)
        node = table
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = draw(values_for(hint))
    return table


def check_recipe_file(data):
    with tree({"recipe.toml": data}) as root:
        path = root / "recipe.toml"
        recipe = outcome(lambda: kdl.recipes.load(path), path)
        assert isinstance(recipe, (kdl.recipes.Recipe, KdlError)), recipe


@given(table=recipe_tables())
def test_recipe_files_with_fuzzed_values_of_real_settings(table):
    check_recipe_file(tomli_w.dumps(table).encode())


SETTING_NAMES = sorted({path[-1] for settings in SETTINGS.values() for path, _ in settings})
TOML_SECTIONS = st.sampled_from(["[data]", "[train]", "[model]", "[model.options]", "[data.splits]",
                                 "[[train]]", "[train", "[]", "[data]]"])
TOML_VALUES = st.sampled_from(
    ["3", "-1", "0", "1e-3", "1e999", "nan", "-inf", '"x"', '""', "'''a\nb'''", "[1, 2]", "[]", '["a", 1]',
     "{a = 1}", "true", "9" * 25, "0x1F", "1979-05-27", '"unterminated', "[", "", '"\\u0000"', "1_000",
     "+1", "01", "[[1], {a = [2]}]"])


@st.composite
def toml_texts(draw):
    """The bytes of a TOML-like recipe: a task line, then sections and `setting = value` lines with
    real setting names and odd values, some lines not TOML at all."""
    tasks = st.sampled_from([f'task = "{task}"' for task in sorted(SETTINGS)])
    lines = [draw(mostly(tasks, st.text(max_size=12)))]
    for _ in range(draw(st.integers(0, 6))):
        key = draw(mostly(st.sampled_from(SETTING_NAMES), st.text(max_size=6)))
        line = f"{key} = {draw(mostly(TOML_VALUES, st.text(max_size=6)))}"
        lines.append(draw(st.one_of(st.just(line), st.just(line), TOML_SECTIONS, st.text(max_size=12))))
    return draw(encoded("".join(line + draw(mostly("\n", ENDINGS)) for line in lines)))


TOML_FILES = st.one_of(toml_texts(), toml_texts(), toml_texts(), st.binary(max_size=80))


@given(data=TOML_FILES)
def test_recipe_files_of_fuzzed_toml_text(data):
    check_recipe_file(data)


@pytest.mark.parametrize("text", ["task = [1]\n", "[task]\na = 1\n", "a = " + "[" * 2000 + "]" * 2000 + "\n",
                                  'task = "translator"\nseed = ' + "9" * 5000 + "\n",
                                  '\ufefftask = "translator"\n'])
def test_recipe_files_with_odd_task_values_nesting_and_sizes(text):
    with tree({"recipe.toml": text.encode()}) as root:
        outcome(lambda: kdl.recipes.load(root / "recipe.toml"), root / "recipe.toml")


# --- long runs: every property with the "long" profile (-m slow) ---------------------------------


@pytest.mark.parametrize("strategy, check", [
    fuzz_long("images", st.tuples(image_folders(), IMAGE_SIZES), lambda args: check_image_folder(*args)),
    fuzz_long("wav", st.tuples(wav_files(), st.sampled_from([None, 8000])), lambda args: check_wav(*args)),
    fuzz_long("wav-folders", wav_folders(), check_wav_folder),
    fuzz_long("tables", tables(), check_table),
    fuzz_long("line-files", line_folders(), check_line_folder),
    fuzz_long("tsv-pairs", pair_files(), check_pair_file),
    fuzz_long("recipe-values", recipe_tables().map(lambda table: tomli_w.dumps(table).encode()),
              check_recipe_file),
    fuzz_long("recipe-text", TOML_FILES, check_recipe_file),
])
def test_long_fuzz(strategy, check):
    settings(settings.get_profile("long"))(given(strategy)(check))()
