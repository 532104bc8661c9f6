"""`kdl serve`: a real server process on a free port in front of a tiny trained digits run (started
once for the module, with small limits so that "too large" is cheap to send), answers like
`recipe.predict` in this process, turns every bad input into a 4xx JSON error and survives 50
requests at once; a text run is served in this process (FastAPI's TestClient) for JSON texts,
explanations and the catch-all error.
"""

import base64
import importlib.util
import io
import shutil

import numpy as np
import pytest
from conftest import REPO

import kdl
from kdl import explain

fastapi = pytest.importorskip("fastapi", reason="kdl serve needs the kdl[serve] extra")
from fastapi.testclient import TestClient  # noqa: E402

httpx = pytest.importorskip("httpx")

SEVEN = REPO / "docs" / "examples" / "seven.png"
MAX_BATCH, MAX_BODY_MB = 8, 0.05       # small limits: "too large" is a few kB over
_spec = importlib.util.spec_from_file_location("serve_load", REPO / "benchmarks" / "serve_load.py")
serve_load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serve_load)


def copy_run(name, folder):
    """A copy of a tiny trained run of tests/fixtures (a digits CNN, a text CNN) in `folder`."""
    return shutil.copytree(REPO / "tests" / "fixtures" / "runs_v0_1_0" / name, folder / name)


def digit_images(count):
    from kdl.data import load_images

    return np.stack([x for x, _ in load_images("digits", limit=60).splits["test"].take(count)
                     .as_numpy_iterator()]).astype("float32")      # (count, 8, 8, 1), 0..255


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """(the loaded run, the base URL of `kdl serve` on it)."""
    run = copy_run("image_classifier", tmp_path_factory.mktemp("serve"))
    with serve_load.start_server(run, "--max-batch", str(MAX_BATCH), "--max-body-mb", str(MAX_BODY_MB),
                                 backend=kdl.backend.name()) as url:
        yield kdl.recipes.load(run), url


def post(url, path, **request):
    return httpx.post(url + path, timeout=60, **request)


def test_health_and_metadata(digits):
    recipe, url = digits
    assert httpx.get(url + "/health").json() == {"status": "ok", "task": "image_classifier",
                                                 "backend": kdl.backend.name()}
    found = httpx.get(url + "/metadata").json()
    assert found["task"] == "image_classifier" and found["backend"] == kdl.backend.name()
    assert found["class_names"] == list(recipe.class_names) and found["inputs"]["model_input"] == [8, 8, 1]
    assert found["inputs"]["kind"] == "image" and ".png" in found["inputs"]["files"]
    assert set(found["versions"]) == {"kdl", "keras", kdl.backend.name()} and all(found["versions"].values())
    assert found["limits"] == {"max_body": int(MAX_BODY_MB * 2**20), "max_batch": MAX_BATCH}
    assert found["predict_fields"] == ["top_k"]
    assert found["explain_methods"] == explain.methods(recipe)
    assert "/predict" in httpx.get(url + "/openapi.json").json()["paths"]


def test_json_predict_equals_recipe_predict(digits):
    recipe, url = digits
    images = digit_images(5)
    answer = post(url, "/predict", json={"inputs": images[..., 0].tolist(), "top_k": 3})  # (H, W) each
    assert answer.status_code == 200, answer.text
    rows = answer.json()["predictions"]
    expected = recipe.predict(images).rows(3)
    assert [row["input"] for row in rows] == [0, 1, 2, 3, 4]
    assert [row["label"] for row in rows] == [row["label"] for row in expected]
    for got, want in zip(rows, expected):
        assert [t["label"] for t in got["top"]] == [t["label"] for t in want["top"]]
        probabilities = [t["probability"] for t in want["top"]]
        assert [t["probability"] for t in got["top"]] == pytest.approx(probabilities, abs=1e-5)
    assert answer.json()["warnings"] == []


def test_uploads_of_images_and_arrays_as_one_batch(digits, tmp_path):
    from PIL import Image

    recipe, url = digits
    images = digit_images(3)
    png = io.BytesIO()
    Image.fromarray(images[0, :, :, 0].astype("uint8")).resize((16, 16)).convert("RGB").save(png, "PNG")
    array = io.BytesIO()
    np.save(array, images[1:])
    files = [("files", ("seven.png", SEVEN.read_bytes())), ("files", ("../big digit.png", png.getvalue())),
             ("files", ("two.npy", array.getvalue()))]
    answer = post(url, "/predict", files=files)
    assert answer.status_code == 200, answer.text
    rows = answer.json()["predictions"]
    assert [row["input"] for row in rows] == ["seven.png", "big digit.png", "two.npy[0]", "two.npy[1]"]
    (tmp_path / "big.png").write_bytes(png.getvalue())
    expected = recipe.predict([str(SEVEN), str(tmp_path / "big.png")]).labels
    assert [row["label"] for row in rows] == expected + recipe.predict(images[1:]).labels


