"""Working with others: sharing a bot, what a chat-only member can't reach, re-indexing, the admin console."""

import pytest
from playwright.sync_api import expect

from bots import services
from tests.e2e.helpers import document_row, ingest, log_in, worker_paused

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def other_page(browser):
    """A second person's browser: its own context, so its own cookies."""
    context = browser.new_context()
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def test_a_colleague_the_bot_is_shared_with_finds_it_and_gets_a_cited_answer(
    page, other_page, live_server, owner, member, bot, celery_worker
):
    ingest(bot, "handbook.pdf")
    log_in(page, live_server.url, "olivia", "owner-pass-123")
    page.goto(f"{live_server.url}/bots/{bot.slug}/")
    page.get_by_role("link", name="Sharing").click()

    page.fill("#share-who", "mike")
    page.get_by_role("button", name="Share").click()
    expect(page.locator(".flash")).to_contain_text("Shared with mike as User.")
    expect(page.locator("tr.share")).to_have_count(1)
    expect(page.locator("tr.share")).to_contain_text("mike")

    log_in(other_page, live_server.url, "mike", "member-pass-123")
    other_page.get_by_role("link", name="Handbook").click()
    expect(other_page.locator("h1")).to_have_text("Handbook")
    other_page.fill("textarea[name=message]", "How many vacation days do employees get?")
    other_page.get_by_role("button", name="Ask").click()
    answer = other_page.locator(".message.assistant").last
    # The first question may wait for the embedding model to load in the server.
    expect(answer.locator(".answer")).to_contain_text("25 days of paid vacation", timeout=60_000)
    expect(answer.locator("a.cite").first).to_have_attribute("title", "handbook.pdf, page 2")
    expect(answer.locator(".sources li").first).to_contain_text("handbook.pdf, page 2")


@pytest.mark.browser_errors_expected("404")
def test_a_member_with_chat_only_access_sees_only_the_chat(page, live_server, member, bot):
    services.share_bot(bot, username="mike")
    log_in(page, live_server.url, "mike", "member-pass-123")
    page.goto(f"{live_server.url}/bots/{bot.slug}/")
    tabs = page.get_by_role("navigation", name="Bot sections")
    expect(tabs.get_by_role("link")).to_have_text(["Chat"])

    for tab in ("settings", "knowledge", "traces", "sharing", "quality"):
        response = page.goto(f"{live_server.url}/bots/{bot.slug}/{tab}/")
        assert response.status == 404, tab
        expect(page.locator("body")).to_contain_text("Not Found")
        expect(page.locator("body")).not_to_contain_text("How documents are split")


def test_changing_the_chunking_shows_re_indexing_progress_until_it_is_done(
    page, live_server, owner, bot, celery_worker
):
    filenames = ["handbook.pdf", "intranet.html", "onboarding.md"]
    ingest(bot, *filenames)
    log_in(page, live_server.url, "olivia", "owner-pass-123")
    page.goto(f"{live_server.url}/bots/{bot.slug}/")
    page.get_by_role("link", name="Settings").click()

    page.get_by_label("How documents are split").select_option(label="Fixed-size windows")
    page.get_by_label("Passage size (tokens)").fill("64")
    page.get_by_text("Advanced indexing settings").click()
    page.get_by_label("Passage overlap (tokens)").fill("16")
    # Held, so the re-indexing can't finish before the Knowledge tab is open.
    with worker_paused(celery_worker):
        page.get_by_role("button", name="Save settings").click()
        expect(page.locator("#saved")).to_contain_text("Saved as settings version 2.")
        expect(page.locator(".history")).to_contain_text(
            "How documents are split: By headings and paragraphs → Fixed-size windows"
        )
        page.get_by_role("link", name="Knowledge").click()
        progress = page.locator("#reindex-progress")
        expect(progress).to_contain_text("Re-indexing with settings version 2: 0 of 3 documents done")

    # It counts up while the old index answers, and says when it is done instead of vanishing.
    expect(progress).to_contain_text("Re-indexing finished: all 3 documents", timeout=120_000)
    for filename in filenames:
        expect(document_row(page, filename)).to_have_attribute("data-status", "ready")
    bot.refresh_from_db()
    assert bot.chunking_strategy == "fixed" and bot.chunk_size_tokens == 64
    assert bot.documents.filter(chunks__is_active=True, chunks__index_version=bot.index_version).distinct().count() == 3


def test_an_admin_adding_a_provider_with_a_wrong_address_sees_why_the_connection_fails(
    page, live_server, django_user_model
):
    django_user_model.objects.create_superuser("ada", password="admin-pass-123")
    log_in(page, live_server.url, "ada", "admin-pass-123")
    page.get_by_role("link", name="Console").click()
    page.get_by_role("navigation", name="Console sections").get_by_role("link", name="Language models").click()

    page.get_by_label("Name", exact=True).fill("Office GPU server")
    page.get_by_label("Server address").fill("http://127.0.0.1:9/v1")
    page.get_by_label("Model names").fill("llama3")
    page.get_by_role("button", name="Add provider").click()
    expect(page.locator(".flash")).to_contain_text("Added Office GPU server.")

    row = page.locator("tr", has_text="Office GPU server")
    expect(row).to_contain_text("Not tested yet.")
    row.get_by_role("button", name="Test connection").click()
    expect(row.locator(".badge")).to_have_text("Failed", timeout=30_000)
    message = row.locator(".check-message")
    expect(message).to_contain_text("Connection")
    expect(message).to_contain_text("refused")
    expect(message).to_contain_text("Could not reach http://127.0.0.1:9/v1")
