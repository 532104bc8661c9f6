"""The README's commands run top to bottom, as a new user runs them on a fresh clone beside
`../shared/data`: each `kdl` line of its "Use" block, in order, in a folder of its own (with the
repository's recipes/ and docs/, and ../shared), each training command at the smoke size its
recipe file's header gives. So the README cannot drift from what kdl does.

Run once, in the jax session of `make test`: the README's commands choose their backends
themselves (`--backend torch`, Keras' default, `kdl compare` on all three), so the other two
sessions would run the very same commands again.
"""

import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

import pytest
from conftest import REPO

SMOKE_LINE = re.compile(r"^# Smoke:\s*(.*)$", re.MULTILINE)


def readme_commands():
    """The `kdl ...` lines of the README's "Use" section, comments removed."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    use = text.split("## Use", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", use, re.DOTALL)
    lines = [line for block in blocks for line in block.splitlines() if line.startswith("kdl ")]
    return [shlex.split(line, comments=True) for line in lines]


def smoke_size(argv):
    """A `kdl train RECIPE ...` command with its recipe file's smoke settings added."""
    if argv[1] != "train":
        return argv
    header = (REPO / argv[2]).read_text(encoding="utf-8")
    found = SMOKE_LINE.search(header)
    assert found, f"{argv[2]} has no '# Smoke:' line in its header"
    return argv + shlex.split(found.group(1)) + ["--quiet"]


def test_the_readme_commands_run_top_to_bottom(backend, shared_data, tmp_path):
    if backend != "jax":
        pytest.skip("the README's commands choose their own backends: run once, in the jax session")
    work = tmp_path / "clone"
    work.mkdir()
    for name in ("recipes", "docs"):
        (work / name).symlink_to(REPO / name)
    (tmp_path / "shared").symlink_to(shared_data.parent)       # ../shared/data, as beside a clone
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("KERAS_BACKEND", "KDL_DATA")}        # as on a fresh machine
    environment.update(TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1")
    commands = readme_commands()
    assert len(commands) >= 15 and [argv[1] for argv in commands[:3]] == ["info", "train", "train"]
    for argv in commands:
        argv = smoke_size(argv)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "kdl", *argv[1:]], cwd=work, env=environment,
                              capture_output=True, text=True, timeout=900)
        print(f"{time.perf_counter() - start:6.1f} s  {' '.join(argv)}")     # shown with pytest -s
        shown = " ".join(argv)
        assert done.returncode == 0, f"`{shown}` failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, f"`{shown}`:\n{done.stderr[-3000:]}"
        if argv[1] == "predict":                                   # one line per input, named by it
            first = next(arg for arg in argv[3:] if not arg.startswith("--"))
            assert done.stdout.startswith(first), f"`{shown}` printed {done.stdout[:500]!r}"
    assert pathlib.Path(work / "runs" / "digit_strings" / "model.keras").is_file()
