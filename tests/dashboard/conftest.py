"""Dashboard test fixtures: a live server per test and a real headless Chromium per session.

Chromium is Debian's package (``make test`` installs it); Playwright drives it
through ``executable_path`` and never downloads a browser of its own.
Screenshots land in ``<repo>/test-artifacts/dashboard/`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

import pytest

from flywheel.dashboard import Sources, make_server
from flywheel.home import Home
from tests.conftest import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = os.path.join(REPO, "test-artifacts", "dashboard")


# Module scope: Playwright's sync API keeps an asyncio loop running in this thread while it is
# open, which would break later tests that call asyncio.run() (tests/serving).
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: the dashboard tests need Debian's chromium; `make browser` installs it.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser page; fails the test on any JavaScript error or console error."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    tab.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    yield tab
    context.close()
    assert not errors, errors


@contextlib.contextmanager
def serving(home: Home, registry: str = "", kfp: object = None) -> Iterator[str]:
    """Runs the dashboard for ``home`` (and a ``KfpReader``, if given) on a free loopback port; yields its base URL."""
    server = make_server(Sources(home, registry, kfp=kfp), port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def screenshot(page, name: str, *, full: bool = True) -> str:
    """Saves a screenshot under test-artifacts/dashboard/ and returns its path."""
    os.makedirs(SHOTS, exist_ok=True)
    path = os.path.join(SHOTS, f"{name}.png")
    page.screenshot(path=path, full_page=full)
    assert os.path.getsize(path) > 1000
    return path


def cell_texts(page, selector: str) -> list[str]:
    """Rendered text of every match (SVG elements have no innerText: their text content)."""
    found = page.locator(selector)
    return [(inner if inner is not None else text or "").strip()
            for inner, text in zip(found.all_inner_texts(), found.all_text_contents())]
