"""Every recipe keeps the one contract (tests/harness.py) on the active backend: build, fit into a
run directory, evaluate, predict, save, reload here and on the next backend, export, and
`kdl predict` from the command line."""

import pytest
from harness import CASES, run_task_test


@pytest.mark.parametrize("task", sorted(CASES))
def test_recipe_contract(task, tmp_path):
    run_task_test(CASES[task], tmp_path)


def test_every_registered_task_has_a_contract_case():
    import kdl

    assert sorted(kdl.recipes.RECIPES) == sorted(CASES)
