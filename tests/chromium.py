"""Headless Chromium for the browser tests (test_browser.py, test_jupyterlab.py).

Debian's ``chromium`` (``.ci/run`` installs it with apt-get) driven by Playwright through
``executable_path``: no browser is downloaded. The flags keep it off this closed network;
each launch gets a fresh profile. Chromium missing: the tests fail when ``CI`` is set and
are skipped otherwise. ``SALIENCY_CHROMIUM`` points to another Chromium binary.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("SALIENCY_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require(ok: bool, message: str) -> None:
    """Skip a browser test locally, fail it on CI, when ``ok`` is false."""
    if ok:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI must run the browser tests: .ci/run installs Chromium)")
    pytest.skip(message)


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator:
    """A Playwright browser context on headless Chromium with a fresh profile."""
    require(CHROMIUM.exists(), f"no Chromium at {CHROMIUM}: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright package is missing: pip install playwright")
    with tempfile.TemporaryDirectory(prefix="saliency-chromium-") as profile:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=FLAGS,
                viewport={"width": width, "height": height},
            )
            try:
                yield context
            finally:
                context.close()
