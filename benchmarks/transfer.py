"""Fine-tuned against from scratch: train each recipe file with several seeds on one backend and
print the test accuracy of each run, their mean and the difference of the means.

    KDL_DATA=../shared/data python benchmarks/transfer.py recipes/transfer/fashion_5to9_finetune.toml \\
        recipes/transfer/fashion_5to9_scratch.toml --backend torch --seeds 0,1,2 [--out runs/transfer]

The first file is the fine-tuned one (its backbone run must exist: see its header), the second
the baseline. Each run is saved in OUT/BACKEND/NAME_seedS (a finished one is not trained again),
and the table is written to OUT/BACKEND/results.md.
"""

import argparse
import json
import pathlib
import statistics
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs=2, metavar="RECIPE",
                        help="the fine-tuned recipe, then the baseline")
    parser.add_argument("--backend", choices=("jax", "tensorflow", "torch"), default=None)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--out", default="runs/transfer", help="folder of the runs (default runs/transfer)")
    parser.add_argument("--data-root", default=None,
                        help="folder of relative data paths (default: $KDL_DATA)")
    args = parser.parse_args(argv)

    from kdl import backend
    if args.backend:
        backend.select(args.backend)
    import kdl

    out = pathlib.Path(args.out) / backend.name()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    scores = {}
    for path in args.recipes:
        name = pathlib.Path(path).stem
        for seed in seeds:
            run = out / f"{name}_seed{seed}"
            if not (run / "report.json").is_file():
                recipe = kdl.recipes.load(path, [f"seed={seed}"], data_root=args.data_root)
                recipe.fit(out=run, verbose=0)
                recipe.evaluate()
                recipe.save(run)
            accuracy = json.loads((run / "report.json").read_text())["metrics"]["accuracy"]
            scores.setdefault(name, []).append(accuracy)
            print(f"{name} seed {seed}: test accuracy {accuracy:.4f}", flush=True)
    (tuned, tuned_scores), (base, base_scores) = scores.items()
    rows = [f"| {name} | {' / '.join(f'{a:.2%}' for a in values)} | **{statistics.mean(values):.2%}** |"
            for name, values in scores.items()]
    gain = statistics.mean(tuned_scores) - statistics.mean(base_scores)
    table = "\n".join([f"| {backend.name()}: recipe | test accuracy, seeds {args.seeds} | mean |",
                       "|---|---|---|", *rows, f"| {tuned} - {base} | | **{gain * 100:+.2f} points** |"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
