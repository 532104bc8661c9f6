"""`Comparison`: the rows of a backend comparison, the agreement between them, and the
report files (comparison.json, comparison.md, throughput.png, loss_curves.png).

>>> c = Comparison("demo", settings={}, out=None)
>>> c.add({"label": "jax", "backend": "jax", "step_seconds_median": 0.002, "samples_per_second": 16000})
>>> c.add({"label": "torch", "backend": "torch", "step_seconds_median": 0.004, "samples_per_second": 8000})
>>> c.winners()[0]
'fastest steady-state step: jax (2.00 ms), 2.00x faster than torch (4.00 ms)'
"""

import dataclasses
import json
import pathlib

import numpy as np

# (key, column title, scale, format): the measures in the table, as stored in JSON * scale.
MEASURES = [
    ("first_step_seconds", "first step (s)", 1, "{:.2f}"),
    ("step_seconds_median", "step (ms)", 1e3, "{:.2f}"),
    ("samples_per_second", "samples/s", 1, "{:,.0f}"),
    ("fit_seconds", "fit (s)", 1, "{:.1f}"),
    ("peak_host_memory_mb", "host MB", 1, "{:,.0f}"),
    ("peak_device_memory_mb", "device MB", 1, "{:,.0f}"),
]
# key -> (what the winner is, scale, unit, how another compares); lower is better for each.
BASELINES = {"plain_fit": "plain model.fit", "native": "native loop",
             "native_compiled": "native + torch.compile"}
WINNER_LINES = {
    "step_seconds_median": ("fastest steady-state step", 1e3, "ms", "faster than"),
    "first_step_seconds": ("fastest to the first step (build + compile)", 1, "s", "faster than"),
    "fit_seconds": ("shortest fit", 1, "s", "faster than"),
    "peak_host_memory_mb": ("least peak host memory", 1, "MB", "smaller than"),
    "peak_device_memory_mb": ("least peak device memory", 1, "MB", "smaller than"),
}


