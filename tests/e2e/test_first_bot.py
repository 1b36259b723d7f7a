"""A person's first bot: log in, create it, drop a PDF, watch it become ready, ask, read the cited answer."""

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import drop, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def test_log_in_create_a_bot_drop_a_pdf_and_get_a_cited_answer(page, live_server, owner):
    log_in(page, live_server.url, "olivia", "owner-pass-123")

    page.fill("input[name=name]", "Employee handbook")
    page.fill("textarea[name=instructions]", "Answers questions about Northwind's policies.")
    page.click("button:has-text('Create bot')")
    expect(page.locator("h1")).to_have_text("Employee handbook")
    page.click("nav.tabs >> text=Knowledge")

    drop(page, "handbook.pdf", "pixel.png")
    pdf_row = page.locator("tr.document", has_text="handbook.pdf")
    expect(pdf_row).to_be_visible()
    # The image is refused in the drop zone at once, without a failed row.
    expect(page.locator("#upload-message")).to_contain_text("pixel.png")
    expect(page.locator("tr.document", has_text="pixel.png")).to_have_count(0)
    # The rows update themselves (htmx polling) until final: no reload here.
    expect(pdf_row).to_have_attribute("data-status", "ready", timeout=90_000)

    page.click("nav.tabs >> text=Chat")
    page.fill("textarea[name=message]", "How many vacation days do employees get?")
    page.click("button:has-text('Ask')")
    answer = page.locator(".message.assistant").last
    # The first question may wait for the embedding model to load in this process.
    expect(answer.locator(".answer")).to_contain_text("25 days of paid vacation", timeout=60_000)
    expect(answer.locator("a.cite").first).to_have_text("[1]")
    expect(answer.locator("a.cite").first).to_have_attribute("title", "handbook.pdf, page 2")
    expect(answer.locator(".sources li").first).to_contain_text("handbook.pdf, page 2")
    expect(page.locator("textarea[name=message]")).to_have_value("")

    page.fill("textarea[name=message]", "Who won the football world cup in 1954?")
    page.click("button:has-text('Ask')")
    expect(page.locator(".message.assistant")).to_have_count(2)
    refusal = page.locator(".message.assistant").last
    expect(refusal).to_contain_text("couldn't find this in the documents")
    expect(refusal.locator("a.cite")).to_have_count(0)
