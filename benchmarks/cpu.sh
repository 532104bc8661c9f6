#!/usr/bin/env bash
# Re-runs the CPU measurements in docs/benchmarks.md, from the repository root, on an otherwise
# idle machine:  bash benchmarks/cpu.sh [OUT]   (about 2.5 hours on 2 cores)
# Each step's numbers are in its run directory: report.json (accuracy, meta.fit_seconds) or
# comparison.md / comparison.json.
set -euo pipefail
out=${1:-runs/bench}
export KDL_DATA=${KDL_DATA:-../shared/data}

for backend in jax tensorflow torch; do
    kdl train recipes/image_classification/digits_cnn.toml --backend "$backend" --quiet --out "$out/digits_cnn_$backend"
done
kdl train recipes/image_classification/fashion_mnist_resnet.toml --backend jax --quiet --out "$out/fashion_mnist_resnet_jax"
for recipe in sst2_cnn sst2_transformer; do
    for backend in jax tensorflow torch; do
        kdl train "recipes/text_classification/$recipe.toml" --backend "$backend" --quiet --out "$out/${recipe}_$backend"
    done
done
kdl compare recipes/image_classification/digits_cnn.toml --epochs 3 --baseline --tuned --out "$out/compare_digits_cnn"
kdl compare recipes/text_classification/sst2_transformer.toml --steps 300 --baseline --out "$out/compare_sst2_transformer"
python benchmarks/conv_throughput.py
python benchmarks/time_to_accuracy.py --out "$out/time_to_accuracy"
python benchmarks/torch_compile.py
