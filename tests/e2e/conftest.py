"""Chromium (Debian's package) driven by Playwright against pytest-django's live server."""

import os
import shutil

import pytest

# Playwright's sync API runs an event loop in this thread; Django's ORM calls in the
# test body are still plain synchronous calls, so allow them.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        message = "Debian's chromium is not installed (make test installs it where apt-get is available)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser tab; the test fails on any console error or failed request it did not expect.

    A test that provokes errors on purpose names them: @pytest.mark.browser_errors_expected("status 415").
    """
    from tests.e2e.helpers import watch_for_errors

    context = browser.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    problems = watch_for_errors(page)
    yield page
    context.close()
    expected = [text for marker in request.node.iter_markers("browser_errors_expected") for text in marker.args]
    unexpected = [problem for problem in problems if not any(text in problem for text in expected)]
    assert unexpected == [], "The browser reported problems:\n" + "\n".join(unexpected)
