"""The project's own plumbing: CI runs README's test command, environment.yml matches
pyproject.toml, the suite is offline, notebooks are clean, importing changes nothing."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_socket
import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- test-command -->")[1].split("<!-- /test-command -->")[0]
    lines = [ln for ln in block.strip().splitlines() if not ln.startswith("```")]
    assert len(lines) == 1, "README must hold exactly one test command between the markers"
    return lines[0].strip()


def test_ci_runs_exactly_the_readme_test_command():
    printed = subprocess.run(
        ["bash", str(ROOT / ".ci/run"), "--print-command"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed == _readme_block()
    assert printed.startswith("SALIENCY_QUICK=1 python -m pytest -n auto --dist loadfile")
    assert "--nbval-lax" in printed and printed.endswith(" tests")
    script = (ROOT / ".ci/run").read_text()
    assert "set -euo pipefail" in script and 'bash -c "$cmd"' in script
    assert "torch==2.14.1 torchvision==0.29.1" in script and '-e ".[dev]"' in script


def test_ci_refuses_a_readme_without_one_test_command(tmp_path):
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci/run").write_text((ROOT / ".ci/run").read_text())
    (tmp_path / "README.md").write_text("# no command here\n")
    result = subprocess.run(
        ["bash", str(tmp_path / ".ci/run"), "--print-command"], capture_output=True, text=True
    )
    assert result.returncode == 1 and "exactly one test command" in result.stderr


def _requirement_names(reqs: list[str]) -> dict[str, str]:
    out = {}
    for req in reqs:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
        out[m.group(1).lower().replace("_", "-")] = m.group(2).split(";")[0].strip()
    return out


def test_environment_yml_is_the_students_install():
    """The conda route installs the core dependencies and the self-check tools, nothing more."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    core = _requirement_names([d.split("#")[0] for d in project["dependencies"]])
    dev = _requirement_names([d.split("#")[0] for d in extras["dev"]])
    wanted = {**core, "pytest": dev["pytest"], "nbval": dev["nbval"]}
    lines = (ROOT / "environment.yml").read_text().splitlines()
    pip_section = lines[lines.index("  - pip:") + 1 :]
    pip_reqs = [ln.strip()[2:] for ln in pip_section if ln.strip().startswith("- ")]
    assert "-e ." in pip_reqs
    assert _requirement_names([r for r in pip_reqs if r != "-e ."]) == wanted
    assert "  - python=3.11" in lines
    # the instructor's tools are an extra, which dev includes; no Jupyter execution in core
    instructor = _requirement_names([d.split("#")[0] for d in extras["instructor"]])
    assert {"nbformat", "nbclient", "nbconvert"} <= set(instructor)
    assert not {"nbformat", "nbclient", "nbconvert"} & set(core)
    assert "saliency-helpers[instructor]" in [d.split("#")[0].strip() for d in extras["dev"]]


def test_the_suite_cannot_reach_the_network():
    with pytest.raises(pytest_socket.SocketConnectBlockedError):
        socket.create_connection(("10.255.255.1", 80), timeout=1)


def test_layout_exists():
    for name in [
        "notebooks",
        "saliency_helpers",
        "environment.yml",
        "figures",
        "exercises",
        "solutions",
        "README.md",
        "tests",
        "pyproject.toml",
        ".ci/run",
    ]:
        assert (ROOT / name).exists(), name


def test_committed_notebooks_have_no_outputs():
    for nb_path in ROOT.glob("*/*.ipynb"):
        nb = json.loads(nb_path.read_text())
        for cell in nb["cells"]:
            # nbformat 4.5 cells carry an id (missing ones are a warning now, an error later)
            assert cell.get("id"), f"{nb_path.name}: a cell has no id; run nbformat's normalize()"
            if cell["cell_type"] == "code":
                assert not cell.get("outputs"), f"{nb_path.name} is committed with outputs"
                assert cell.get("execution_count") is None, nb_path.name


def test_importing_the_package_changes_no_global_state():
    probe = """
import random, numpy as np, torch, altair as alt
before = (torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate(),
          torch.get_num_threads(), alt.data_transformers.active, alt.renderers.active,
          alt.theme.active, torch.is_grad_enabled())
import saliency_helpers as sh
for name in sh.__all__:  # every module and name loaded, not only the package
    getattr(sh, name)
after = (torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate(),
         torch.get_num_threads(), alt.data_transformers.active, alt.renderers.active,
         alt.theme.active, torch.is_grad_enabled())
assert torch.equal(before[0], after[0]) and (before[1] == after[1]).all()
assert before[2:] == after[2:], (before[2:], after[2:])
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


#: Measured on the 2-core machine: about 0.01 s (the names load on first use).
IMPORT_BUDGET_S = 0.5


def test_import_loads_no_course_tooling_and_is_fast():
    """``import saliency_helpers`` loads no instructor tooling and no Jupyter execution stack."""
    probe = """
import sys, time
start = time.perf_counter()
import saliency_helpers as sh
seconds = time.perf_counter() - start
sh.attribute, sh.heatmaps, sh.cascade, sh.check, sh.widgets  # what a notebook touches
loaded = sorted(m for m in sys.modules
                if m.startswith(("saliency_helpers.course", "nbclient", "nbconvert", "nbformat")))
print(f"{seconds:.4f}", loaded)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    seconds, loaded = out.stdout.split(" ", 1)
    assert loaded.strip() == "[]", loaded
    assert float(seconds) < IMPORT_BUDGET_S, f"import saliency_helpers took {seconds} s"
