"""What `recipe.explain` returns: attributions as NumPy arrays, what they explain, and how they
were made; `.save(folder)` writes them as .npy, pictures and an index.html (kdl.explain.render).

>>> import numpy as np
>>> e = Explanation("occlusion", "image", attributions=np.zeros((1, 8, 8)), inputs=np.zeros((1, 8, 8, 1)),
...                 predicted=["3"], target=["3"], probability=np.array([0.9]))
>>> len(e), e.peaks().tolist()
(1, [[0, 0]])
"""

import dataclasses
import json
import pathlib

import numpy as np

from kdl.errors import RunError
from kdl.runs import write_file


@dataclasses.dataclass
class Explanation:
    """One explanation per input, of one method.

    attributions: (N, ...) per example, shaped like what they explain:
        image: (N, H, W) for every method (integrated gradients summed over colour channels);
        text: (N, L) per token position (padding positions 0), tokens in `tokens`;
        audio: (N, T, mel) over the log-mel features in `features` (`at="waveform"`: (N, samples));
        attention: (N, layers, heads, T, S), rows = queries (target tokens), columns = keys.
    inputs: what the model read: images (N, H, W, C) 0..255, token ids (N, L), waveforms (N, samples).
    predicted / target: class names (the target is the class explained, the prediction by default);
    probability: (N,) the model's probability of the target class.
    settings: the method and its settings (steps, baseline, layer, window, tolerance, ...).
    checks: per-method checks, e.g. integrated gradients' completeness gaps (see `completeness`).
    """

    method: str
    modality: str                    # "image", "text", "audio" or "attention"
    attributions: np.ndarray
    inputs: np.ndarray
    predicted: list
    target: list
    probability: np.ndarray
    settings: dict = dataclasses.field(default_factory=dict)
    checks: dict = dataclasses.field(default_factory=dict)
    names: list = None               # per input: its file name or "input N"
    tokens: list = None              # text: the tokens of each input (per position, "" for padding)
    target_tokens: list = None       # attention of a translator: the output tokens (rows)
    features: np.ndarray = None      # audio: the log-mel features (N, T, mel) the model computed

    def __post_init__(self):
        if self.names is None:
            self.names = [f"input {i}" for i in range(len(self.attributions))]

    @classmethod
    def concatenate(cls, parts):
        """One Explanation of several of the same method, in order (arrays zero-padded to the
        largest shape, token rows with "")."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        lists = {name: [item for part in parts for item in getattr(part, name)]
                 for name in ("predicted", "target", "names")}
        checks = {}
        for key, value in first.checks.items():
            if isinstance(value, np.ndarray) and len(value) == len(first):
                checks[key] = np.concatenate([part.checks[key] for part in parts])
            elif isinstance(value, bool):
                checks[key] = all(part.checks[key] for part in parts)
            else:
                checks[key] = max(part.checks[key] for part in parts)
        return cls(first.method, first.modality, _stack([p.attributions for p in parts]),
                   _stack([p.inputs for p in parts]),
                   probability=np.concatenate([p.probability for p in parts]),
                   settings=first.settings, checks=checks, tokens=_rows([p.tokens for p in parts]),
                   target_tokens=_rows([p.target_tokens for p in parts]),
                   features=None if first.features is None else _stack([p.features for p in parts]), **lists)

    def __len__(self):
        return len(self.attributions)

    def peaks(self):
        """The index of each example's largest attribution, (N, attribution dims) (the pointing game)."""
        flat = self.attributions.reshape(len(self), -1)
        return np.stack(np.unravel_index(np.argmax(flat, axis=1), self.attributions.shape[1:]), axis=1)

    def summary(self):
        """One line per input: name, predicted and target class, and the method's check."""
        lines = []
        for i in range(len(self)):
            line = (f"{self.names[i]}: predicted {self.predicted[i]}, explained {self.target[i]} "
                    f"(p={float(self.probability[i]):.3f})")
            if "completeness_gap" in self.checks:
                line += f", completeness gap {self.checks['completeness_gap'][i]:.2e}"
            lines.append(line)
        return "\n".join(lines)

    def to_dict(self):
        """Everything but the arrays, JSON-ready (explanation.json)."""
        return {"method": self.method, "modality": self.modality, "names": list(self.names),
                "predicted": list(self.predicted), "target": list(self.target),
                "probability": [float(p) for p in self.probability], "settings": _plain(self.settings),
                "checks": _plain(self.checks), "tokens": self.tokens, "target_tokens": self.target_tokens,
                "attribution_shape": list(self.attributions.shape)}

    def save(self, folder):
        """Write attributions.npy, inputs.npy, explanation.json, a picture per input and an
        index.html that shows them all into `folder` (created; files replaced atomically)."""
        from kdl.explain import render

        folder = pathlib.Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_file(folder / "attributions.npy", _npy(self.attributions))
            write_file(folder / "inputs.npy", _npy(self.inputs))
            if self.features is not None:
                write_file(folder / "features.npy", _npy(self.features))
            text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
            write_file(folder / "explanation.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
            render.write_all(self, folder)
        except OSError as error:
            raise RunError(f"cannot write the explanation to {str(folder)!r}: "
                           f"{error.strerror or error} ({error.filename})") from None
        return folder

    def plot(self, index=0):
        """A matplotlib Figure of one input's explanation (what `save` writes as its picture)."""
        from kdl.explain import render

        return render.figure(self, index)


def _stack(arrays):
    """Concatenate along the first axis, zero-padding every other axis to the largest size."""
    shape = np.max([a.shape for a in arrays], axis=0)[1:]
    return np.concatenate([np.pad(a, [(0, 0)] + [(0, int(s - n)) for s, n in zip(shape, a.shape[1:])])
                           for a in arrays])


def _rows(groups):
    """Token rows of several explanations, each padded with "" to the longest."""
    if groups[0] is None:
        return None
    rows = [row for group in groups for row in group]
    width = max(len(row) for row in rows)
    return [list(row) + [""] * (width - len(row)) for row in rows]


def _npy(array):
    """A write_file writer of `array` in .npy format (np.save to a name would append ".npy")."""
    def write(tmp):
        with open(tmp, "wb") as handle:
            np.save(handle, array)
    return write


def _plain(value):
    """NumPy values -> JSON types, recursively."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        return value.item()
    return value
