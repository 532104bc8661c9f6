"""Pictures and a web page of an `Explanation` (kdl.explain.explanation).

`figure(explanation, index)` draws one input's explanation, `text_html(explanation, index)` colours
a text input's tokens as HTML, and `write_all(explanation, folder)` writes a PNG per input (NNN.png;
text also NNN.html) and an index.html that shows them all. Backend-free: NumPy and matplotlib's Agg
canvas, no display and no pyplot state.

Colours: red = the attribution speaks for the explained (target) class, blue = against it, white =
nothing, scaled by each input's largest |attribution|. Grad-CAM (never negative) and attention
weights use a sequential colour map from 0.

>>> import tempfile
>>> import numpy as np
>>> from kdl.explain.explanation import Explanation
>>> e = Explanation("integrated_gradients", "text", attributions=np.array([[0.6, -0.3, 0.0]]),
...                 inputs=np.array([[5, 9, 0]]), predicted=["positive"], target=["positive"],
...                 probability=np.array([0.83]), tokens=[["fine", "<b>&", ""]],
...                 checks={"completeness_gap": [0.002]})
>>> [path.name for path in write_all(e, pathlib.Path(tempfile.mkdtemp()))]
['000.png', '000.html', 'index.html']
>>> print(text_html(e, 0))
<span class="token" style="background: rgb(255, 51, 51); color: white" title="fine: 0.6">fine</span> \
<span class="token" style="background: rgb(153, 153, 255); color: black" title="&lt;b&gt;&amp;: -0.3">\
&lt;b&gt;&amp;</span>
"""

import html
import pathlib

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

from kdl.runs import write_file

DPI = 100
DIVERGING = "RdBu_r"     # signed attributions: blue < 0 < red, centred on 0
SEQUENTIAL = "inferno"   # Grad-CAM: 0 .. max
ATTENTION = "Blues"      # attention weights: 0 .. max
TEXT_FONT = 12           # points, text pictures
TEXT_WIDTH = 10.0        # inches, text pictures


# ---------------------------------------------------------------- figures


def figure(explanation, index):
    """A matplotlib Figure of input `index`'s explanation (drawn on an Agg canvas)."""
    draw = {"image": _image_figure, "text": _text_figure, "audio": _audio_figure,
            "attention": _attention_figure}.get(explanation.modality)
    if draw is None:
        raise ValueError(f"cannot draw modality {explanation.modality!r}: "
                         "expected image, text, audio or attention")
    return draw(explanation, index)


def _new_figure(width, height, constrained=True):
    result = Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(result)
    return result


def _headline(explanation, index):
    """name: predicted, target and the target's probability (one line)."""
    probability = float(explanation.probability[index])
    return (f"{_short(explanation.names[index])}: predicted {_short(explanation.predicted[index])}, "
            f"target {_short(explanation.target[index])}, p = {probability:.3f}")