@dataclasses.dataclass
class Comparison:
    """One row per backend run (a dict of measures, or an `error`), plus agreement figures."""

    recipe: str
    settings: dict
    out: pathlib.Path = None
    rows: list = dataclasses.field(default_factory=list)

    def add(self, row):
        row = dict(row)
        row.setdefault("label", row["backend"])
        if "error" not in row and self.out is not None:
            row.update(self._agreement(row))
        if row.get("baselines"):
            row["overhead"] = {name: row["step_seconds_median"] / seconds
                               for name, seconds in row["baselines"].items() if seconds}
        self.rows.append(row)

    def _agreement(self, row):
        """Max abs differences from the first successful run: outputs under the shared initial
        weights, and the loss after identical deterministic steps."""
        reference = next((r for r in self.rows if "error" not in r), None)
        if reference is None:
            found = (self.out / row["label"] / "initial_attributions.npy").is_file()
            return {"output_max_abs_diff": 0.0, "loss_max_abs_diff": 0.0,
                    "explain_max_abs_diff": 0.0 if found else None, "agreement_reference": row["label"]}
        outputs = {r["label"]: np.load(self.out / r["label"] / "initial_outputs.npy")
                   for r in (reference, row)}
        return {
            "output_max_abs_diff": float(np.max(np.abs(outputs[row["label"]] - outputs[reference["label"]]))),
            "loss_max_abs_diff": float(np.max(np.abs(np.subtract(row["agreement_losses"],
                                                                  reference["agreement_losses"])))),
            "explain_max_abs_diff": _max_difference(*(self.out / r["label"] / "initial_attributions.npy"
                                                      for r in (row, reference))),
            "agreement_reference": reference["label"],
        }

    @property
    def succeeded(self):
        return [row for row in self.rows if "error" not in row]

    def row(self, label):
        return next(row for row in self.rows if row["label"] == label)

    def summary(self, label):
        """One line about one run, for progress display."""
        row = self.row(label)
        if "error" in row:
            return f"FAILED: {row['error']}"
        metric = next(iter(row["metrics"]), None)     # the headline metric: accuracy, BLEU, WER
        line = (f"step {row['step_seconds_median'] * 1e3:.2f} ms, "
                f"first step {row['first_step_seconds']:.1f} s, fit {row['fit_seconds']:.1f} s")
        return line + (f", {metric} {row['metrics'][metric]:.4f}" if metric else "")

    def winners(self):
        """One line per measure: which backend wins, and by what ratio over each other."""
        lines = []
        for key, (title, scale, unit, relation) in WINNER_LINES.items():
            measured = sorted((row[key], row["label"]) for row in self.succeeded if row.get(key))
            if len(measured) < 2:
                continue
            (best, label), others = measured[0], measured[1:]
            versus = ", ".join(f"{value / best:.2f}x {relation} {other} ({value * scale:.2f} {unit})"
                               for value, other in others)
            lines.append(f"{title}: {label} ({best * scale:.2f} {unit}), {versus}")
        metric = self._headline_metric()
        if metric and len(self.succeeded) > 1:
            ranked = sorted(self.succeeded, key=lambda row: -row["metrics"][metric])
            lines.append(f"best {metric}: {ranked[0]['label']} ({ranked[0]['metrics'][metric]:.4f}); "
                         + ", ".join(f"{row['label']} {row['metrics'][metric]:.4f}" for row in ranked[1:]))
        return lines

    def _headline_metric(self):
        """The first metric of the reports (accuracy for classifiers), or None."""
        metrics = self.succeeded[0].get("metrics", {}) if self.succeeded else {}
        return next(iter(metrics), None)

    def to_dict(self):
        return {"recipe": self.recipe, "settings": self.settings, "rows": self.rows,
                "winners": self.winners()}

    def to_markdown(self):
        metric = self._headline_metric()
        header = ["backend", *(title for _, title, _, _ in MEASURES)]
        header += [metric or "metric", "Δ outputs", "Δ loss", "Δ explain"]
        lines = [f"# Backend comparison: {self.recipe}", "",
                 "Settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items()
                                          if v not in (None, [])),
                 "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            if "error" in row:
                lines.append(f"| {row['label']} | error: {row['error']} |" + " |" * (len(header) - 2))
                continue
            cells = [row["label"]] + [fmt.format(row[key] * scale) if row.get(key) is not None else "-"
                                      for key, _, scale, fmt in MEASURES]
            cells += [f"{row['metrics'].get(metric, float('nan')):.4f}",
                      f"{row['output_max_abs_diff']:.1e}", f"{row['loss_max_abs_diff']:.1e}",
                      _cell(row.get("explain_max_abs_diff"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Δ outputs: max abs difference of the model's outputs on a fixed batch under the "
                  "shared initial weights; Δ loss: of the loss after identical deterministic steps; "
                  "Δ explain: of the integrated-gradients attributions on that batch under the shared "
                  "initial weights (kdl.explain; - where the model has none); all against the first "
                  "backend that ran.", ""]
        lines += [f"- {line}" for line in self.winners()]
        return "\n".join(lines + self._overhead_markdown()) + "\n"

    def _overhead_markdown(self):
        """The overhead table: kdl's median step time over each baseline's, per backend."""
        rows = [row for row in self.succeeded if row.get("baselines")]
        if not rows:
            return []
        names = list(dict.fromkeys(name for row in rows for name in row["baselines"]))
        header = ["backend", "kdl step (ms)"] + [f"{BASELINES[n]} (ms) | kdl / {BASELINES[n]}" for n in names]
        lines = ["", "## Overhead: kdl against a plain model.fit and the native training loop", "",
                 "| " + " | ".join(header) + " |", "|---|---|" + "---|---|" * len(names)]
        for row in rows:
            cells = [row["label"], f"{row['step_seconds_median'] * 1e3:.2f}"]
            for name in names:
                seconds = row["baselines"].get(name)
                cells += [f"{seconds * 1e3:.2f}", f"{row['overhead'][name]:.2f}x"] if seconds else ["-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    def __str__(self):
        return self.to_markdown()

    def write(self):
        """comparison.json, comparison.md and the charts into `out`."""
        (self.out / "comparison.json").write_text(json.dumps(self.to_dict(), indent=2))
        (self.out / "comparison.md").write_text(self.to_markdown())
        if self.succeeded:
            self._plot()

    def _plot(self):
        from matplotlib.figure import Figure

        rows = self.succeeded
        figure = Figure(figsize=(6, 3.5))
        axes = figure.subplots()
        axes.bar([row["label"] for row in rows], [row["samples_per_second"] or 0 for row in rows])
        axes.set_ylabel("samples / second (steady state)")
        axes.set_title(f"Throughput: {pathlib.Path(self.recipe).stem}")
        figure.tight_layout()
        figure.savefig(self.out / "throughput.png", dpi=100)
        self.loss_figure().savefig(self.out / "loss_curves.png", dpi=100)

    def loss_curves(self):
        """label -> (steps, losses): each run's training loss, one point per group of the recipe's
        steps_per_execution steps on every backend (`StepTimer`), at the group's last step."""
        curves = {}
        for row in self.succeeded:
            losses = row.get("loss_curve") or []
            curves[row["label"]] = (row.get("loss_curve_steps") or list(range(1, len(losses) + 1)), losses)
        return curves

    def epoch_boundaries(self):
        """The steps after which a new epoch began (where Keras' running-mean loss restarts): every
        epoch end but the last, of the run with the most epochs."""
        ends = max((row.get("epoch_end_steps") or [] for row in self.succeeded), key=len, default=[])
        return ends[:-1]

    def loss_figure(self):
        """The loss_curves.png figure: every run's `loss_curves` as points joined by lines, and a
        dashed line at each of the `epoch_boundaries`."""
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6, 3.5))
        axes = figure.subplots()
        for label, (steps, losses) in self.loss_curves().items():
            axes.plot(steps, losses, marker="o" if len(steps) <= 50 else None, markersize=3, label=label)
        for index, step in enumerate(self.epoch_boundaries()):
            axes.axvline(step + 0.5, color="grey", linestyle="--", linewidth=0.8,
                         label="epoch boundary" if index == 0 else None)
        groups = {row.get("loss_group", 1) for row in self.succeeded}
        every = f"every {groups.pop()} steps" if len(groups) == 1 and 1 not in groups else "every step"
        axes.set_xlabel(f"step (a point {every})")
        axes.set_ylabel("training loss\n(running mean in the epoch)")
        axes.set_title(f"Training loss: {pathlib.Path(self.recipe).stem}")
        axes.legend()
        figure.tight_layout()
        return figure


def _cell(value):
    return "-" if value is None else f"{value:.1e}"


def _max_difference(path, reference):
    """Max abs difference of two saved arrays, None unless both exist."""
    if not (path.is_file() and reference.is_file()):
        return None
    return float(np.max(np.abs(np.load(path) - np.load(reference))))