def test_a_warning_comes_back_with_the_answer(digits):
    _, url = digits
    answer = post(url, "/predict", json={"inputs": (digit_images(1)[..., 0] / 255).tolist()})
    assert answer.status_code == 200 and "within 0..1" in answer.json()["warnings"][0]


BAD = {   # name: (request, status, words the message must hold)
    "wrong shape": (dict(json={"inputs": [[1, 2, 3]]}), 422, ["inputs[0]", "shape (3,)", "(H, W)"]),
    "one image, not a list": (dict(json={"inputs": [[0] * 8] * 8}), 422, ["inputs[0]", "shape (8,)"]),
    "ragged": (dict(json={"inputs": [[[1, 2], [3]]]}), 422, ["inputs[0]", "not an array of numbers"]),
    "strings": (dict(json={"inputs": ["seven.png"]}), 422, ["inputs[0]", "not an array of numbers"]),
    "NaN": (dict(content=b'{"inputs": [[[NaN, 1], [2, 3]]]}', headers={"content-type": "application/json"}),
            422, ["NaN"]),
    "empty inputs": (dict(json={"inputs": []}), 422, ['"inputs"', "empty list"]),
    "not an image": (dict(files={"files": ("notes.png", b"just some text, not a PNG")}), 422,
                     ["cannot read image notes.png", "PNG"]),
    "a .txt upload": (dict(files={"files": ("list.txt", b"/etc/passwd\n")}), 422,
                      ["list.txt", "image files"]),      # its lines would be read as paths on the server
    "empty body": (dict(), 400, ["no body", "JSON", "multipart"]),
    "not JSON": (dict(content=b"{inputs: ", headers={"content-type": "application/json"}), 400,
                 ["not valid JSON"]),
    "no inputs": (dict(json={"images": []}), 400, ['without "inputs"']),
    "an upload without files": (dict(files={"top_k": (None, "2")}), 422, ["no files", "image files"]),
    "a broken upload": (dict(content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data"}),
                        400, ["multipart upload cannot be read"]),
    "plain text": (dict(content=b"7", headers={"content-type": "text/plain"}), 400,
                   ["text/plain", "application/json"]),
    "unknown field": (dict(json={"inputs": [[[0]]], "beam_size": 4}), 400, ["beam_size", "top_k"]),
    "bad top_k": (dict(json={"inputs": [[[0]]], "top_k": 11}), 400, ["top k", "1 to 10", "11"]),
    "top_k not a number": (dict(files={"files": ("seven.png", SEVEN.read_bytes())}, data={"top_k": "three"}),
                           400, ["top_k", "whole number", "three"]),
    "too many inputs": (dict(json={"inputs": [[[0]]] * (MAX_BATCH + 1)}), 413, ["9 inputs", "at most 8"]),
    "too many files": (dict(files=[("files", ("seven.png", SEVEN.read_bytes()))] * (MAX_BATCH + 1)), 413,
                       ["9 inputs", "at most 8"]),
    "too large": (dict(files={"files": ("big.png", b"0" * int(MAX_BODY_MB * 2**20 + 1))}), 413,
                  ["bytes", "at most 52,428", "--max-body-mb"]),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_requests_are_4xx_json_errors(digits, name):
    request, status, words = BAD[name]
    answer = post(digits[1], "/predict", **request)
    assert answer.status_code == status, answer.text
    found = answer.json()
    assert set(found) == {"error", "message"} and "Traceback" not in answer.text
    assert all(word in found["message"] for word in words), found["message"]
    assert "kdl-serve-" not in found["message"]          # the upload's temporary folder stays hidden


def test_a_chunked_body_over_the_limit_is_refused_while_it_arrives(digits):
    def chunks():
        for _ in range(20):
            yield b"x" * 8192                              # no Content-Length: sent chunked

    answer = post(digits[1], "/predict", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "at least" in answer.json()["message"]


def test_explain_returns_a_png_per_input(digits):
    recipe, url = digits
    files = [("files", ("seven.png", SEVEN.read_bytes()))] * 2
    answer = post(url, "/explain", files=files, data={"method": "grad_cam"})
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["method"] == "grad_cam" and len(found["explanations"]) == 2
    for item in found["explanations"]:
        assert base64.b64decode(item["png"]).startswith(b"\x89PNG\r\n\x1a\n")
        assert item["predicted"] == item["target"] == recipe.predict(str(SEVEN)).labels[0]
    bad = post(url, "/explain", json={"inputs": [[[0]]], "method": "attention"})
    assert bad.status_code == 400
    assert all(m in bad.json()["message"] for m in ["'attention'", *explain.methods(recipe)])


def test_fifty_requests_at_once(digits):
    _, url = digits
    path, request = serve_load.request_for(httpx.get(url + "/metadata").json())
    found = serve_load.load(url, "image_classifier", path, request, requests=50, concurrency=50)
    assert found["errors"] == [] and len(found["latencies"]) == 50


def test_the_page_is_served_and_needs_nothing_from_elsewhere(digits):
    answer = httpx.get(digits[1] + "/")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert 'id="files"' in answer.text and "/predict" in answer.text and "/explain" in answer.text
    assert "http://" not in answer.text and "https://" not in answer.text
    assert "default-src 'self'" in answer.headers["content-security-policy"]


def test_unknown_paths_and_methods_are_json_errors(digits):
    answer = httpx.get(digits[1] + "/predictions")
    assert answer.status_code == 404 and "/predictions" in answer.json()["message"]
    answer = httpx.get(digits[1] + "/predict")
    assert answer.status_code == 405 and "GET" in answer.json()["message"]


def test_a_bad_run_fails_before_serving(tmp_path):
    from kdl.cli import main

    assert main(["serve", str(tmp_path / "missing"), "--port", "0"]) == 1
    assert main(["serve", str(tmp_path), "--max-body-mb", "0"]) == 1


# -- runs served in this process ----------------------------------------------------------------

@pytest.fixture(scope="module")
def text_client(tmp_path_factory):
    """A TestClient on a copy of the tiny text classifier of tests/fixtures."""
    from kdl.serve import create_app

    run = copy_run("text_classifier", tmp_path_factory.mktemp("serve_text"))

    with TestClient(create_app(run)) as client:
        yield kdl.recipes.load(run), client


def test_text_predict_and_explain(text_client):
    recipe, client = text_client
    texts = ["a fine film", "dull and slow", ""]
    answer = client.post("/predict", json={"inputs": texts, "top_k": 2})
    assert answer.status_code == 200, answer.text
    assert [row["label"] for row in answer.json()["predictions"]] == recipe.predict(texts).labels
    assert client.get("/metadata").json()["inputs"]["kind"] == "text"
    lines = client.post("/predict", files={"files": ("reviews.txt", "a fine film\ndull and slow\n")})
    assert [row["input"] for row in lines.json()["predictions"]] == ["reviews.txt[0]", "reviews.txt[1]"]
    explained = client.post("/explain", json={"inputs": texts[:1], "target": "pos"}).json()
    assert explained["method"] == "integrated_gradients" and explained["explanations"][0]["target"] == "pos"
    assert base64.b64decode(explained["explanations"][0]["png"]).startswith(b"\x89PNG")
    bad = client.post("/predict", json={"inputs": ["fine", 7]})
    assert bad.status_code == 422 and "inputs[1] is a number" in bad.json()["message"]
    bad = client.post("/predict", files={"files": ("reviews.csv", "text,label\n")})
    assert bad.status_code == 422 and "'reviews.csv' is not a file this text_classifier run reads" in \
        bad.json()["message"]


def test_an_unexpected_error_is_a_json_500_without_traceback(text_client, monkeypatch, caplog):
    recipe, client = text_client
    served = client.app.state.served

    def broken(inputs, **options):
        raise RuntimeError("a bug deep inside")

    monkeypatch.setattr(served.recipe, "predict", broken)
    answer = client.post("/predict", json={"inputs": ["a fine film"]})
    assert answer.status_code == 500
    assert answer.json() == {"error": "InternalError", "message": "the server failed on this request "
                             "(RuntimeError); its log has the details"}
    assert "a bug deep inside" in caplog.text and "Traceback" in caplog.text


def test_a_run_without_explanation_methods_says_so(text_client, monkeypatch):
    _, client = text_client        # as a language_model run: kdl.explain.methods(recipe) == []
    monkeypatch.setitem(client.app.state.served.metadata, "explain_methods", [])
    answer = client.post("/explain", json={"inputs": ["a fine film"]})
    assert answer.status_code == 400
    assert "text_classifier run has no explanation method" in answer.json()["message"]
