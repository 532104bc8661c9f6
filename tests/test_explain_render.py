"""kdl.explain.render: pictures and pages of hand-made explanations of every modality (backend-free)."""

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from kdl.explain import render
from kdl.explain.explanation import Explanation

RNG = np.random.default_rng(0)


def _explanation(method, modality, attributions, inputs, **fields):
    n = len(attributions)
    return Explanation(method, modality, attributions=attributions, inputs=inputs,
                       predicted=[f"class {i}" for i in range(n)],
                       target=[f"class {i % 2}" for i in range(n)],
                       probability=RNG.uniform(size=n), settings={"steps": 16, "baseline": "black"},
                       checks={"completeness_gap": list(RNG.uniform(0, 1e-3, size=n))}, **fields)


def _image(channels, method="integrated_gradients"):
    return _explanation(method, "image", RNG.normal(size=(2, 12, 10)),
                        RNG.integers(0, 256, size=(2, 12, 10, channels)).astype(np.float32))


TOKENS = [["the", "<b>&", "film", "", ""], ["dull", "\"quoted\"", "", "", ""]]


def _text():
    attributions = RNG.normal(size=(2, 5))
    attributions[0, 3:] = attributions[1, 2:] = 0
    return _explanation("integrated_gradients", "text", attributions, RNG.integers(1, 99, size=(2, 5)),
                        tokens=TOKENS)


def _audio(at_waveform=False):
    attributions = RNG.normal(size=(2, 800)) if at_waveform else RNG.normal(size=(2, 20, 8))
    return _explanation("integrated_gradients", "audio", attributions, RNG.normal(size=(2, 800)),
                        features=RNG.normal(size=(2, 20, 8)))


SOURCE = [["ein", "Hund", "", ""], ["la", "", "", ""]]
TARGET = [["a", "dog", ".", ""], ["the", "cat", "", ""]]


def _attention(target_tokens=TARGET):
    weights = RNG.uniform(size=(2, 2, 3, 4, 4))
    return _explanation("attention", "attention", weights / weights.sum(-1, keepdims=True),
                        RNG.integers(1, 99, size=(2, 4)), tokens=SOURCE, target_tokens=target_tokens)


ALL = {"image grey": lambda: _image(1), "image rgb": lambda: _image(3),
       "grad_cam": lambda: _image(3, "grad_cam"), "text": _text, "audio": _audio,
       "audio waveform": lambda: _audio(at_waveform=True),
       "translation attention": _attention, "self attention": lambda: _attention(None)}


WRITTEN = ["image grey", "text", "audio waveform", "translation attention"]   # the others: only drawn


@pytest.mark.parametrize("kind", WRITTEN)
def test_write_all_writes_a_picture_per_input_and_an_index(kind, tmp_path):
    explanation = ALL[kind]()
    written = render.write_all(explanation, tmp_path)
    pngs = [tmp_path / "000.png", tmp_path / "001.png"]
    html_files = [tmp_path / "000.html", tmp_path / "001.html"] if explanation.modality == "text" else []
    assert sorted(written) == sorted(pngs + html_files + [tmp_path / "index.html"])
    assert sorted(tmp_path.iterdir()) == sorted(written)          # no .partial files left behind
    for png in pngs:
        with Image.open(png) as picture:
            assert picture.format == "PNG" and min(picture.size) >= 100 and max(picture.size) >= 400
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert all(f'<img src="{png.name}"' in index for png in pngs)
    assert "completeness gap" in index
    assert all(f"{gap:.3g}" in index for gap in explanation.checks["completeness_gap"])
    assert 'href="attributions.npy"' in index and "<title>" in index
    assert "http" not in index                                     # self-contained
    assert all(f"<b>{name}</b>" in index for name in ("class 0", "class 1"))


@pytest.mark.parametrize("kind", [kind for kind in ALL if kind not in WRITTEN])
def test_figure_is_a_figure_that_draws(kind):
    picture = render.figure(ALL[kind](), 1)
    assert isinstance(picture, Figure)
    picture.canvas.draw()
    assert picture.canvas.buffer_rgba().shape[0] >= 100


def test_text_html_escapes_tokens_and_leaves_out_padding(tmp_path):
    explanation = _text()
    first, second = render.text_html(explanation, 0), render.text_html(explanation, 1)
    assert first.count("<span") == 3 and second.count("<span") == 2
    assert ">the</span>" in first and ">&lt;b&gt;&amp;</span>" in first and ">film</span>" in first
    assert "<b>&" not in first and "></span>" not in first
    assert ">&quot;quoted&quot;</span>" in second
    render.write_all(explanation, tmp_path)
    page = (tmp_path / "000.html").read_text(encoding="utf-8")
    assert first in page and '<meta charset="utf-8">' in page
    assert first in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_text_colours_red_positive_blue_negative():
    explanation = _text()
    explanation.attributions[0, :3] = [1.0, -1.0, 0.0]
    spans = render.text_html(explanation, 0).split("</span>")
    assert "rgb(255, 51, 51)" in spans[0] and "rgb(51, 51, 255)" in spans[1]
    assert "rgb(255, 255, 255)" in spans[2]


def test_attention_is_cropped_to_the_real_tokens():
    picture = render.figure(_attention(), 0)
    main = picture.axes[0]
    assert [label.get_text() for label in main.get_xticklabels()] == ["ein", "Hund"]
    assert [label.get_text() for label in main.get_yticklabels()] == ["a", "dog", "."]
    assert main.get_images()[0].get_array().shape == (3, 2)
    self_attention = render.figure(_attention(None), 1).axes[0]
    assert [label.get_text() for label in self_attention.get_xticklabels()] == ["la"]
    assert [label.get_text() for label in self_attention.get_yticklabels()] == ["la"]


def test_grey_and_rgb_images_are_drawn_as_such():
    grey = render.figure(_image(1), 0).axes[0].get_images()[0]
    assert grey.get_array().shape == (12, 10) and grey.get_cmap().name == "gray"
    assert render.figure(_image(3), 0).axes[0].get_images()[0].get_array().shape == (12, 10, 3)


def test_grad_cam_uses_a_sequential_colour_map():
    def heat(explanation):
        return render.figure(explanation, 0).axes[1].get_images()[1]

    assert heat(_image(3, "grad_cam")).norm.vmin == 0
    signed = heat(_image(3))
    assert signed.norm.vmin == -signed.norm.vmax


def test_unknown_modality_is_refused():
    with pytest.raises(ValueError, match="modality"):
        render.figure(_explanation("x", "video", np.zeros((1, 2)), np.zeros((1, 2))), 0)


@pytest.mark.parametrize("at_waveform", [False, True])
def test_audio_without_features_draws_the_waveform_and_attributions(at_waveform):
    explanation = _audio(at_waveform)
    explanation.features = None
    panels = render.figure(explanation, 0).axes
    assert panels[0].get_ylabel() == "waveform"
    assert len([axes for axes in panels if axes.get_label() != "<colorbar>"]) == 2
