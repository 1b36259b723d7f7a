"""The Knowledge tab: drop many kinds of files at once, watch them finish live, retry the one that failed."""

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import document_row, drop, log_in, worker_paused

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

READABLE = ["handbook.pdf", "handbook.docx", "intranet.html", "onboarding.md", "people.csv"]
PASSWORD_REASON = "This PDF is password-protected. Remove the password and upload it again."


def test_dropped_files_of_every_kind_finish_live_and_a_failed_one_can_be_retried(
    page, live_server, owner, bot, celery_worker
):
    log_in(page, live_server.url, "olivia", "owner-pass-123")
    page.goto(f"{live_server.url}/bots/{bot.slug}/knowledge/")
    # Survives only if the page is never reloaded: the table must update itself.
    page.evaluate("window.notReloaded = true")

    drop(page, *READABLE, "encrypted.pdf")
    expect(page.locator("tr.document")).to_have_count(6)
    for filename in READABLE:
        row = document_row(page, filename)
        expect(row).to_have_attribute("data-status", "ready", timeout=120_000)
        expect(row).to_contain_text("passage")
        expect(row.locator(".reason")).to_have_count(0)
    encrypted = document_row(page, "encrypted.pdf")
    expect(encrypted).to_have_attribute("data-status", "failed", timeout=60_000)
    expect(encrypted.locator(".reason")).to_have_text(PASSWORD_REASON)
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#documents")).not_to_have_attribute("hx-trigger", "every 1s")  # finished: polling stops

    encrypted.get_by_role("link", name="encrypted.pdf").click()
    expect(page.locator("h2")).to_have_text("encrypted.pdf")
    status = page.locator(".badge[data-status]")
    expect(status).to_have_attribute("data-status", "failed")
    expect(page.locator(".failure .reason")).to_contain_text("password-protected")

    # The worker would fail it again within milliseconds; hold it so "queued" can be seen.
    with worker_paused(celery_worker):
        page.get_by_role("button", name="Retry").click()
        expect(status).to_have_attribute("data-status", "queued")
        expect(status).to_have_text("Queued")
        expect(page.locator(".failure")).to_have_count(0)

    page.get_by_role("link", name="← All documents").click()
    expect(encrypted).to_have_attribute("data-status", "failed", timeout=60_000)
    expect(encrypted.locator(".reason")).to_have_text(PASSWORD_REASON)
    encrypted.get_by_role("link", name="encrypted.pdf").click()
    expect(status).to_have_attribute("data-status", "failed")
    expect(page.locator(".failure .reason")).to_contain_text(PASSWORD_REASON)
