"""Shared fixtures. The whole suite runs offline: pyproject's addopts pass
``--allow-hosts=127.0.0.1,::1,localhost`` to pytest-socket, so any connection
beyond this machine fails (test_project.py proves it)."""

from __future__ import annotations

import pytest

import saliency_helpers as sh


@pytest.fixture(scope="session")
def lite():
    """The offline EfficientNet-Lite0 bundle (loaded once per test session)."""
    return sh.load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def corella(lite):
    """The corella photo, preprocessed for EfficientNet-Lite0: (1, 3, 224, 224)."""
    return lite.preprocess(sh.course_photo("corella"))


@pytest.fixture(scope="session")
def cockatoo(lite):
    return lite.preprocess(sh.course_photo("cockatoo"))


@pytest.fixture(scope="session")
def course_result(tmp_path_factory):
    """Every lecture notebook run once per session through the course's main command
    (``saliency_helpers.course.run.run_course``) at quick size, into tmp folders. Shared by the
    runner's integration test and the browser tests, so the course runs only once."""
    from saliency_helpers.course import run

    folder = tmp_path_factory.mktemp("course")
    return run.run_course(
        quick=True, out=folder / "notebooks", figures=folder / "figures", progress=False
    )


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium with a fresh profile for a test module's pages (tests/chromium.py:
    skipped without Chromium, failing when ``CI`` is set)."""
    from chromium import chromium

    with chromium(height=900) as context:
        yield context
