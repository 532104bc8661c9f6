"""Training throughput of the same small Keras convolution stacks on each backend: how fast each
backend's own convolution kernels are on this machine, apart from anything kdl does.

    python benchmarks/conv_throughput.py [--backends jax,tensorflow,torch] [--batch 256]

Per network and backend, in a process of its own: `model.fit` over 40 random 28x28 batches
after a warm-up of 8, images per second. "peer" is Fashion-MNIST's classic CNN (5x5 convs of 10
and 20 filters, batch 64; benchmarks/time_to_accuracy.py); "W1-W2-W3" is a 3x3 conv + BatchNorm +
ReLU + 2x2 max-pool per width, then global max-pooling (the fast Fashion-MNIST recipe's stack).
"""

import argparse
import os
import subprocess
import sys
import time

NETWORKS = ("peer", "16-32-64", "24-48-96", "32-64-128")


def throughput(network, batch):
    import keras
    import numpy as np
    from keras import layers

    inputs = keras.Input((28, 28, 1))
    x = layers.Rescaling(1 / 255)(inputs)                                  # (B, 28, 28, 1)
    if network == "peer":
        batch = 64
        x = layers.ReLU()(layers.MaxPooling2D()(layers.Conv2D(10, 5)(x)))  # (B, 12, 12, 10)
        x = layers.ReLU()(layers.MaxPooling2D()(layers.Conv2D(20, 5)(x)))  # (B, 4, 4, 20)
        x = layers.Dense(50, activation="relu")(layers.Flatten()(x))       # (B, 50)
    else:
        for width in map(int, network.split("-")):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
            x = layers.MaxPooling2D()(layers.ReLU()(layers.BatchNormalization()(x)))   # (B, H/2, W/2, width)
        x = layers.GlobalMaxPooling2D()(x)                                 # (B, width)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(x))
    torch = keras.backend.backend() == "torch"    # Keras' torch trainer runs one step per call
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy",
                  steps_per_execution=1 if torch else 8)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch * 40, 28, 28, 1)).astype("uint8")
    labels = rng.integers(0, 10, batch * 40)
    model.fit(images[:batch * 8], labels[:batch * 8], batch_size=batch, verbose=0)   # compile, warm up
    started = time.perf_counter()
    model.fit(images, labels, batch_size=batch, verbose=0)
    return len(images) / (time.perf_counter() - started)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--worker", nargs=2, metavar=("NETWORK", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(f"{throughput(args.worker[0], int(args.worker[1])):.0f}")
        return
    backends = args.backends.split(",")
    print("| network | " + " | ".join(f"{b} (images/s)" for b in backends) + " |")
    print("|---|" + "---|" * len(backends))
    for network in NETWORKS:
        cells = []
        for backend in backends:
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
            done = subprocess.run([sys.executable, __file__, "--worker", network, str(args.batch)],
                                  env=env, capture_output=True, text=True, check=True)
            cells.append(f"{int(done.stdout.split()[-1]):,}")
        print(f"| {network} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
