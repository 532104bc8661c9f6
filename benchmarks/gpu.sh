#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md, from the repository root of a machine with an NVIDIA
# GPU and ../shared/data (or $KDL_DATA):
#   bash benchmarks/gpu.sh [OUT]             install the GPU builds into .venv-gpu, then measure
#   bash benchmarks/gpu.sh --dry-run [OUT]   the same steps, tiny, with this machine's .venv (CPU;
#                                            the text comparisons on one backend each); a test runs it
# Measures (about 8 minutes on one GPU after the install): the Fashion-MNIST time to accuracy
# (kdl's fast recipe on jax, tensorflow and torch against the plain-PyTorch peer) and
# `kdl compare` of the digits CNN, the SST-2 Transformer and the Multi30k translator.
# Writes OUT/gpu.md: the GPU, the library versions and every table, in docs/benchmarks.md's format.
set -euo pipefail
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
out=${1:-runs/gpu}
export KDL_DATA=${KDL_DATA:-../shared/data}
mkdir -p "$out"

if [ "$dry" = 1 ]; then
    python=${PYTHON:-.venv/bin/python}
    fast=(--set train.epochs=1 --set data.limit=1000 --set train.warmup_steps=2 --peer-epochs 1)
    digits=(--steps 4)
    # the text tasks' comparisons on one backend each: the same script path, a third of the time
    sst2=(--steps 4 --set data.limit=300 --backends tensorflow)
    multi30k=(--steps 4 --set data.limit=300 --backends torch)
else
    # One environment with the three CUDA builds (each brings its own CUDA libraries from PyPI):
    # torch's default wheel is its CUDA build; jax[cuda12] and tensorflow[and-cuda] add theirs.
    test -x .venv-gpu/bin/python || python3 -m venv .venv-gpu
    python=.venv-gpu/bin/python
    $python -m pip install --quiet --upgrade pip
    $python -m pip install --quiet torch "jax[cuda12]" "tensorflow[and-cuda]" -e '.[all]'
    $python -m pip install --quiet --no-deps pyctcdecode
    fast=()
    digits=(--epochs 3)
    sst2=(--steps 300)
    multi30k=(--steps 300)
fi
kdl=(-m kdl)

{
    echo "# GPU benchmarks ($(date -u +%Y-%m-%d), \`bash benchmarks/gpu.sh\`)"
    echo
    echo "GPU: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'none (dry run)')"
    echo
    $python -c "import json, kdl.backend as b; print('Versions:', json.dumps(b.versions()))"
} > "$out/gpu.md"

$python benchmarks/time_to_accuracy.py --out "$out/time_to_accuracy" --keras-peer-backends '' "${fast[@]}"
$python "${kdl[@]}" compare recipes/image_classification/digits_cnn.toml "${digits[@]}" --out "$out/compare_digits_cnn"
$python "${kdl[@]}" compare recipes/text_classification/sst2_transformer.toml "${sst2[@]}" --out "$out/compare_sst2_transformer"
$python "${kdl[@]}" compare recipes/translation/multi30k_en_de.toml "${multi30k[@]}" --out "$out/compare_multi30k"

for part in time_to_accuracy/results.md compare_digits_cnn/comparison.md \
            compare_sst2_transformer/comparison.md compare_multi30k/comparison.md; do
    { echo; echo "## $part"; echo; cat "$out/$part"; } >> "$out/gpu.md"
done
echo "written: $out/gpu.md"
