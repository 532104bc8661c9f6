"""Load test of `kdl serve`: for each saved run, start a real `kdl serve RUN --port 0` process,
fire REQUESTS requests from CONCURRENCY threads released at once, check every answer (HTTP 200,
one prediction of the task's kind), and print a Markdown table of errors, p50/p99 latency and
throughput. A first burst, checked but not timed, warms the server up (JAX compiles each batch
shape once).

    python benchmarks/serve_load.py runs/digits runs/sst2 runs/fsdd --requests 200 --concurrency 200

Each run gets the request its task takes (from GET /metadata): an image run the upload of
docs/examples/seven.png, an audio run the upload of --wav (default: FSDD's 7_theo_0.wav under
$KDL_DATA), a text run a JSON body of one text. --backend chooses the server's backend.
tests/test_serve.py runs a small version with `start_server` and `load` from here.
"""

import argparse
import contextlib
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx

REPO = pathlib.Path(__file__).resolve().parents[1]
SEVEN = REPO / "docs" / "examples" / "seven.png"
TEXTS = {"text_classifier": "a gripping , funny film", "translator": "A man is riding a bike .",
         "language_model": "a [MASK] and moving film"}
ROW_KEY = {"image_classifier": "label", "audio_classifier": "label", "text_classifier": "label",
           "translator": "translation", "speech_recognizer": "transcript", "language_model": "filled"}
ADDRESS = re.compile(r"at (http://\S+?)/ ")


@contextlib.contextmanager
def start_server(run, *options, backend=None, timeout=180):
    """The base URL of a `kdl serve RUN --port 0 OPTIONS` process started for the block (its
    output in a temporary log file), once /health answers; the process is stopped after."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if backend:
        env["KERAS_BACKEND"] = backend
    with tempfile.TemporaryDirectory(prefix="kdl-serve-load-") as folder:
        log = pathlib.Path(folder, "serve.log")
        with open(log, "ab") as output:
            command = [sys.executable, "-m", "kdl", "serve", str(run), "--port", "0", *options]
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            yield _wait_for_address(process, log, timeout)
        finally:
            process.send_signal(signal.SIGINT)        # uvicorn's graceful shutdown
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for_address(process, log, timeout):
    deadline = time.monotonic() + timeout
    url = None
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if process.poll() is not None:
            raise RuntimeError(f"kdl serve exited with status {process.returncode}:\n{text[-3000:]}")
        found = ADDRESS.search(text)
        if found and url is None:
            url = found.group(1)
        if url is not None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    return url
        time.sleep(0.2)
    raise RuntimeError(f"kdl serve did not answer /health within {timeout} s:\n{text[-3000:]}")


def request_for(metadata, wav=None):
    """(path, httpx request keywords) of one input that the served run's task takes."""
    kind = metadata["inputs"]["kind"]
    if kind == "text":
        return "/predict", {"json": {"inputs": [TEXTS.get(metadata["task"], TEXTS["text_classifier"])]}}
    path = SEVEN if kind == "image" else pathlib.Path(wav or _default_wav())
    return "/predict", {"files": {"files": (path.name, path.read_bytes())}}


def _default_wav():
    path = pathlib.Path(os.environ.get("KDL_DATA", REPO.parent / "shared" / "data"), "fsdd", "recordings",
                        "7_theo_0.wav")
    if not path.is_file():
        raise SystemExit(f"no WAV file for the audio run at {path}: pass --wav FILE")
    return path


def load(url, task, path, request, requests=200, concurrency=200, timeout=120):
    """Fire `requests` copies of one request from `concurrency` threads released together; returns
    {"latencies": [s], "errors": [text], "seconds": wall time}. An answer is an error unless it is
    HTTP 200 holding exactly one prediction with the task's field."""
    latencies, errors, lock = [], [], threading.Lock()
    start_line = threading.Barrier(concurrency)
    jobs = iter(range(requests))

    def worker():
        with httpx.Client(base_url=url, timeout=timeout) as client:
            start_line.wait()
            while True:
                with lock:
                    job = next(jobs, None)
                if job is None:
                    return
                begin = time.perf_counter()
                try:
                    response = client.post(path, **request)
                    problem = _problem(response, task)
                except httpx.HTTPError as error:
                    problem = f"{type(error).__name__}: {error}"
                with lock:
                    latencies.append(time.perf_counter() - begin)
                    if problem:
                        errors.append(problem)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "errors": errors, "seconds": time.perf_counter() - begin}


def _problem(response, task):
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    rows = response.json().get("predictions")
    if not (isinstance(rows, list) and len(rows) == 1 and ROW_KEY[task] in rows[0]):
        return f"unexpected answer: {response.text[:300]}"
    return None


def summary(found):
    """p50 and p99 latency (ms) and throughput (requests/s) of a `load` result."""
    latencies = sorted(found["latencies"])
    cut = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * cut[98],
            "throughput": len(latencies) / found["seconds"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories written by `kdl train`")
    parser.add_argument("--requests", type=int, default=200, help="requests per run (default 200)")
    parser.add_argument("--concurrency", type=int, default=200, help="threads sending at once (default 200)")
    parser.add_argument("--backend", help="the server's Keras backend (default: $KERAS_BACKEND)")
    parser.add_argument("--wav", help="WAV file for audio runs (default: FSDD's 7_theo_0.wav)")
    parser.add_argument("--no-warmup", action="store_true", help="count the first burst too")
    args = parser.parse_args(argv)
    print("| task | backend | request | answers checked | errors | p50 ms | p99 ms | requests/s |\n"
          "|---|---|---|---:|---:|---:|---:|---:|", flush=True)
    failed = False
    for run in args.runs:
        try:
            with start_server(run, backend=args.backend) as url:
                metadata = httpx.get(f"{url}/metadata").json()
                path, request = request_for(metadata, args.wav)
                bursts = [load(url, metadata["task"], path, request, args.requests, args.concurrency)
                          for _ in range(1 if args.no_warmup else 2)]
            found = {**bursts[-1], "errors": [error for burst in bursts for error in burst["errors"]]}
        except RuntimeError as error:       # the server did not start: its output says why
            print(f"{run}: {error}", file=sys.stderr)
            failed = True
            continue
        shown = "JSON, one text" if "json" in request else f"upload {request['files']['files'][0]}"
        numbers = summary(found)
        print(f"| {metadata['task']} | {metadata['backend']} | {shown} | {args.requests * len(bursts)} | "
              f"{len(found['errors'])} | {numbers['p50_ms']:.0f} | {numbers['p99_ms']:.0f} | "
              f"{numbers['throughput']:.1f} |", flush=True)
        for error in found["errors"][:3]:
            print(f"  {error}", file=sys.stderr)
        failed = failed or bool(found["errors"])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
