"""The lectures, executed once through the course's main command, and what is made of them.

``course_result`` (tests/conftest.py) runs every lecture notebook at quick size through
``saliency_helpers.course.run.run_course``. The tests here share that one run, so they live in
one file (the README's test command hands each file to one pytest-xdist worker): the run's
summary and figures, the cells whose printout is checked, and every lecture exported as an
offline page and slides and opened in headless Chromium (the checks of tests/test_browser.py).
Every slide of every deck must fit a 1280×720 screen (no content taller than the slide, no
block scrolling sideways); each deck's contact sheet is written to ``build/contact_sheets/``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from test_browser import assert_renders, assert_slides_fit, contact_sheet, measure_slides, open_page

from saliency_helpers.course import common, run
from saliency_helpers.course import export as ex

ROOT = Path(__file__).resolve().parent.parent
PNG_HEADER = b"\x89PNG\r\n\x1a\n"


@pytest.mark.course
def test_the_course_runs_and_summarises(course_result):
    assert course_result.ok, run.format_failures(course_result)
    text = run.format_summary(course_result)
    assert "corella top-1           class 89 " in text, text
    for line in [
        "IG completeness error",
        "data randomization",
        "model randomization",
        "_fc",
        "faithfulness vs random  deletion: ",
        "planted shortcut        others -> 7 with the mark: control ",
    ]:
        assert line in text, text
    names = [p.stem for p in run.find_notebooks()]
    assert [r.name for r in course_result.runs] == names
    assert all(r.executed.is_file() for r in course_result.runs)
    assert {s[:2] for s in course_result.figures} == {n[:2] for n in names}
    for png in course_result.figures.values():
        assert png.read_bytes()[:8] == PNG_HEADER


#: The first line of a lecture cell whose printout the tests check (notebooks 00, 03-05).
CHECKED = "# checked by tests/test_course.py: must print class 89 and its name"


@pytest.mark.course
def test_checked_cells_print_class_89(course_result):
    """The cells marked as checked print the explained class, 89, with its name."""
    found = []
    for result in course_result.runs:
        for cell in nbformat.read(result.executed, as_version=4).cells:
            if cell.cell_type == "code" and cell.source.startswith(CHECKED):
                text = "".join(o.get("text", "") for o in cell.outputs if "text" in o)
                assert "89" in text.split() or "89 (" in text, (result.name, text)
                assert "sulphur-crested cockatoo" in text, (result.name, text)
                found.append(result.name)
    assert sorted({name[:2] for name in found}) == ["00", "03", "04", "05"]


LECTURES = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: One PNG per lecture deck, a small screenshot of every slide, for reviewing a deck at a glance.
CONTACT_SHEETS = ROOT / "build" / "contact_sheets"


@pytest.mark.course
@pytest.mark.parametrize("to", ["html", "slides"])
@pytest.mark.parametrize("name", LECTURES)
def test_lecture_notebook_renders_offline(browser, course_result, tmp_path, name, to):
    lecture = next(r.executed for r in course_result.runs if r.name == name)
    nb = nbformat.read(lecture, as_version=4)
    n_charts = len(common.chart_outputs(nb))
    assert n_charts >= 1, f"{name} should show its charts"
    path = ex.export_notebook(lecture, to, out=tmp_path)
    seen = open_page(browser, path, slides=to == "slides")
    has_math = any("$" in c.source for c in nb.cells if c.cell_type == "markdown")
    assert_renders(seen, n_charts, math=has_math, slides=to == "slides")
    slide_starts = sum(
        c.metadata.get("slideshow", {}).get("slide_type") == "slide" for c in nb.cells
    )
    if to == "slides":
        assert seen.reveal["total"] >= slide_starts, (seen.reveal, slide_starts)
        # what the room sees: every slide at 1280×720, one thumbnail each on a contact sheet
        slides = measure_slides(browser, path, shots=True)
        contact_sheet(slides, CONTACT_SHEETS / f"{name}.png")
        assert_slides_fit(slides)
    # notebook (< 3 MB by the course budget) + vega and reveal.js inlined (~1.5 MB)
    assert path.stat().st_size < 8_000_000, f"{path.name}: {path.stat().st_size:,} bytes"
