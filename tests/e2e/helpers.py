"""What a person does in the browser, shared by the e2e tests: log in, drop files, pause the worker."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
from collections.abc import Iterator

from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import Page, expect

from tests.conftest import Worker, fixture_bytes, wait_until_final

MIME_TYPES = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".html": "text/html",
    ".md": "text/markdown",
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".png": "image/png",
}

# A drop as the browser delivers it: a DataTransfer holding real File objects.
DROP_FILES = """
([zone, files]) => {
  const transfer = new DataTransfer();
  for (const file of files) {
    const bytes = Uint8Array.from(atob(file.data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], file.name, { type: file.type }));
  }
  for (const type of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }
}
"""


# Reports every Content-Security-Policy violation of the page to Python (see watch_for_errors).
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  window.reportCspViolation(`${event.effectiveDirective} refused ${event.blockedURI || "inline code"} at ${where}`);
});
"""


def watch_for_errors(page: Page) -> list[str]:
    """From now on, collect the page's console errors, uncaught exceptions, CSP violations and failed requests.

    The `page` fixture already calls this and fails the test on anything collected that the
    test did not declare with @pytest.mark.browser_errors_expected; calling it again returns the
    same list. A request the browser cancels itself (leaving a page mid-poll) is not a failure.
    """
    if hasattr(page, "docent_problems"):
        return page.docent_problems
    problems: list[str] = []
    page.docent_problems = problems  # type: ignore[attr-defined]
    page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on(
        "requestfailed",
        lambda request: (
            "ERR_ABORTED" not in (request.failure or "")
            and problems.append(f"request failed: {request.method} {request.url} {request.failure}")
        ),
    )
    page.on(
        "response",
        lambda response: (
            response.status >= 400
            and problems.append(f"status {response.status}: {response.request.method} {response.url}")
        ),
    )
    page.expose_function("reportCspViolation", lambda text: problems.append(f"CSP: {text}"))
    page.add_init_script(CSP_LISTENER)
    return problems


def log_in(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(base_url + "/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Log in')")
    expect(page.get_by_role("button", name=f"Log out {username}")).to_be_visible()


def drop(page: Page, *filenames: str) -> None:
    """Drop these files from tests/fixtures/ on the knowledge tab's drop zone, all at once."""
    payload = [
        {
            "name": name,
            "type": MIME_TYPES[os.path.splitext(name)[1]],
            "data": base64.b64encode(fixture_bytes(name)).decode(),
        }
        for name in filenames
    ]
    zone = page.locator("#dropzone").element_handle()
    page.evaluate(DROP_FILES, [zone, payload])


def document_row(page: Page, filename: str):
    """The knowledge table's row for `filename` (matched on the exact link text)."""
    return page.locator("tr.document").filter(has=page.get_by_role("link", name=filename, exact=True))


def ingest(bot, *filenames: str) -> None:
    """Index fixtures with the real worker, as an upload would, and wait until each is ready."""
    from documents import services as documents

    for name in filenames:
        upload = documents.add_document(bot, SimpleUploadedFile(name, fixture_bytes(name)))
        document = wait_until_final(upload.document.pk)
        assert document.status == "ready", f"{name}: {document.error}"


@contextlib.contextmanager
def worker_paused(worker: Worker) -> Iterator[None]:
    """Freeze the worker (SIGSTOP) so a state it would leave within milliseconds stays on screen.

    Its tasks wait in the broker meanwhile and run as soon as it continues.
    """
    assert worker.process is not None and worker.process.poll() is None
    os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)
