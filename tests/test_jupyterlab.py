"""Altair charts in a real JupyterLab, offline: ``sh.offline_charts()`` in a live Lab session.

A JupyterLab server (this venv's, loopback only, no auth, fresh config/runtime/workspace dirs
in tmp, news and update checks off) serves a small notebook; headless Chromium (Debian's
package, driven by Playwright with ``executable_path``; nothing is downloaded) opens it, runs
all cells through Lab's own ``notebook:run-all-cells`` command and waits for the kernel.

Then every chart output (``.jp-RenderedVegaCommon5``, Lab's built-in Vega-Lite 5 renderer)
must hold a drawn Vega canvas/SVG, including the chart inside an ipywidgets explorer's
Output, which must draw a new chart when another method is picked in its dropdown; no
output may say "Error loading script" or show a traceback; the page must log no JavaScript
error; and every request the page makes beyond the machine is recorded and refused. The
same notebook without ``sh.offline_charts()`` (Altair's default renderer, which loads vega
from a CDN) is shown to fail these checks.

Chromium missing: the tests fail when ``CI`` is set and are skipped otherwise (as
``tests/test_browser.py``). ``SALIENCY_CHROMIUM`` points to another Chromium binary;
``SALIENCY_SCREENSHOTS=DIR`` saves a screenshot of each notebook page.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest
from chromium import chromium
from nbformat.v4 import new_code_cell, new_notebook

START_TIMEOUT_S = 60  # Lab answering /api/status
RUN_TIMEOUT_S = 120  # all cells executed (imports torch, loads EfficientNet-Lite0)
DRAW_TIMEOUT_S = 30  # charts drawn once the kernel is idle
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
CHART = ".jp-RenderedVegaCommon5"  # JupyterLab 4's vega5 mime renderer (Vega and Vega-Lite)
MARKS = "canvas.marks, svg.marks"  # what Vega draws (not the icon svg of the actions menu)



# ----------------------------------------------------------------------------- notebooks

SETUP = "import altair as alt\nimport pandas as pd\nimport torch\n\nimport saliency_helpers as sh\n"
OFFLINE = "sh.offline_charts()"
CELLS = [
    "torch.manual_seed(0)\n"
    'sh.heatmaps({"a": torch.randn(1, 3, 32, 32), "b": torch.randn(1, 3, 32, 32)}, size=80)',
    'df = pd.DataFrame({"stage": ["logits", "mid", "stem"] * 2, "value": [1, .6, .2, 1, .8, .7],\n'
    '                   "method": ["gradient"] * 3 + ["grad_cam"] * 3, "metric": "spearman"})\n'
    'sh.similarity_lines(df, facet=None, title="lines")',
]
WIDGET = (
    "import saliency_helpers.widgets\n\n"
    'b = sh.load_model("efficientnet_lite0")\n'
    'x = b.preprocess(sh.course_photo("corella"))\n'
    'sh.widgets.method_explorer(b, x, method="gradient")'
)


def write_notebook(path: Path, *, offline: bool = True, widget: bool = True) -> Path:
    """Set-up cell (with or without ``sh.offline_charts()``), two charts, optionally an
    explorer widget whose Output shows a third chart. No outputs: Lab runs it."""
    cells = [SETUP + (OFFLINE if offline else 'alt.renderers.active  # Altair\'s "default"')]
    cells += CELLS + ([WIDGET] if widget else [])
    nb = new_notebook(cells=[new_code_cell(source) for source in cells])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)
    return path


# ----------------------------------------------------------------------------- the server


@dataclass
class Lab:
    url: str  # http://127.0.0.1:PORT/
    root: Path  # the server's root dir: notebooks go here
    log: Path


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (the kernels the server started; they run in their own
    session, so they are tracked by id to make sure none outlives the test)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM lets the server shut its kernels down; whatever is left is killed by id."""
    kernels = _children(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for pid in kernels:
        try:  # still that kernel (not a reused pid)?
            if b"ipykernel" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def _get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _shutdown_kernels(lab: Lab) -> None:
    for session in _get(lab.url + "api/sessions") or []:
        request = urllib.request.Request(lab.url + f"api/sessions/{session['id']}", method="DELETE")
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except (urllib.error.URLError, OSError):
            pass


@contextlib.contextmanager
def serve_lab(base: Path):
    """A JupyterLab server on a free loopback port, isolated from ``~``; always stopped."""
    root, config, runtime = base / "root", base / "config", base / "runtime"
    for d in (root, config, runtime):
        d.mkdir()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "IPYTHONDIR": str(base / "ipython"),
    }
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--allow-root",  # CI containers run as root
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=0",  # the OS picks a free port; the server info file names it
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
        f"--LabApp.user_settings_dir={base / 'settings'}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no PyPI queries from the extension manager
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run cells by command
    ]  # fmt: skip
    # the user's choice asked by a toast otherwise; with news_url=None nothing is fetched anyway
    settings = base / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    log = base / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        url = None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            infos = sorted(runtime.glob("jpserver-*.json"))
            if infos and url is None:
                try:
                    url = json.loads(infos[0].read_text())["url"]
                except (ValueError, KeyError):
                    pass
            if url and _get(url + "api/status") is not None:
                break
            time.sleep(0.25)
        else:
            why = f"exited with {proc.returncode}" if proc.poll() is not None else "timed out"
            raise RuntimeError(f"JupyterLab did not answer /api/status ({why}):\n{log.read_text()}")
        yield Lab(url=url, root=root, log=log)
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    try:
        with serve_lab(tmp_path_factory.mktemp("lab")) as server:
            yield server
    except RuntimeError as err:
        pytest.fail(str(err))


