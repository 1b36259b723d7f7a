"""Refused uploads in the browser: the reason shows in the drop zone, and the documents table stays."""

import shutil
from pathlib import Path

import pytest
from django.contrib.sessions.models import Session
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from documents import services as documents
from documents.models import Document
from tests.e2e.helpers import document_row, drop, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def knowledge_page(page, live_server, owner, bot, settings, tmp_path):
    """The knowledge tab of a bot that holds one finished (failed) document, canteen.txt."""
    settings.MEDIA_ROOT = tmp_path / "media"
    existing = documents.add_document(bot, SimpleUploadedFile("canteen.txt", b"An older menu."), enqueue=False)
    existing.document.fail("Kept as it is for this test.")
    log_in(page, live_server.url, "olivia", "owner-pass-123")
    page.goto(f"{live_server.url}/bots/{bot.slug}/knowledge/")
    expect(document_row(page, "canteen.txt")).to_be_visible()
    return page


@pytest.mark.browser_errors_expected("409", "413")
def test_refusals_for_a_full_bot_and_for_too_many_files_show_in_the_drop_zone_one_after_the_other(
    knowledge_page, bot, settings
):
    page = knowledge_page
    settings.DOCENT_MAX_DOCUMENTS_PER_BOT = 1
    settings.DOCENT_MAX_FILES_PER_UPLOAD = 2
    message = page.locator("#upload-message")

    drop(page, "onboarding.md")
    expect(message).to_contain_text("This bot can hold 1 documents")
    expect(document_row(page, "canteen.txt")).to_be_visible()

    # The message area survives the first refusal, so the next one shows too.
    drop(page, "onboarding.md", "people.csv", "intranet.html")
    expect(message).to_contain_text("At most 2 files can be uploaded at once")
    expect(document_row(page, "canteen.txt")).to_be_visible()
    expect(page.locator("tr.document")).to_have_count(1)
    assert Document.objects.filter(bot=bot).count() == 1


def test_a_file_that_cannot_be_stored_is_named_with_its_reason_while_the_others_join_the_table(knowledge_page, bot):
    page = knowledge_page
    canteen = Document.objects.get(bot=bot, filename="canteen.txt")
    folder = Path(canteen.current_version.file.path).parent
    shutil.rmtree(folder)
    folder.write_text("something else stands where canteen.txt's folder was")

    drop(page, "canteen.txt", "onboarding.md")

    expect(document_row(page, "onboarding.md")).to_be_visible()
    message = page.locator("#upload-message")
    expect(message).to_contain_text("1 file could not be stored; the others were")
    expect(message).to_contain_text("canteen.txt: the server could not write it")
    expect(document_row(page, "canteen.txt")).to_be_visible()


@pytest.mark.browser_errors_expected("403")
def test_an_upload_after_the_session_ended_says_so_and_keeps_the_table(knowledge_page, bot):
    page = knowledge_page
    message = page.locator("#upload-message")
    Session.objects.all().delete()  # the session expired on the server: the upload is sent to the login page

    drop(page, "onboarding.md")
    expect(message).to_contain_text("you have been logged out")
    expect(document_row(page, "canteen.txt")).to_be_visible()

    # Without any cookie the CSRF check answers Django's 403 page first: not in the table either.
    page.context.clear_cookies()
    drop(page, "people.csv")
    expect(message).to_contain_text("The upload was not accepted")
    expect(document_row(page, "canteen.txt")).to_be_visible()
    assert not Document.objects.filter(bot=bot).exclude(filename="canteen.txt").exists()
