"""Time to accuracy on Fashion-MNIST: kdl's fast recipe on each backend against the classic CNN
every PyTorch tutorial starts from, as a plain PyTorch script, and a plain Keras script of that
same network. Every run is scored after each epoch on the 10,000 test images by the shared scorer
(kdl.evaluation.classification) with its clock paused, so the seconds are training seconds;
start-up (imports, reading the data, building the model) is reported beside them.

    KDL_DATA=../shared/data python benchmarks/time_to_accuracy.py --out runs/time_to_accuracy \\
        [--backends jax,tensorflow,torch] [--peer-epochs 15] [--keras-peer-backends jax] \\
        [--recipe recipes/image_classification/fashion_mnist_fast.toml] [--set train.epochs=10]

Writes OUT/results.json, OUT/results.md (the table) and OUT/time_to_accuracy.png (accuracy vs
training seconds); prints the table. Each run is its own process, one at a time; a run whose
OUT/NAME.json exists is not run again, so a killed benchmark continues where it stopped.

The peer (Fashion-MNIST's usual first network, as in the PyTorch examples): conv 5x5 x10 ->
max-pool -> ReLU -> conv 5x5 x20 -> max-pool -> ReLU -> fc 50 -> fc 10, SGD lr 0.01, momentum
0.9, batch 64, pixels scaled to 0..1 and standardised; on the GPU when there is one, else on
`--peer-threads` torch threads (1 by default, as it was first measured).
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
FAST = REPO / "recipes" / "image_classification" / "fashion_mnist_fast.toml"
TARGET = 0.93
MEAN, STD = 0.2860, 0.3530       # Fashion-MNIST's train-set pixel statistics (0..1 scale)
STARTED = time.perf_counter()


def fashion_mnist(data_root):
    """{"train": (images (N, 28, 28, 1) uint8, labels (N,)), "test": ...} from the IDX files."""
    from kdl.data.idx import IDX_FILES, read_idx
    from kdl.data.io import resolve_path

    folder = resolve_path("fashion-mnist", data_root, "the Fashion-MNIST IDX folder")
    arrays = {}
    for split, (images, labels) in IDX_FILES.items():
        arrays[split] = (read_idx(folder / f"{images}.gz")[..., None],
                         read_idx(folder / f"{labels}.gz").astype("int64"))
    return arrays


def test_accuracy(labels, probabilities):
    from kdl.evaluation import classification

    return float(classification(labels, probabilities)["accuracy"])


class Curve:
    """Training seconds (the clock stops while scoring) and test accuracy after every epoch,
    printed as one JSON line each for the parent process."""

    def __init__(self, test):
        self.test, self.points, self.training, self.since = test, [], 0.0, None

    def start(self):
        self.since = time.perf_counter()
        self.startup = self.since - STARTED

    def epoch_end(self, probabilities_of):
        self.training += time.perf_counter() - self.since
        images, labels = self.test
        accuracy = test_accuracy(labels, probabilities_of(images))
        self.points.append((round(self.training, 2), accuracy))
        print(json.dumps({"epoch": len(self.points), "seconds": self.training, "accuracy": accuracy}),
              flush=True)
        self.since = time.perf_counter()


def keras_curve(test):
    """A Keras callback around `Curve`."""
    import keras

    curve = Curve(test)

    class Callback(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            curve.start()

        def on_epoch_end(self, epoch, logs=None):
            curve.epoch_end(lambda images: self.model.predict(images, batch_size=1000, verbose=0))

    return curve, Callback()


def run_torch_peer(args):
    """The plain PyTorch script: its own loop, nothing from Keras or kdl but the data and scorer."""
    import torch
    from torch import nn

    torch.set_num_threads(args.peer_threads)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = fashion_mnist(args.data_root)

    def tensors(split):
        images, labels = data[split]
        x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - MEAN) / STD   # (N, 1, 28, 28)
        return x.to(device), torch.from_numpy(labels).to(device)

    (x, y), (test_x, _) = tensors("train"), tensors("test")
    model = nn.Sequential(nn.Conv2d(1, 10, 5), nn.MaxPool2d(2), nn.ReLU(),     # (B, 10, 12, 12)
                          nn.Conv2d(10, 20, 5), nn.MaxPool2d(2), nn.ReLU(),    # (B, 20, 4, 4)
                          nn.Flatten(), nn.Linear(320, 50), nn.ReLU(), nn.Linear(50, 10)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    curve = Curve((test_x, data["test"][1]))

    def probabilities(images):
        model.eval()
        with torch.no_grad():
            parts = [model(images[i:i + 1000]).softmax(-1) for i in range(0, len(images), 1000)]
        return torch.cat(parts).cpu().numpy()

    curve.start()
    for _ in range(args.peer_epochs):
        model.train()
        order = torch.randperm(len(x), device=device)
        for i in range(0, len(x), 64):
            rows = order[i:i + 64]
            optimizer.zero_grad()
            loss_fn(model(x[rows]), y[rows]).backward()
            optimizer.step()
        curve.epoch_end(probabilities)
    return curve


def run_keras_peer(args):
    """The same network as a plain Keras script (model.fit), on this process's backend."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    data = fashion_mnist(args.data_root)
    model = keras.Sequential([
        keras.Input((28, 28, 1)), layers.Rescaling(1 / (255 * STD), offset=-MEAN / STD),
        layers.Conv2D(10, 5), layers.MaxPooling2D(), layers.ReLU(),     # (B, 12, 12, 10)
        layers.Conv2D(20, 5), layers.MaxPooling2D(), layers.ReLU(),     # (B, 4, 4, 20)
        layers.Flatten(), layers.Dense(50, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    curve, callback = keras_curve(data["test"])
    model.fit(*data["train"], batch_size=64, epochs=args.peer_epochs, verbose=0, callbacks=[callback])
    return curve


def run_kdl(args):
    """kdl's recipe file, trained through the Python API as `kdl train` would."""
    import kdl

    recipe = kdl.recipes.load(args.recipe, args.set, data_root=args.data_root)
    curve, callback = keras_curve(fashion_mnist(args.data_root)["test"])
    recipe.fit(verbose=0, callbacks=[callback])
    return curve


RUNNERS = {"torch_peer": run_torch_peer, "keras_peer": run_keras_peer, "kdl": run_kdl}


def worker(args):
    curve = RUNNERS[args.worker](args)
    print(json.dumps({"done": True, "startup": curve.startup, "points": curve.points}), flush=True)


def run(name, kind, backend, args, out):
    """Run one worker process; its result (cached in OUT/NAME.json)."""
    saved = out / (re.sub(r"\W+", "_", name).strip("_") + ".json")
    if saved.exists():
        return json.loads(saved.read_text())
    command = [sys.executable, __file__, "--worker", kind, "--recipe", str(args.recipe),
               "--peer-epochs", str(args.peer_epochs), "--peer-threads", str(args.peer_threads)]
    command += [f"--set={s}" for s in args.set] + (["--data-root", args.data_root] if args.data_root else [])
    env = dict(os.environ, KERAS_BACKEND=backend or "jax", TF_CPP_MIN_LOG_LEVEL="2")
    print(f"{name}: running", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)
    result = None
    for line in process.stdout:
        point = json.loads(line) if line.startswith("{") else None
        if point and "epoch" in point:
            print(f"  {name}: epoch {point['epoch']} {point['accuracy']:.2%} at {point['seconds']:.1f} s",
                  flush=True)
        elif point and point.get("done"):
            result = point
    if process.wait() != 0 or result is None:
        raise SystemExit(f"{name} failed (exit {process.returncode}); its errors are above")
    result.update(name=name, backend=backend, wall=time.perf_counter() - started)
    saved.write_text(json.dumps(result, indent=1))
    return result


def first_reaching(points, accuracy):
    return next((seconds for seconds, value in points if value >= accuracy), None)


def table(results, peer):
    """Markdown rows: best accuracy, when it was reached, and when the peer's best and 93% were."""
    peer_best = max(a for _, a in peer["points"])
    peer_time = first_reaching(peer["points"], peer_best)
    rows = ["| run | epochs | start-up (s) | best test accuracy | at (s) | reaches the peer's best "
            f"({peer_best:.2%}) at (s) | / peer's {peer_time:.0f} s | reaches {TARGET:.0%} at (s) | "
            "training (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        best = max(a for _, a in r["points"])
        at_peer, at_target = first_reaching(r["points"], peer_best), first_reaching(r["points"], TARGET)

        def cell(value, digits=1):
            return "-" if value is None else f"{value:.{digits}f}"
        ratio = "-" if at_peer is None else f"{at_peer / peer_time:.2f}x"
        rows.append(f"| {r['name']} | {len(r['points'])} | {r['startup']:.1f} | {best:.2%} | "
                    f"{first_reaching(r['points'], best):.1f} | {cell(at_peer)} | {ratio} | "
                    f"{cell(at_target)} | {r['points'][-1][0]:.1f} |")
    return "\n".join(rows)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for r in results:
        seconds, accuracy = zip(*r["points"])
        axes.plot(seconds, [100 * a for a in accuracy], marker="o", markersize=3, label=r["name"])
    axes.axhline(100 * TARGET, color="grey", linestyle="--", linewidth=1)
    axes.set(xlabel="training seconds (scoring excluded)", ylabel="test accuracy (%)",
             title="Fashion-MNIST: time to accuracy", ylim=(80, 95))
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/time_to_accuracy")
    parser.add_argument("--backends", default="jax,tensorflow,torch", help="backends of kdl's recipe")
    parser.add_argument("--keras-peer-backends", default="jax,tensorflow,torch",
                        help="backends of the plain Keras peer ('' for none)")
    parser.add_argument("--recipe", default=str(FAST))
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override a field of kdl's recipe (repeatable)")
    parser.add_argument("--peer-epochs", type=int, default=15)
    parser.add_argument("--peer-threads", type=int, default=1, help="torch threads of the PyTorch peer")
    parser.add_argument("--data-root", default=None, help="folder holding fashion-mnist/ (default $KDL_DATA)")
    parser.add_argument("--worker", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    peer = run("pytorch peer", "torch_peer", None, args, out)
    results = [peer]
    results += [run(f"keras peer ({b})", "keras_peer", b, args, out)
                for b in filter(None, args.keras_peer_backends.split(","))]
    results += [run(f"kdl fast ({b})", "kdl", b, args, out) for b in filter(None, args.backends.split(","))]
    text = table(results, peer)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(text + "\n")
    plot(results, out / "time_to_accuracy.png")
    print(text)
    print(f"written: {out / 'results.md'}, {out / 'time_to_accuracy.png'}")


if __name__ == "__main__":
    main()