# ----------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium with a fresh profile for this module's pages."""
    with chromium(height=1400) as context:
        yield context


@dataclass
class Seen:
    """What the browser saw in one notebook after Run All."""

    charts: list[dict] = field(default_factory=list)  # marks: drawn canvas/svg per chart
    outputs: list[str] = field(default_factory=list)  # text of every output area, per cell
    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions
    warnings: list[str] = field(default_factory=list)  # console warnings (reported only)
    requests: list[str] = field(default_factory=list)  # anything beyond the machine
    widgets: int = 0  # rendered ipywidgets views
    counts: list = field(default_factory=list)  # execution counts of the code cells
    status: str = ""  # the explorer's status line after picking another method


def _remote(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https", "ws", "wss", "ftp") and (
        parts.hostname not in LOOPBACK
    )


PANEL = "window.jupyterapp.shell.currentWidget"
KERNEL_READY = f"""async () => {{
    const panel = {PANEL};
    if (!panel || !panel.sessionContext) return false;
    await panel.sessionContext.ready;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    return !!kernel && kernel.status === "idle";
}}"""
RUN_DONE = f"""() => {{
    const panel = {PANEL};
    const kernel = panel.sessionContext.session.kernel;
    const cells = panel.content.widgets.filter(c => c.model.type === "code");
    return kernel.status === "idle" && cells.every(c => c.model.executionCount !== null
        && !c.node.querySelector(".jp-InputArea-prompt").textContent.includes("*"));
}}"""
DRAWN = f"""(n) => {{
    const charts = [...document.querySelectorAll("{CHART}")];
    const failed = [...document.querySelectorAll(".jp-OutputArea-output")]
        .some(o => o.innerText.includes("Error loading script"));  // no need to wait then
    return failed || (charts.length >= n && charts.every(c => c.querySelector("{MARKS}")));
}}"""
STATE = f"""() => {{
    const panel = {PANEL};
    const cells = panel.content.widgets.filter(c => c.model.type === "code");
    return {{
        charts: [...document.querySelectorAll("{CHART}")].map(c => ({{
            classes: c.className,
            marks: [...c.querySelectorAll("{MARKS}")].filter(
                m => m.getBoundingClientRect().width > 0).length,
            in_widget: !!c.closest(".jupyter-widgets, .widget-output"),
        }})),
        outputs: cells.map(c => [...c.node.querySelectorAll(".jp-OutputArea-output")]
            .map(o => o.innerText).join("\\n")),
        widgets: document.querySelectorAll(".jupyter-widgets.widget-vbox").length,
        counts: cells.map(c => c.model.executionCount),
    }};
}}"""


