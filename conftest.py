"""Repository-wide pytest plugin: size budgets for notebooks executed by nbval.

nbval runs every notebook cell as a test item. This hook adds the course's two
budgets to those items, so that the README's test command enforces them:

* one cell's outputs (an Altair chart, say) at most ``CELL_BUDGET`` bytes of JSON;
* one executed notebook at most ``NOTEBOOK_BUDGET`` bytes in all.

It also writes each executed notebook to ``build/executed/<folder>/<name>.ipynb``
(outside git) for inspection, with a ``sizes.json`` summary.

Parallel runs (pytest-xdist with ``-n auto --dist loadfile --no-loadscope-reorder``, as in
the README's test command): all tests of one file run in the same worker, so a notebook's
cells share one kernel and a module's fixtures are built once (the lectures' course run lives
in tests/test_course.py alone for that reason); the files with the longest tests start first.
Each worker gets its share of the cores (``OMP_NUM_THREADS``, inherited by the kernels it
starts), so two workers on two cores do not fight over them.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

CELL_BUDGET = int(os.environ.get("SALIENCY_CELL_BUDGET", 1_000_000))
NOTEBOOK_BUDGET = int(os.environ.get("SALIENCY_NOTEBOOK_BUDGET", 3_000_000))
BUILD = Path(__file__).resolve().parent / "build" / "executed"

_outputs: dict[Path, dict[int, list]] = defaultdict(dict)


def _share_cores() -> None:
    """Give an xdist worker ``cores // workers`` threads, before torch is imported."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        os.environ["OMP_NUM_THREADS"] = str(max(1, (cores or 1) // workers))


_share_cores()


def pytest_collection_modifyitems(config, items):
    """Start with the files that hold the longest tests (marked ``course``: minutes each), so
    that in a parallel run they begin at once on different workers instead of finishing last
    (the README's command keeps this order: ``--no-loadscope-reorder``)."""
    heavy = {item.path for item in items if item.get_closest_marker("course")}
    items.sort(key=lambda item: item.path not in heavy)  # stable: the rest keep their order


def _nbval_cell(item: pytest.Item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "cell_num")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not _nbval_cell(item) or report.failed:
        return
    outs = item.test_outputs or []
    path = Path(str(item.parent.fspath))
    _outputs[path][item.cell_num] = outs
    cell_bytes = len(json.dumps(outs))  # nbval's outputs are plain dicts
    total = sum(len(json.dumps(o)) for o in _outputs[path].values())
    problem = None
    if cell_bytes > CELL_BUDGET:
        problem = f"cell {item.cell_num} outputs {cell_bytes:,} bytes (budget {CELL_BUDGET:,})"
    elif total > NOTEBOOK_BUDGET:
        problem = f"{path.name} outputs reach {total:,} bytes (budget {NOTEBOOK_BUDGET:,})"
    if problem:
        report.outcome = "failed"
        report.longrepr = f"Output budget exceeded: {problem}. Pool the maps or shrink the chart."


def pytest_sessionfinish(session):
    if not _outputs:
        return
    import nbformat

    sizes = {}
    for path, cells in _outputs.items():
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]  # nbval numbers code cells only
        for num, outs in cells.items():
            if num < len(code):
                code[num].outputs = [nbformat.from_dict(o) for o in outs]
        target = BUILD / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            nbformat.write(nb, target)
        except Exception as err:  # an executed copy is a convenience, never a test result
            print(f"could not write {target}: {err}")
            continue
        sizes[f"{path.parent.name}/{path.name}"] = target.stat().st_size
    summary = BUILD / "sizes.json"  # each xdist worker adds the notebooks it ran
    if summary.is_file() and os.environ.get("PYTEST_XDIST_WORKER"):
        sizes = {**json.loads(summary.read_text()), **sizes}
    summary.write_text(json.dumps(sizes, indent=1, sort_keys=True))
