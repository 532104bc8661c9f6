"""What `jit_compile=True` (torch.compile) does to a kdl model's training step on PyTorch: the
step time eager and compiled, and where TorchDynamo breaks the graph or compiles again.

    python benchmarks/torch_compile.py [recipes/image_classification/digits_cnn.toml ...] [--steps 120]
        [--recompile-limit 8]

PyTorch only: it measures torch.compile, which the other backends do not have (their compiled
step is XLA, always on). Per recipe: the recipe's model, loss and optimizer, compiled as
`recipe.compile_model` does, trained for --steps batches eagerly and then, from the same initial
weights, with `jit_compile=True`; the median step after a warm-up (kdl.compare.timing), the
seconds to the first compiled step, and TorchDynamo's own counters: graphs compiled, graph
breaks by reason, and recompilations (a guard failed, so the function was traced again). A
function traced more than --recompile-limit times (TorchDynamo's `recompile_limit`, default 8)
runs eagerly from then on.
"""

import argparse
import collections
import logging
import os
import sys
import tempfile

DEFAULT_RECIPES = ("recipes/image_classification/digits_cnn.toml",
                   "recipes/text_classification/sst2_transformer.toml")


class RecompileCount(logging.Handler):
    """Counts TorchDynamo's "Recompiling function" records (its `recompiles` log artifact)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record):
        self.count += "Recompiling function" in record.getMessage()


def measure(path, steps):
    import torch._dynamo
    import torch._logging

    from kdl import recipes, runs
    from kdl.compare.timing import StepTimer, median_after_warmup

    recipe = recipes.load(path, ["train.steps_per_execution=1"])
    batches = min(steps, len(recipe.batches("train")))
    with tempfile.TemporaryDirectory() as folder:
        initial = os.path.join(folder, "initial.keras")
        recipe.build_model().save(initial)
        row = {}
        for label, jit in (("eager", False), ("compiled", True)):
            torch._dynamo.reset()
            torch._dynamo.utils.counters.clear()
            recompiles = RecompileCount()
            torch._logging.set_logs(recompiles=jit)
            logger = logging.getLogger("torch._dynamo.guards.__recompiles")
            logger.addHandler(recompiles)
            logger.propagate = False             # counted here, not printed
            model = runs.load_model(initial)
            recipe.compile_model(recipe.make_optimizer(batches), model=model, jit_compile=jit)
            timer = StepTimer(batches)
            model.fit(recipe.batches("train", shuffle=True), epochs=1, steps_per_epoch=batches,
                      callbacks=[timer], shuffle=False, verbose=0)
            row[label] = {"step_ms": 1000 * median_after_warmup(timer.step_seconds),
                          "first_step_s": timer.first_step_seconds}
            counters = torch._dynamo.utils.counters
            row[label].update(graphs=counters["stats"].get("unique_graphs", 0),
                              breaks=collections.Counter(counters["graph_break"]),
                              recompiles=recompiles.count)
            logger.removeHandler(recompiles)
            logger.propagate = True
        torch._logging.set_logs()
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="*", default=list(DEFAULT_RECIPES))
    parser.add_argument("--steps", type=int, default=120, help="training batches per variant (default 120)")
    parser.add_argument("--recompile-limit", type=int, default=None,
                        help="TorchDynamo's recompile_limit (default: torch's own, 8)")
    args = parser.parse_args(argv)
    os.environ["KERAS_BACKEND"] = "torch"
    from kdl import backend

    backend.select("torch")
    if args.recompile_limit is not None:
        import torch._dynamo

        torch._dynamo.config.recompile_limit = args.recompile_limit
    print("| recipe | eager step (ms) | compiled step (ms) | compiled / eager | first compiled step (s) "
          "| graphs compiled | recompilations | graph breaks |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.recipes:
        row = measure(path, args.steps)
        eager, compiled = row["eager"], row["compiled"]
        breaks = sum(compiled["breaks"].values())
        print(f"| {os.path.basename(path)} | {eager['step_ms']:.2f} | {compiled['step_ms']:.2f} | "
              f"{compiled['step_ms'] / eager['step_ms']:.2f} | {compiled['first_step_s']:.1f} | "
              f"{compiled['graphs']} | {compiled['recompiles']} | {breaks} |", flush=True)
        for reason, count in compiled["breaks"].most_common(5):
            print(f"  graph break x{count}: {reason[:600]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