def run_notebook(
    context, lab: Lab, name: str, *, charts: int, then: Callable | None = None
) -> Seen:
    """Open ``name`` in Lab, run all cells, wait for the kernel and ``charts`` charts, then
    call ``then(page, seen)`` if given."""
    seen = Seen()
    page = context.new_page()

    def console(message) -> None:
        if message.type == "error":
            seen.errors.append(message.text)
        elif message.type == "warning":
            seen.warnings.append(message.text)

    def refuse(route) -> None:
        seen.requests.append(route.request.url)
        route.abort()

    page.on("console", console)
    page.on("pageerror", lambda e: seen.errors.append(f"uncaught: {e}"))
    page.on("websocket", lambda ws: seen.requests.append(ws.url) if _remote(ws.url) else None)
    page.route(_remote, refuse)  # Lab's own (loopback) requests are not intercepted
    try:
        # a workspace of its own: Lab does not reopen the notebooks of an earlier test
        workspace = Path(name).stem
        page.goto(f"{lab.url}lab/workspaces/{workspace}/tree/{name}", wait_until="domcontentloaded")
        page.wait_for_function(
            f"() => window.jupyterapp && {PANEL} && {PANEL}.content"
            " && document.querySelector('.jp-Notebook .jp-Cell')",
            timeout=START_TIMEOUT_S * 1000,
        )
        page.wait_for_function(KERNEL_READY, timeout=START_TIMEOUT_S * 1000, polling=250)
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(RUN_DONE, timeout=RUN_TIMEOUT_S * 1000, polling=250)
        try:
            page.wait_for_function(DRAWN, arg=charts, timeout=DRAW_TIMEOUT_S * 1000, polling=250)
        except Exception as err:  # the assertions below say which chart is missing
            seen.errors.append(f"charts not drawn after {DRAW_TIMEOUT_S} s: {type(err).__name__}")
        state = page.evaluate(STATE)
        seen.charts, seen.outputs = state["charts"], state["outputs"]
        seen.widgets, seen.counts = state["widgets"], state["counts"]
        if then is not None:
            then(page, seen)
    finally:
        shots = os.environ.get("SALIENCY_SCREENSHOTS")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"lab_{Path(name).stem}.png"), full_page=True)
        page.close()
        _shutdown_kernels(lab)  # frees the CPU for the next notebook
        # shown by `pytest -rP`: the console's warnings are reported, not asserted
        print(f"{name}: errors {seen.errors}\nwarnings {seen.warnings}\nrequests {seen.requests}")
    return seen


REDRAWN = f"""() => [...document.querySelectorAll(".jupyter-widgets {CHART}")]
    .some(c => !c.dataset.before && c.querySelector("{MARKS}"))"""


def pick_grad_cam(page, seen: Seen) -> None:
    """Choose grad_cam in the explorer's method dropdown: the kernel computes it and the
    widget's Output replaces its chart with a new one, drawn offline as well."""
    page.evaluate(
        f"""() => document.querySelectorAll(".jupyter-widgets {CHART}")
            .forEach(c => c.dataset.before = "1")"""
    )
    page.locator(".widget-dropdown select").first.select_option("grad_cam")
    try:
        page.wait_for_function(REDRAWN, timeout=RUN_TIMEOUT_S * 1000, polling=250)
    except Exception as err:  # the test's assertion on the status line says what happened
        seen.errors.append(f"no new chart after picking grad_cam: {type(err).__name__}")
    seen.status = page.locator(".jupyter-widgets .widget-html").first.inner_text()


def assert_lab_renders(seen: Seen, n_charts: int) -> None:
    """Every cell ran, every chart is drawn, nothing failed, nothing left the machine."""
    assert seen.requests == [], f"the page asked the network for: {seen.requests}"
    assert seen.errors == [], f"JavaScript errors: {seen.errors}"
    assert None not in seen.counts, f"cells not executed: {seen.counts}"
    bad = [o for o in seen.outputs if "Error loading script" in o or "Traceback" in o]
    assert not bad, f"outputs with errors: {bad}"
    assert len(seen.charts) == n_charts, f"{len(seen.charts)} charts drawn, {n_charts} expected"
    not_drawn = [c for c in seen.charts if c["marks"] < 1]
    assert not not_drawn, f"charts without a drawn canvas/svg: {not_drawn}"


# ----------------------------------------------------------------------------- tests


def test_offline_charts_render_in_jupyterlab(browser, lab):
    """Heatmaps, a line chart and an explorer widget's chart, all drawn by Lab offline."""
    write_notebook(lab.root / "offline.ipynb")
    seen = run_notebook(browser, lab, "offline.ipynb", charts=3, then=pick_grad_cam)
    assert_lab_renders(seen, 3)
    assert seen.status.startswith("grad_cam for class"), seen.status
    assert sum(c["in_widget"] for c in seen.charts) == 1, seen.charts
    assert seen.widgets >= 1, "the explorer widget was not rendered"
    assert "Altair chart" not in "".join(seen.outputs)  # drawn, not the text/plain fallback


def test_default_renderer_fails_offline_in_jupyterlab(browser, lab):
    """Without ``sh.offline_charts()`` Altair's HTML asks a CDN for vega: the check fails."""
    write_notebook(lab.root / "default.ipynb", offline=False, widget=False)
    seen = run_notebook(browser, lab, "default.ipynb", charts=2)
    assert any("cdn.jsdelivr.net" in url for url in seen.requests), seen.requests
    assert any("Error loading script" in o for o in seen.outputs), seen.outputs
    with pytest.raises(AssertionError):
        assert_lab_renders(seen, 2)
