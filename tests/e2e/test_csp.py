"""The product under its Content-Security-Policy: the main flows and the API docs run in Chromium
with no console error and no CSP violation, and load nothing from another origin."""

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import drop, log_in, watch_for_errors

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def same_origin_only(urls: list[str], origin: str) -> list[str]:
    return [url for url in urls if not url.startswith((origin + "/", "data:"))]


@pytest.mark.usefixtures("celery_worker")
def test_main_flows_run_under_the_csp_without_console_errors_or_violations(page, live_server, owner):
    problems = watch_for_errors(page)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    response = page.goto(live_server.url + "/accounts/login/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    log_in(page, live_server.url, "olivia", "owner-pass-123")

    page.fill("input[name=name]", "Handbook")
    page.click("button:has-text('Create bot')")
    expect(page.locator("h1")).to_have_text("Handbook")

    page.click("nav.tabs >> text=Knowledge")
    drop(page, "handbook.pdf")
    row = page.locator("tr.document", has_text="handbook.pdf")
    expect(row).to_have_attribute("data-status", "ready", timeout=90_000)

    page.click("nav.tabs >> text=Chat")
    page.fill("textarea[name=message]", "How many vacation days do employees get?")
    page.click("button:has-text('Ask')")
    answer = page.locator(".message.assistant").last
    # The first question waits for the embedding model to load in the server process.
    expect(answer.locator(".answer")).to_contain_text("25 days of paid vacation", timeout=90_000)
    # Emptied by static/js/docent.js (data-clear-after-send), formerly an hx-on handler.
    expect(page.locator("textarea[name=message]")).to_have_value("")

    # Open a citation: the link jumps to its source, whose passage unfolds.
    answer.locator("a.cite").first.click()
    assert "#cite-" in page.url
    source = answer.locator(".sources li").first
    expect(source.locator(".passage")).to_be_visible()
    expect(source.locator(".passage mark").first).to_be_visible()
    # htmx-driven parts of the answer: feedback and the lazily loaded trace panel.
    answer.get_by_role("button", name="Helpful", exact=True).click()
    expect(answer.locator(".feedback")).to_contain_text("Thanks for the feedback")
    answer.locator("details.why summary").click()
    expect(answer.locator(".why-body")).not_to_have_text("Loading…")

    # Deleting a conversation asks first (data-confirm, formerly an inline onsubmit).
    page.click("nav.tabs >> text=Chat")
    page.locator(".conversations ul a").first.click()
    page.click("text=Rename or delete this conversation")
    dialogs: list[str] = []

    def dismiss(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click(".conversations button:has-text('Delete')")
    assert dialogs == ["Delete this conversation?"]
    expect(page.locator(".conversations li[aria-current=true]")).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(".conversations button:has-text('Delete')")
    expect(page.locator(".conversations li[aria-current=true]")).to_have_count(0)

    page.click("nav.tabs >> text=Settings")
    page.fill("input[name=top_k]", "4")
    page.click("button:has-text('Save settings')")
    expect(page.locator("#saved")).to_contain_text("Saved as settings version 2")

    assert problems == []
    assert same_origin_only(requests, live_server.url) == []


def test_api_docs_render_every_operation_from_our_own_files_under_the_csp(page, live_server, owner):
    problems = watch_for_errors(page)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    log_in(page, live_server.url, "olivia", "owner-pass-123")

    response = page.goto(live_server.url + "/api/v1/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # Swagger UI is a large bundle: on a busy machine it takes seconds to parse and render.
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Docent API", timeout=30_000)
    bots = page.locator(".opblock-get", has=page.locator(".opblock-summary-path[data-path='/api/v1/bots']"))
    expect(bots).to_have_count(1)
    assert page.locator(".opblock").count() >= 10

    # "Try it out" calls our API with the session cookie: connect-src 'self' allows it.
    bots.locator(".opblock-summary").click()
    page.click("button.try-out__btn")
    page.click("button.execute")
    expect(bots.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200")

    assert problems == []
    assert same_origin_only(requests, live_server.url) == []
    assert any(url.endswith("/static/vendor/swagger-ui/swagger-ui-bundle.js") for url in requests)


@pytest.mark.browser_errors_expected("script-src")
def test_an_injected_inline_script_is_refused_and_reported(page, live_server):
    # Proves the guard the tests above rely on: the browser enforces the policy, and
    # watch_for_errors hears about it.
    problems = watch_for_errors(page)
    page.goto(live_server.url + "/accounts/login/")
    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.injected = true";
          document.body.appendChild(script);
        }"""
    )
    expect(page.locator("h1")).to_have_text("Log in")
    assert page.evaluate("window.injected") is None
    for _ in range(50):  # the report reaches Python asynchronously
        if any(problem.startswith("CSP: script-src") for problem in problems):
            break
        page.wait_for_timeout(100)
    assert any(problem.startswith("CSP: script-src") for problem in problems), problems
