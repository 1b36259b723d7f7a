"""The drop zone refuses files Docent can't read at once, shows the server's refusals, and unpacks ZIP archives."""

from __future__ import annotations

import base64
import io
import zipfile

import pytest
from playwright.sync_api import expect

from documents.models import Document
from tests.conftest import fixture_bytes
from tests.e2e.helpers import DROP_FILES, document_row, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def drop_bytes(page, files: dict[str, bytes]) -> None:
    """Drop these files (name → content) on the knowledge tab's drop zone, all at once."""
    payload = [
        {"name": name, "type": "application/octet-stream", "data": base64.b64encode(data).decode()}
        for name, data in files.items()
    ]
    page.evaluate(DROP_FILES, [page.locator("#dropzone").element_handle(), payload])


@pytest.fixture
def knowledge_page(page, live_server, owner, bot, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    log_in(page, live_server.url, "olivia", "owner-pass-123")
    page.goto(f"{live_server.url}/bots/{bot.slug}/knowledge/")
    uploads: list[str] = []
    page.on("request", lambda request: request.method == "POST" and uploads.append(request.url))
    page.uploads = uploads  # type: ignore[attr-defined]
    return page


@pytest.mark.browser_errors_expected("415")
def test_unreadable_files_are_refused_in_the_drop_zone_and_a_zip_is_unpacked(knowledge_page, bot):
    page = knowledge_page
    message = page.locator("#upload-message")

    # Refused by extension in the browser: nothing is sent, no row appears.
    drop_bytes(page, {"pixel.png": fixture_bytes("pixel.png")})
    expect(message).to_contain_text("pixel.png was not uploaded: Docent can't read .png files.")
    expect(message).to_contain_text("Supported: PDF, Word (.docx)")
    assert page.uploads == []

    # Mixed: the readable file is sent and joins the table; the other is named above the server's answer.
    drop_bytes(page, {"setup.exe": b"MZ\x90\x00", "onboarding.md": fixture_bytes("onboarding.md")})
    expect(document_row(page, "onboarding.md")).to_be_visible()
    expect(message).to_contain_text("setup.exe was not uploaded: Docent can't read .exe files.")
    assert len(page.uploads) == 1

    # The server checks content too: a binary file named .txt is refused with its reason, without a row.
    drop_bytes(page, {"notes.txt": bytes(range(256)) * 8})
    expect(message).to_contain_text("notes.txt was not stored: Docent can't read this kind of file")

    # A ZIP archive becomes its readable documents, with one summary of what was left out.
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as package:
        package.writestr("policies/leave.md", "# Leave\n\nSixteen weeks of parental leave.")
        package.writestr("policies/logo.png", fixture_bytes("pixel.png"))
    drop_bytes(page, {"hr.zip": archive.getvalue()})
    expect(document_row(page, "policies/leave.md")).to_be_visible()
    expect(message).to_contain_text("hr.zip was unpacked into 1 document. Left out (1 file): policies/logo.png")
    expect(message).not_to_contain_text("not a Word document")

    assert sorted(Document.objects.filter(bot=bot).values_list("filename", flat=True)) == [
        "onboarding.md",
        "policies/leave.md",
    ]
