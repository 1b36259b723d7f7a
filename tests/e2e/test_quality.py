"""An editor measures a change: type a test set, run it, watch it, change a setting, run again, compare."""

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import log_in, watch_for_errors, worker_paused

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HANDBOOK = {
    "canteen.txt": "The canteen opens at 11:30 on weekdays and serves lunch until 14:00.",
    "vacation.txt": "Full-time employees receive 25 days of paid vacation per calendar year.",
    "printer.txt": "Printer error E-4417 means the toner cartridge is empty; replace the cartridge.",
}


def fits_the_screen(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_create_a_test_set_run_it_change_a_setting_run_again_and_compare(
    page, live_server, owner, bot, index_texts, celery_worker
):
    index_texts(bot, HANDBOOK)
    problems = watch_for_errors(page)
    log_in(page, live_server.url, "olivia", "owner-pass-123")
    page.goto(f"{live_server.url}/bots/{bot.slug}/quality/")

    # No test set yet: the "type questions" panel is open.
    page.fill("input[name=name]", "Handbook basics")
    page.fill("textarea[name=question]", "When does the canteen open?")
    page.select_option("select[name=expected_documents]", ["canteen.txt"])
    page.click("button:has-text('Create test set')")
    expect(page.locator("h2").first).to_contain_text("Handbook basics")
    page.fill("textarea[name=question]", "What does printer error E-4417 mean?")
    page.select_option("select[name=expected_documents]", ["printer.txt"])
    page.click("button:has-text('Add case')")
    page.fill("textarea[name=question]", "Who won the football world cup in 1954?")
    page.uncheck("input[name=answerable]")
    page.click("button:has-text('Add case')")
    expect(page.locator("table.cases tbody tr")).to_have_count(3)
    expect(page.locator("table.cases")).to_contain_text("unanswerable")

    with worker_paused(celery_worker):
        page.click("button:has-text('Run this test set')")
        status = page.locator("#run-status")
        expect(status).to_have_attribute("data-status", "queued")
        expect(status).to_contain_text("0 of 3 cases")
        expect(status.locator("progress")).to_be_visible()
    # The worker continues: the page follows by itself and shows the metrics and the cases.
    expect(page.locator("#run-status")).to_have_attribute("data-status", "done", timeout=90_000)
    expect(page.locator("tr[data-metric='hit@1'] td").last).to_have_text("1.000")
    expect(page.locator("tr[data-metric='refusal_accuracy'] td").last).to_have_text("1.000")
    expect(page.locator("table.cases")).to_contain_text("rank 1")

    page.click("nav.tabs >> text=Settings")
    page.fill("input[name=refusal_threshold]", "1")
    page.click("button:has-text('Save settings')")
    expect(page.locator("#saved")).to_contain_text("Saved as settings version 2")

    page.click("nav.tabs >> text=Quality")
    page.click("#test-sets button:has-text('Run')")
    expect(page.locator("#run-status")).to_have_attribute("data-status", "done", timeout=90_000)
    expect(page.locator("tr[data-metric='wrong_refusals'] td").last).to_have_text("1.000")

    page.click("nav.tabs >> text=Quality")
    expect(page.locator("table.runs tbody tr")).to_have_count(2)
    expect(page.locator("#chart-card svg[role=img]")).to_be_visible()
    expect(page.locator("#chart-card svg polyline")).to_have_count(6)
    page.click("button:has-text('Compare A with B')")
    expect(page.locator("#config-diff")).to_contain_text("Refusal threshold")
    expect(page.locator("table.compare")).to_contain_text("Wrong refusals")
    expect(page.locator("table.compare td.worse").first).to_be_visible()
    expect(page.locator("#regressed")).to_contain_text("When does the canteen open?")

    for width in (1366, 390):
        page.set_viewport_size({"width": width, "height": 900})
        for path in ("", "compare/?" + page.url.split("?", 1)[1]):
            page.goto(f"{live_server.url}/bots/{bot.slug}/quality/{path}")
            assert fits_the_screen(page), (width, path)
    assert problems == []
