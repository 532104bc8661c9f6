"""`Report`: the result of every kdl scorer, printable and saved as JSON or Markdown.

>>> rows = [{"name": "a", "score": 1.0}]
>>> report = Report("demo", metrics={"accuracy": 0.5, "errors": 3}, tables={"rows": rows})
>>> report["accuracy"], report["errors"]
(0.5, 3)
>>> print(report)
demo report
  accuracy  0.5000
  errors    3
<BLANKLINE>
rows
  name   score
  a     1.0000
>>> Report.from_json(report.to_json()) == report
True
"""

import dataclasses
import json
import pathlib

import numpy as np

from kdl.errors import DataError

_REPORT_CLASSES = {}  # task name -> Report subclass, filled by `class X(Report, task=...)`


@dataclasses.dataclass(eq=False)
class Report:
    """Headline `metrics` (plain floats; counts, given as ints, stay ints and print as integers),
    named `tables` (lists of row dicts) and free-form `meta`.

    A subclass registers its task name with `class XReport(Report, task="x")` so that
    `from_dict` rebuilds it; it must use `@dataclasses.dataclass(eq=False)` to keep `__eq__`,
    which compares the JSON forms.
    """

    task: str
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    tables: dict[str, list[dict]] = dataclasses.field(default_factory=dict)
    meta: dict = dataclasses.field(default_factory=dict)

    def __init_subclass__(cls, task=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if task is not None:
            _REPORT_CLASSES[task] = cls

    def __post_init__(self):
        self.metrics = {name: _metric(value) for name, value in self.metrics.items()}

    def __getitem__(self, name):
        try:
            return self.metrics[name]
        except KeyError:
            raise KeyError(f"no metric {name!r}; available metrics: {', '.join(self.metrics)}") from None

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __str__(self):
        title = f"{self.task} report"
        if "num_examples" in self.meta:
            title += f" ({self.meta['num_examples']} examples)"
        width = max((len(name) for name in self.metrics), default=0)
        lines = [title, *(f"  {name:<{width}}  {_cell(value)}" for name, value in self.metrics.items())]
        for section_title, header, rows in self._sections():
            lines += ["", section_title]
            if header:
                lines += [f"  {line}" for line in _text_table(header, rows)]
        return "\n".join(lines)

    def _sections(self):
        """(title, header, rows of cells) for each printed table; subclasses may add their own."""
        for name, row_dicts in self.tables.items():
            header = list(dict.fromkeys(key for row in row_dicts for key in row))
            yield name, header, [[row.get(key, "") for key in header] for row in row_dicts]

    def to_dict(self):
        """Every field as JSON-safe Python values (numpy arrays become nested lists)."""
        return _json_safe({field.name: getattr(self, field.name) for field in dataclasses.fields(self)})

    def to_json(self, path=None):
        """The report as a JSON string, also written to `path` when one is given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            path = pathlib.Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n")
        return text

    def to_markdown(self):
        """A Markdown title, a metric/value table, then one table per section."""
        lines = [f"# {self.task} report", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {name} | {_cell(value)} |" for name, value in self.metrics.items()]
        for section_title, header, rows in self._sections():
            lines += ["", f"## {section_title}"]
            if header:
                lines += ["", _markdown_row(header), _markdown_row(["---"] * len(header))]
                lines += [_markdown_row(_cell(value) for value in row) for row in rows]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_dict(cls, data):
        """Rebuild a report from `to_dict()` output, as the subclass registered for its task."""
        return _REPORT_CLASSES.get(data["task"], Report)(**data)

    @classmethod
    def from_json(cls, path_or_str):
        """Rebuild a report from a JSON string or the path of a file `to_json` wrote."""
        text = str(path_or_str)
        if not text.lstrip().startswith("{"):
            text = pathlib.Path(path_or_str).read_text()
        return cls.from_dict(json.loads(text))


def check_paired_texts(scorer, first_name, first, second_name, second):
    """Raise DataError unless `first` and `second` are equally long, non-empty lists of strings
    (a scorer's hypotheses and references); returns them as lists.

    >>> check_paired_texts("translation()", "hypotheses", ["a"], "references", [3])
    Traceback (most recent call last):
    kdl.errors.DataError: translation(): references[0] is int; expected a string
    """
    first, second = list(first), list(second)
    if len(first) != len(second) or not first:
        raise DataError(f"{scorer} needs one of {first_name} per one of {second_name}, and at least one; "
                        f"got {len(first)} {first_name} and {len(second)} {second_name}")
    for name, texts in ((first_name, first), (second_name, second)):
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            raise DataError(f"{scorer}: {name}[{bad}] is {type(texts[bad]).__name__}; expected a string")
    return first, second


def _json_safe(value):
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float)):
        return value
    return str(value)


def _metric(value):
    """A metric as a plain Python number: an int (a count) stays an int, anything else is a float."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    return float(value)


def _cell(value):
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _text_table(header, rows):
    """Aligned plain-text lines: numbers right-aligned, everything else left-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) for i in range(len(header))]
    widths = [max([len(str(title)), *(len(row[i]) for row in cells)]) for i, title in enumerate(header)]

    def line(values):
        aligned = (v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric))
        return "  ".join(aligned).rstrip()

    return [line([str(title) for title in header]), *(line(row) for row in cells)]


def _markdown_row(cells):
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"
