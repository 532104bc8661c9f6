"""What `kdl predict`, `kdl explain` and `kdl serve` accept as inputs, read into batches for
`Recipe.predict`: files (in chunks), folders, the lines of a .txt file or standard input, the
rows of a .npy array, literal strings (text runs).

>>> recipe = recipes.load("runs/digits")                                        # doctest: +SKIP
>>> units = prediction_units(["seven.png", "two_rows.npy"], recipe, literal_text=False)  # doctest: +SKIP
>>> [(names, len(batch)) for names, batch, _ in units]                        # doctest: +SKIP
[(['seven.png'], 1), (['two_rows.npy[0]', 'two_rows.npy[1]'], 2)]
"""

import os
import sys

import numpy as np

from kdl.data import read_lines
from kdl.data.io import walk_folder
from kdl.errors import DataError

CHUNK = 256      # files read and predicted together by `kdl predict`


def prediction_units(items, recipe, literal_text):
    """[(names, inputs, is_chunk_of_files)] for recipe.predict, in the order given: files in
    chunks of CHUNK, the lines of a .txt file (or of standard input, `-`), the rows of a .npy
    array, literal strings (text runs); folders expanded, recursively, to the task's files
    (`recipe.input_files`). An input that cannot be read is a unit whose inputs are its error."""
    texts = recipe.input_files == (".txt",)      # text runs: an example is a line or a string
    units, files = [], []

    def add(unit):
        units.extend((files[i:i + CHUNK], files[i:i + CHUNK], True) for i in range(0, len(files), CHUNK))
        files.clear()
        units.append(unit)

    def read(item):
        try:
            inputs = read_file(item)
            if len(inputs) == 0:
                raise DataError(f"{item!r} holds no examples (an empty file, or an array of 0 rows)")
        except DataError as error:
            return [item], error, False
        return [item] if len(inputs) == 1 else [f"{item}[{i}]" for i in range(len(inputs))], inputs, False

    for item in items:
        if literal_text:
            add(([item], [item], False))
        elif item == "-":
            lines = [line.rstrip("\r\n") for line in sys.stdin]
            if texts:
                add(([f"-[{i}]" for i in range(len(lines))], lines, False))
            else:
                files.extend(line for line in lines if line.strip())
        elif os.path.isdir(item):
            try:      # the loaders' folder walk: a link loop or a dangling link is named
                found = [str(path) for path in walk_folder(item, recipe.input_files, recursive=True)[1]]
            except DataError as error:
                add(([item], error, False))
                continue
            if not found:
                add(([item], DataError(f"folder {item!r} holds no {' or '.join(recipe.input_files)} files "
                                       f"for this {recipe.task} run"), False))
            for path in found:
                if texts:
                    add(read(path))
                else:
                    files.append(path)
        elif item.endswith((".npy", ".txt")):
            add(read(item))
        elif texts and os.path.isfile(item):
            add(([item], DataError(f"{item!r} is a file; a {recipe.task} run reads .txt files (one "
                                   "example a line), or use --text to predict on the string itself"), False))
        elif texts:
            add(([item], [item], False))
        else:
            files.append(item)
    add(([], [], False))
    return [unit for unit in units if unit[0]]


def read_file(item):
    """What one .txt or .npy file means: the lines of a .txt file, the rows of a .npy array."""
    if item.endswith((".npy", ".txt")) and not os.path.isfile(item):
        raise DataError(f"no input file {item!r} (use --text for literal strings)")
    if item.endswith(".npy"):
        try:
            return np.load(item, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read {item!r} as a NumPy .npy array: {error}") from None
    return read_lines(item) if item.endswith(".txt") else [item]


def class_target(text, recipe):
    """A --target (or a served request's "target"): a class name of the run, else a class index."""
    names = list(getattr(recipe, "class_names", []) or [])
    return text if text in names or not text.isdigit() else int(text)