def _short(value, limit=60):
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _values(array):
    """A float array with NaN and infinities replaced by 0 (they would break the colour scale)."""
    return np.nan_to_num(np.asarray(array, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _scale(values):
    """The largest |value|, or 1 when all are 0 (a colour scale must not be empty)."""
    largest = float(np.max(np.abs(values))) if np.size(values) else 0.0
    return largest if largest > 0 else 1.0


def _is_sequential(method):
    """Grad-CAM style methods give attributions >= 0: a sequential colour map fits them."""
    return "cam" in str(method).lower()


def _heat_map(method, values):
    """(colour map name, Normalize) for attributions of `method`: diverging around 0 or sequential."""
    scale = _scale(values)
    if _is_sequential(method):
        return SEQUENTIAL, matplotlib.colors.Normalize(0.0, scale)
    return DIVERGING, matplotlib.colors.Normalize(-scale, scale)


def _overlay(figure, axes, background, values, method, origin="upper", aspect="equal"):
    """Grey `background` (rows, columns; None: white) with `values` coloured on top: the stronger an
    attribution, the more opaque its colour; a colour bar beside. `values` may have another resolution."""
    cmap, norm = _heat_map(method, values)
    rows, columns = values.shape if background is None else background.shape
    extent = (-0.5, columns - 0.5, rows - 0.5, -0.5) if origin == "upper" else \
        (-0.5, columns - 0.5, -0.5, rows - 0.5)
    if background is not None:
        axes.imshow(background, cmap="gray", origin=origin, aspect=aspect, extent=extent)
    strength = np.clip(np.abs(values) / _scale(values), 0.0, 1.0)
    axes.imshow(values, cmap=cmap, norm=norm, alpha=0.15 + 0.7 * strength, origin=origin,
                aspect=aspect, extent=extent, interpolation="nearest")
    bar = figure.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.8)
    bar.set_label("attribution")


# image


def _image_figure(explanation, index):
    """The input image beside its attributions over a grey copy of it."""
    pixels = np.clip(np.nan_to_num(np.asarray(explanation.inputs[index], dtype=np.float64)), 0, 255)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    grey = pixels if pixels.ndim == 2 else pixels.mean(axis=-1)
    result = _new_figure(9, 4.6)
    left, right = result.subplots(1, 2)
    if pixels.ndim == 2:
        left.imshow(pixels, cmap="gray", vmin=0, vmax=255)
    else:
        left.imshow(pixels.astype(np.uint8))
    left.set_title("input")
    _overlay(result, right, grey, _values(explanation.attributions[index]), explanation.method)
    right.set_title(f"{explanation.method} attributions", parse_math=False)
    for axes in (left, right):
        axes.set_axis_off()
    result.suptitle(_headline(explanation, index), parse_math=False)
    return result


# text


def _real_tokens(explanation, index):
    """(tokens, values) of input `index` without its padding ("") positions."""
    if explanation.tokens is None:
        raise ValueError("a text explanation needs its tokens (Explanation.tokens)")
    values = _values(explanation.attributions[index]).reshape(-1)
    pairs = [(token, float(value)) for token, value in zip(explanation.tokens[index], values) if token != ""]
    return [token for token, _ in pairs], np.array([value for _, value in pairs])


def _token_colour(value, scale):
    """(background rgb 0..1, text colour) of a token: red > 0, blue < 0, strength |value| / scale."""
    fade = 1.0 - 0.8 * min(abs(value) / scale, 1.0)
    background = (1.0, fade, fade) if value >= 0 else (fade, fade, 1.0)
    return background, "white" if fade < 0.5 else "black"


def _shown(token):
    """A token as drawn: line breaks and tabs made visible so they cannot break the layout."""
    return token.replace("\n", "\\n").replace("\t", "\\t")


def _wrap(widths, line_width, gap):
    """Split items of `widths` (inches) into lines no wider than `line_width`: [[(item, x), ...], ...]."""
    lines, line, x = [], [], 0.0
    for item, width in enumerate(widths):
        if line and x + width > line_width:
            lines.append(line)
            line, x = [], 0.0
        line.append((item, x))
        x += width + gap
    return lines + [line] if line else lines


def _text_widths(texts, font):
    """Drawn width of each text in inches, measured with an Agg renderer."""
    renderer = FigureCanvasAgg(Figure(dpi=DPI)).get_renderer()
    return [renderer.get_text_width_height_descent(text, font, ismath=False)[0] / DPI for text in texts]


def _text_figure(explanation, index):
    """The tokens as words on a background coloured by their attribution, wrapped over lines."""
    tokens, values = _real_tokens(explanation, index)
    scale = _scale(values)
    font = FontProperties(size=TEXT_FONT)
    shown = [_shown(token) for token in tokens]
    margin, gap, line_height = 0.3, 0.12, 2.0 * TEXT_FONT / 72
    lines = _wrap(_text_widths(shown, font), TEXT_WIDTH - 2 * margin, gap)
    header = 0.9
    height = header + line_height * max(len(lines), 1) + margin
    result = _new_figure(TEXT_WIDTH, height, constrained=False)
    inches = result.dpi_scale_trans
    result.text(margin, height - 0.35, _headline(explanation, index), transform=inches, fontsize=12,
                fontweight="bold", va="center", parse_math=False)
    legend = (f"{explanation.method}: red for {_short(explanation.target[index])}, blue against; "
              f"full colour = |attribution| {scale:.3g}")
    result.text(margin, height - 0.65, legend, transform=inches, fontsize=9, va="center", parse_math=False)
    for number, line in enumerate(lines):
        y = height - header - line_height * (number + 0.5)
        for item, x in line:
            background, colour = _token_colour(values[item], scale)
            result.text(margin + x, y, shown[item], transform=inches, fontproperties=font, va="center",
                        color=colour, parse_math=False,
                        bbox=dict(boxstyle="square,pad=0.15", facecolor=background, edgecolor="none"))
    if not lines:
        result.text(margin, height - header - line_height / 2, "(no tokens)", transform=inches,
                    fontproperties=font, va="center")
    return result


def text_html(explanation, index):
    """An HTML fragment: each token of input `index` (padding left out) in a <span> coloured by its
    attribution, with the value as its tooltip."""
    tokens, values = _real_tokens(explanation, index)
    scale = _scale(values)
    spans = []
    for token, value in zip(tokens, values):
        background, colour = _token_colour(value, scale)
        red, green, blue = (round(255 * channel) for channel in background)
        spans.append(f'<span class="token" style="background: rgb({red}, {green}, {blue}); color: {colour}" '
                     f'title="{html.escape(f"{token}: {value:.3g}")}">{html.escape(token)}</span>')
    return " ".join(spans)


# audio


def _audio_figure(explanation, index):
    """Waveform and log-mel features with the attributions: over the features (T, mel) or, for
    attributions on the waveform (samples,), as a band behind the waveform and a curve below it."""
    waveform = _values(explanation.inputs[index]).reshape(-1)
    values = _values(explanation.attributions[index])
    features = None if explanation.features is None else _values(explanation.features[index])
    if values.ndim == 1:
        return _waveform_attribution_figure(explanation, index, waveform, values, features)
    rows = 2 if features is None else 3
    result = _new_figure(10, 2.7 * rows)
    panels = result.subplots(rows, 1, sharex=True, height_ratios=[1, 2, 2][:rows])
    frames = values.shape[0]
    panels[0].plot(np.arange(len(waveform)) * frames / max(len(waveform), 1), waveform, color="black",
                   linewidth=0.5)
    panels[0].set_ylabel("waveform")
    if features is not None:
        panels[1].imshow(features.T, origin="lower", aspect="auto", cmap="magma",
                         extent=(-0.5, frames - 0.5, -0.5, features.shape[1] - 0.5))
        panels[1].set_ylabel("log-mel features\n(mel band)")
    background = None if features is None else features.T
    _overlay(result, panels[-1], background, values.T, explanation.method, origin="lower", aspect="auto")
    panels[-1].set_ylabel(f"{explanation.method}\n(mel band)", parse_math=False)
    panels[-1].set_xlabel("time (frames)")
    result.suptitle(_headline(explanation, index), parse_math=False)
    return result


def _smooth(values, window):
    """Moving average over `window` samples (same length)."""
    return np.convolve(values, np.ones(window) / window, mode="same") if window > 1 else values


def _waveform_attribution_figure(explanation, index, waveform, values, features):
    """Attributions per sample: a coloured band behind the waveform, a curve below, then the features."""
    rows = 3 if features is not None else 2
    result = _new_figure(10, 2.6 * rows)
    panels = result.subplots(rows, 1, height_ratios=[2, 1.5, 2][:rows])
    window = max(1, len(values) // 400)
    smooth = _smooth(values, window)
    cmap, norm = _heat_map(explanation.method, smooth)
    low, high = float(waveform.min(initial=0.0)), float(waveform.max(initial=0.0))
    pad = 0.05 * (high - low) or 1.0
    wave = panels[0]
    wave.imshow(smooth[None, :], cmap=cmap, norm=norm, aspect="auto", alpha=0.7,
                extent=(0, len(values), low - pad, high + pad))
    wave.plot(np.arange(len(waveform)), waveform, color="black", linewidth=0.5)
    wave.set_ylabel("waveform")
    result.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(panels[:2]), shrink=0.8,
                    label="attribution")
    curve = panels[1]
    curve.sharex(wave)
    curve.plot(np.arange(len(smooth)), smooth, color="black", linewidth=0.8)
    curve.fill_between(np.arange(len(smooth)), smooth, 0, where=smooth >= 0, color="tab:red", alpha=0.5)
    curve.fill_between(np.arange(len(smooth)), smooth, 0, where=smooth < 0, color="tab:blue", alpha=0.5)
    curve.set_ylabel(f"{explanation.method}\n(mean of {window} samples)", parse_math=False)
    curve.set_xlabel("time (samples)")
    if features is not None:
        panels[2].imshow(features.T, origin="lower", aspect="auto", cmap="magma")
        panels[2].set_ylabel("log-mel features\n(mel band)")
        panels[2].set_xlabel("time (frames)")
    result.suptitle(_headline(explanation, index), parse_math=False)
    return result


# attention


def _attention_tokens(explanation, index, weights):
    """(row tokens, column tokens, weights) cropped to the real (non-"") tokens."""
    columns = list(explanation.tokens[index])
    rows = columns if explanation.target_tokens is None else list(explanation.target_tokens[index])
    keep_rows = [k for k, token in enumerate(rows[:weights.shape[2]]) if token != ""]
    keep_columns = [k for k, token in enumerate(columns[:weights.shape[3]]) if token != ""]
    weights = weights[:, :, keep_rows][:, :, :, keep_columns]
    return [rows[k] for k in keep_rows], [columns[k] for k in keep_columns], weights


def _mosaic(weights):
    """(layers, heads, T, S) -> one image: a tile per head (columns) and layer (rows), NaN between."""
    layers, heads, t, s = weights.shape
    tiles = np.full((layers * (t + 1) - 1, heads * (s + 1) - 1), np.nan)
    for layer in range(layers):
        for head in range(heads):
            top, left = layer * (t + 1), head * (s + 1)
            tiles[top:top + t, left:left + s] = weights[layer, head]
    return tiles


def _attention_figure(explanation, index):
    """The last layer's attention averaged over heads (large, token labels), then every head of
    every layer as a grid of small tiles (rows = layers, columns = heads)."""
    weights = _values(explanation.attributions[index])
    rows, columns, weights = _attention_tokens(explanation, index, weights)
    layers, heads, t, s = weights.shape
    size = float(np.clip(2.5 + 0.22 * max(t, s, 1), 4, 14))
    grid_height = float(np.clip(size * layers * (t + 1) / max(heads * (s + 1), 1), 1.5, 10))
    result = _new_figure(size + 2, size + grid_height + 1.2)
    main, grid = result.subplots(2, 1, height_ratios=[size, grid_height])
    cmap = matplotlib.colormaps[ATTENTION].with_extremes(bad="white")
    if t == 0 or s == 0:
        for axes in (main, grid):
            axes.text(0.5, 0.5, "(no tokens)", ha="center", va="center", transform=axes.transAxes)
            axes.set_axis_off()
        result.suptitle(_headline(explanation, index), parse_math=False)
        return result
    vmax = _scale(weights)
    image = main.imshow(weights[-1].mean(axis=0), cmap=cmap, vmin=0, vmax=vmax)
    fontsize = 9 if max(t, s) <= 30 else 7 if max(t, s) <= 60 else 5
    main.set_xticks(np.arange(s), columns, rotation=60, ha="right", rotation_mode="anchor",
                    fontsize=fontsize, parse_math=False)
    main.set_yticks(np.arange(t), rows, fontsize=fontsize, parse_math=False)
    main.set_xlabel("attended token (key)")
    main.set_ylabel("target token (query)" if explanation.target_tokens is not None else "token (query)")
    main.set_title(f"layer {layers}, mean of {heads} heads")
    result.colorbar(image, ax=main, shrink=0.8, label="attention weight")
    grid.imshow(_mosaic(weights), cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
    grid.set_xticks(np.arange(heads) * (s + 1) + (s - 1) / 2, range(1, heads + 1), fontsize=7)
    grid.set_yticks(np.arange(layers) * (t + 1) + (t - 1) / 2, range(1, layers + 1), fontsize=7)
    grid.set_xlabel("head")
    grid.set_ylabel("layer")
    grid.set_title("every head of every layer")
    result.suptitle(_headline(explanation, index), parse_math=False)
    return result


# ---------------------------------------------------------------- files


def write_all(explanation, folder):
    """Write into the existing `folder`: NNN.png per input (text also NNN.html, its tokens) and an
    index.html showing them all. Each file is written atomically; returns the paths written."""
    folder = pathlib.Path(folder)
    written = []
    for index in range(len(explanation)):
        stem = f"{index:03d}"
        written.append(_write_png(figure(explanation, index), folder / f"{stem}.png"))
        if explanation.modality == "text":
            tokens = f'<div class="tokens">{text_html(explanation, index)}</div>'
            page = _page(f"{explanation.names[index]}: {explanation.method}", tokens)
            written.append(_write_text(folder / f"{stem}.html", page))
    written.append(_write_text(folder / "index.html", _index_page(explanation)))
    return written


def _write_png(picture, path):
    try:
        return write_file(path, lambda tmp: picture.savefig(tmp, format="png", dpi=DPI))
    finally:
        picture.clear()   # a Figure is not registered with pyplot: clearing it frees its artists


def _write_text(path, text):
    return write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# index.html

STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1100px; color: #222; }
section { border-top: 1px solid #ccc; padding: 1em 0; }
img { max-width: 100%; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
.tokens { line-height: 2; margin: 1em 0; }
.token { padding: 0.1em 0.2em; border-radius: 3px; }
"""


def _page(title, body):
    """A self-contained HTML page (inline style, no external resources)."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(str(title))}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")


def _format(value):
    """A setting or check value as short text."""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3g}"
    if isinstance(value, np.ndarray) and value.size > 8:
        return f"array of shape {value.shape}"
    return _short(value, 200)


def _split_checks(checks, count):
    """(per-input checks: name -> list of `count` values, the other checks: name -> value)."""
    per_input, overall = {}, {}
    for name, value in checks.items():
        if isinstance(value, (list, tuple, np.ndarray)) and len(value) == count:
            per_input[name] = value
        else:
            overall[name] = value
    return per_input, overall


def _table(mapping):
    rows = "".join(f"<tr><th>{html.escape(str(key).replace('_', ' '))}</th>"
                   f"<td>{html.escape(_format(value))}</td></tr>\n" for key, value in mapping.items())
    return f"<table>\n{rows}</table>" if mapping else "<p>(none)</p>"


def _input_section(explanation, index, per_input):
    stem = f"{index:03d}"
    name = html.escape(str(explanation.names[index]))
    checks = "".join(f"<li>{html.escape(key.replace('_', ' '))}: {html.escape(_format(values[index]))}</li>"
                     for key, values in per_input.items())
    parts = [f'<section id="input-{stem}">',
             f"<h2>{name}</h2>",
             f"<p>predicted <b>{html.escape(str(explanation.predicted[index]))}</b> / "
             f"target <b>{html.escape(str(explanation.target[index]))}</b> / "
             f"probability {float(explanation.probability[index]):.3f}</p>"]
    if checks:
        parts.append(f'<ul class="checks">{checks}</ul>')
    parts.append(f'<img src="{stem}.png" alt="{name}: {html.escape(explanation.method)}">')
    if explanation.modality == "text":
        parts.append(f'<div class="tokens">{text_html(explanation, index)}</div>')
    parts.append("</section>")
    return "\n".join(parts)


def _index_page(explanation):
    """index.html: the method, its settings and checks, then every input with its picture."""
    method = html.escape(explanation.method)
    per_input, overall = _split_checks(explanation.checks or {}, len(explanation))
    shape = " × ".join(str(n) for n in np.shape(explanation.attributions))
    parts = [f"<h1>{method}: {len(explanation)} {html.escape(explanation.modality)} "
             f"input{'s' if len(explanation) != 1 else ''}</h1>",
             f'<p>Attributions: <a href="attributions.npy">attributions.npy</a> ({shape}). '
             "Red speaks for the target class, blue against it.</p>",
             "<h2>Settings</h2>", _table(explanation.settings or {})]
    if overall:
        parts += ["<h2>Checks</h2>", _table(overall)]
    parts += [_input_section(explanation, index, per_input) for index in range(len(explanation))]
    return _page(f"{explanation.method} explanations", "\n".join(parts))
