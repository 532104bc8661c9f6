"""Two "hosts" on one machine, per backend, started as each engine's users start them: wall time
of a 2-process `kdl train --distribute data_parallel` against the same run in one process, and
how far apart their losses are (they take the same steps on the same global batches).

    python benchmarks/multi_host.py --backends jax tensorflow torch

Hosts: JAX with Keras' KERAS_DISTRIBUTION_JOB_ADDRESSES / _NUM_PROCESSES / _PROCESS_ID (2 virtual
CPU devices each), TensorFlow with TF_CONFIG (MultiWorkerMirroredStrategy), PyTorch with two
`torchrun --nnodes 2 --rdzv-backend c10d` invocations (gloo). tests/test_multi_host.py starts its
hosts with `start_host` / `run_hosts` from here. On a 2-core machine two processes share the
cores one process had, so the ratio measures the cost of the collectives and of running two
Python processes, not a speed-up.
"""

import argparse
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DIGITS = str(REPO / "recipes" / "image_classification" / "digits_cnn.toml")
# Plain SGD and no dropout (each replica would draw its own masks), so that 2 hosts take exactly
# the steps one process takes; 1,280 training images: 40 full global batches of 32 an epoch.
EXACT = ["--set", "model.options.dropout=0.0", "--set", 'train.optimizer="sgd"',
         "--set", "train.learning_rate=0.05", "--set", 'train.schedule="constant"']
DIGITS_SMOKE = ["--set", "data.limit=1280", "--set", "data.validation_split=0.0", "--epochs", "2"]


def free_ports(count):
    """`count` TCP ports free on localhost now."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_host(backend, index, args, ports, env=None):
    """Start host `index` of 2 running `args` (["-m", "kdl", ...], ["-c", CODE] or [script, ...];
    torchrun takes no -c) the way the backend's users would, in a session of its own (killing
    it kills all it started, as a host going down)."""
    environment = dict(os.environ, KERAS_BACKEND=backend, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2",
                       **{"KDL_JOIN_TIMEOUT": "120", **(env or {})})
    command = [sys.executable, *args]
    if backend == "jax":
        environment.update(XLA_FLAGS="--xla_force_host_platform_device_count=2",
                           KERAS_DISTRIBUTION_JOB_ADDRESSES=f"localhost:{ports[0]}",
                           KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID=str(index))
    elif backend == "tensorflow":
        environment["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                                               "task": {"type": "worker", "index": index}})
    else:
        # is_host: on one machine every node matches the endpoint; node 0 holds the store, as
        # the node named by the endpoint does on a real cluster
        command = [str(pathlib.Path(sys.executable).with_name("torchrun")), "--nnodes", "2",
                   "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                   f"localhost:{ports[0]}", "--rdzv-id", f"kdl-{ports[0]}", "--rdzv-conf",
                   f"join_timeout=120,is_host={int(index == 0)}", *args]
    return subprocess.Popen(command, env=environment, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_host(process):
    """SIGKILL a host started by `start_host` and everything it started, as a lost VM: its
    process group, and the descendants in sessions of their own (torchrun's workers)."""
    children = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    doomed, pending = [], [process.pid]
    while pending:
        pid = pending.pop()
        doomed.append(pid)
        pending += children.get(pid, [])
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_hosts(backend, args, timeout=400, hosts=(0, 1), env=None):
    """Run `args` on hosts `hosts` of a 2-host run to the end; [(returncode, stdout, stderr)]."""
    ports = free_ports(2)
    started = [start_host(backend, index, args, ports, env) for index in hosts]
    try:
        outputs = [p.communicate(timeout=timeout) for p in started]
        return [(p.returncode, *output) for p, output in zip(started, outputs)]
    finally:
        for p in started:
            if p.poll() is None:
                kill_host(p)


def history(run):
    """history.csv of a run directory as {column: [value per epoch]}."""
    lines = (pathlib.Path(run) / "history.csv").read_text().split()
    names = lines[0].split(",")
    return {name: [float(line.split(",")[i].replace("NA", "nan")) for line in lines[1:]]
            for i, name in enumerate(names)}


def measure(backend, folder):
    """(1-process seconds, 2-host seconds, largest relative loss difference) for the digits smoke."""
    train = ["-m", "kdl", "train", DIGITS, *DIGITS_SMOKE, *EXACT, "--quiet"]
    start = time.perf_counter()
    environment = dict(os.environ, KERAS_BACKEND=backend, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, *train, "--out", f"{folder}/one"], env=environment, cwd=REPO,
                   check=True, capture_output=True)
    one = time.perf_counter() - start
    start = time.perf_counter()
    hosts = run_hosts(backend, [*train, "--distribute", "data_parallel", "--out", f"{folder}/two"])
    for code, _, err in hosts:
        if code:
            raise SystemExit(f"{backend}: a host failed:\n{err[-2000:]}")
    two = time.perf_counter() - start
    losses = history(f"{folder}/one")["loss"], history(f"{folder}/two")["loss"]
    return one, two, max(abs(a - b) / abs(b) for a, b in zip(*losses))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["jax", "tensorflow", "torch"])
    args = parser.parse_args()
    print("| backend | 1 process (s) | 2 hosts (s) | ratio | largest relative loss difference |")
    print("|---|---|---|---|---|")
    for backend in args.backends:
        with tempfile.TemporaryDirectory() as folder:
            one, two, difference = measure(backend, folder)
        print(f"| {backend} | {one:.1f} | {two:.1f} | {two / one:.2f}x | {difference:.1e} |", flush=True)


if __name__ == "__main__":
    main()
