"""The chat as people use it: a conversation that follows its answers and has its own URL,
feedback that keeps the vote, a question box for long questions, the keyboard, phones."""

import re

import pytest
from playwright.sync_api import Page, expect

from bots import services
from bots.models import Feedback
from tests.e2e.helpers import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LEAVE = (
    "Parental leave. Every parent receives 16 weeks of paid parental leave after the birth or adoption of a child. "
    "The leave can be split into two blocks taken within the first year."
)
CANTEEN = (
    "Canteen. The canteen on the second floor opens at 11:30 and closes at 14:00 on weekdays. "
    "Vegetarian and vegan dishes are available every day."
)
PRINTERS = (
    "Printers. Printer error E-4417 means the paper tray is empty; refill it and press the green button. "
    "Toner is kept in the supply room next to the lifts."
)
QUESTIONS = [
    "How many weeks of paid parental leave do parents get?",
    "When does the canteen open?",
    "What does printer error E-4417 mean?",
    "Where is the toner kept?",
]


# Controls on screen that stick out past the right edge, or are squeezed too narrow to use.
CUT_OFF_CONTROLS = """(width) => [...document.querySelectorAll("main :is(input, select, button, textarea)")]
  .filter((el) => el.offsetParent && !el.closest("details:not([open])"))
  .filter((el) => !["hidden", "checkbox", "radio"].includes(el.type) && !el.classList.contains("visually-hidden"))
  .filter((el) => { const box = el.getBoundingClientRect(); return box.right > width + 1 || box.width < 40; })
  .map((el) => el.outerHTML.slice(0, 80))"""


@pytest.fixture
def handbook(bot, index_texts):
    index_texts(bot, {"leave.txt": LEAVE, "canteen.txt": CANTEEN, "printers.txt": PRINTERS})
    return bot


def ask(page: Page, question: str, *, count: int) -> None:
    """Type a question, press Enter, and wait for answer number `count` to finish streaming."""
    page.fill("textarea[name=message]", question)
    page.press("textarea[name=message]", "Enter")
    expect(page.locator("article.message.assistant:not(.streaming)")).to_have_count(count, timeout=60_000)


def newest_answer_in_view(page: Page) -> bool:
    return page.evaluate(
        """() => {
          const answers = document.querySelectorAll("article.message.assistant");
          const box = answers[answers.length - 1].getBoundingClientRect();
          const form = document.getElementById("chat-form").getBoundingClientRect();
          return box.bottom > 0 && box.top < form.top;
        }"""
    )


def test_a_conversation_follows_its_answers_lives_at_its_own_url_and_joins_the_list_at_once(
    page, live_server, owner, handbook
):
    page.set_viewport_size({"width": 1366, "height": 700})
    log_in(page, live_server.url, "olivia", "owner-pass-123")
    page.goto(f"{live_server.url}/bots/{handbook.slug}/")

    ask(page, QUESTIONS[0], count=1)
    conversation = services.conversations_of(handbook, owner).get()
    expect(page).to_have_url(f"{live_server.url}/bots/{handbook.slug}/conversations/{conversation.pk}/")
    expect(page.locator("#conversation-list li a")).to_have_count(1)
    expect(page.locator("#conversation-list li a")).to_have_attribute("title", QUESTIONS[0])
    # Focus is back in the question box, so the next question can be typed at once.
    assert page.evaluate("document.activeElement.id") == "question"

    for number, question in enumerate(QUESTIONS[1:], start=2):
        ask(page, question, count=number)
        assert newest_answer_in_view(page), f"answer {number} is out of sight"
    assert page.evaluate("window.scrollY") > 0
    expect(page.locator("#conversation-list li a")).to_have_count(1)  # follow-ups stay in it

    # Text streaming in is followed at the end of the page, but a reader who scrolled up to
    # reread is left where they are.
    stream_a_line = "document.querySelector('#messages article:last-child .answer').append(' More.\\n'.repeat(40))"
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(100)  # the page learns of a scroll from its scroll event, a frame later
    page.evaluate(stream_a_line)
    page.wait_for_timeout(100)
    assert page.evaluate("window.scrollY") == 0
    page.evaluate("window.scrollTo(0, document.scrollingElement.scrollHeight)")
    page.wait_for_timeout(100)
    before = page.evaluate("window.scrollY")
    page.evaluate(stream_a_line)
    page.wait_for_timeout(100)
    assert page.evaluate("window.scrollY") > before
    ask(page, "Are vegan dishes available?", count=5)
    assert newest_answer_in_view(page)

    # Reload and Back come back to the conversation, at its latest answer.
    page.reload()
    expect(page.locator("article.message.assistant")).to_have_count(5)
    assert newest_answer_in_view(page)
    page.get_by_role("link", name="+ New conversation").click()
    expect(page.locator("article.message")).to_have_count(0)
    page.go_back()
    expect(page.locator("article.message.assistant")).to_have_count(5)


def test_enter_in_the_comment_box_sends_the_comment_with_the_vote_chosen(page, live_server, owner, handbook):
    log_in(page, live_server.url, "olivia", "owner-pass-123")
    page.goto(f"{live_server.url}/bots/{handbook.slug}/")
    ask(page, QUESTIONS[1], count=1)
    feedback = page.locator("form.feedback")
    feedback.get_by_role("button", name="Not helpful").click()
    expect(feedback.get_by_role("button", name="Not helpful")).to_have_attribute("aria-pressed", "true")
    feedback.locator("input[name=comment]").fill("It should also say when it closes.")
    with page.expect_response(lambda response: "/feedback/" in response.url):
        feedback.locator("input[name=comment]").press("Enter")
    expect(feedback).to_contain_text("Thanks for the feedback.")
    expect(feedback.get_by_role("button", name="Not helpful")).to_have_attribute("aria-pressed", "true")
    given = Feedback.objects.get()
    assert (given.rating, given.comment) == (-1, "It should also say when it closes.")

    # Without a vote, Enter keeps the comment and asks for one instead of guessing.
    ask(page, QUESTIONS[2], count=2)
    second = page.locator("form.feedback").last
    second.locator("input[name=comment]").fill("Spot on")
    with page.expect_response(lambda response: "/feedback/" in response.url):
        second.locator("input[name=comment]").press("Enter")
    expect(second.locator("[role=alert]")).to_contain_text("Choose Helpful or Not helpful")
    expect(second.locator("input[name=comment]")).to_have_value("Spot on")
    assert Feedback.objects.count() == 1


def test_the_question_box_grows_takes_new_lines_and_says_when_a_question_is_too_long(
    page, live_server, owner, handbook
):
    log_in(page, live_server.url, "olivia", "owner-pass-123")
    page.goto(f"{live_server.url}/bots/{handbook.slug}/")
    box = page.locator("textarea[name=message]")
    one_line = box.bounding_box()["height"]
    box.fill("When does the canteen open")
    box.press("Shift+Enter")
    box.press_sequentially("and when does it close?")
    assert box.input_value() == "When does the canteen open\nand when does it close?"
    assert box.bounding_box()["height"] > one_line
    expect(page.locator("article.message")).to_have_count(0)  # Shift+Enter did not send

    box.fill("x" * 4001)
    expect(page.locator("#question-help")).to_contain_text("the limit is 4,000")
    expect(page.get_by_role("button", name="Ask")).to_be_disabled()
    assert len(box.input_value()) == 4001  # nothing cut silently
    box.press("End")
    box.press("Backspace")
    expect(page.get_by_role("button", name="Ask")).to_be_enabled()
    expect(page.locator("#question-help")).not_to_contain_text("the limit")


def test_the_keyboard_reaches_the_question_box_and_opens_cited_passages(page, live_server, owner, handbook):
    log_in(page, live_server.url, "olivia", "owner-pass-123")
    page.goto(f"{live_server.url}/bots/{handbook.slug}/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the question box")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("textarea[name=message]")).to_be_focused()

    ask(page, QUESTIONS[0], count=1)
    answer = page.locator("article.message.assistant").last
    source = answer.locator(".sources li").first
    expect(source.locator("details")).not_to_have_attribute("open", "")
    answer.locator("a.cite").first.focus()
    page.keyboard.press("Enter")
    expect(source.locator("details")).to_have_attribute("open", "")
    expect(source.locator(".passage")).to_be_focused()
    expect(source.locator(".passage")).to_contain_text("16 weeks of paid parental leave")


def test_a_phone_shows_the_whole_conversation_and_the_question_box_without_sideways_scrolling(
    page, live_server, owner, member, handbook
):
    services.share_bot(handbook, username="mike")  # the Sharing tab lists a share
    log_in(page, live_server.url, "olivia", "owner-pass-123")
    page.goto(f"{live_server.url}/bots/{handbook.slug}/")
    for number, question in enumerate(QUESTIONS[:3], start=1):
        ask(page, question, count=number)
    conversation = services.conversations_of(handbook, owner).get()

    for width in (390, 320):
        page.set_viewport_size({"width": width, "height": 800})
        for path in ("", "sharing/", "settings/", "knowledge/"):
            page.goto(f"{live_server.url}/bots/{handbook.slug}/{path}")
            assert page.evaluate("document.documentElement.scrollWidth") <= width, (width, path)
            # Nothing is cut off inside a card either: every control is wholly on screen and usable.
            offscreen = page.evaluate(CUT_OFF_CONTROLS, width)
            assert offscreen == [], (width, path, offscreen)
        page.goto(f"{live_server.url}/bots/{handbook.slug}/conversations/{conversation.pk}/")
        page.locator("article.message.assistant .sources summary").first.click()
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        box = page.locator("textarea[name=message]").bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= 800, box  # in sight without scrolling to it
        page.evaluate("window.scrollTo(0, 0)")
        box = page.locator("textarea[name=message]").bounding_box()
        assert box["y"] + box["height"] <= 800, box


def test_a_new_bot_opens_on_knowledge_and_its_chat_says_it_has_no_documents_yet(page, live_server, owner, member):
    log_in(page, live_server.url, "olivia", "owner-pass-123")
    page.fill("input[name=name]", "Travel policy")
    page.click("button:has-text('Create bot')")
    expect(page).to_have_url(re.compile(r"/knowledge/$"))
    expect(page.locator("#dropzone")).to_be_visible()

    page.get_by_role("link", name="Chat").click()
    expect(page.locator("#no-documents")).to_contain_text("no documents")
    page.locator("#no-documents").get_by_role("link", name="add documents in Knowledge").click()
    expect(page).to_have_url(re.compile(r"/knowledge/$"))
    page.go_back()
    ask(page, "Can I fly business class?", count=1)
    expect(page.locator("article.message.assistant .answer")).to_contain_text("This bot has no documents yet")
    expect(page.locator("article.message.assistant")).not_to_contain_text("couldn't find")

    # A chat-only colleague is told too, without a link they could not follow.
    from bots.models import Bot

    services.share_bot(Bot.objects.get(name="Travel policy"), username="mike")
    page.get_by_role("button", name="Log out olivia").click()
    log_in(page, live_server.url, "mike", "member-pass-123")
    page.get_by_role("link", name="Travel policy").click()
    expect(page.locator("#no-documents")).to_contain_text("Ask its owner")
    expect(page.locator("#no-documents a")).to_have_count(0)


def test_a_chat_only_colleague_sees_sources_but_no_scores_and_no_document_pages(page, live_server, member, handbook):
    services.share_bot(handbook, username="mike")
    log_in(page, live_server.url, "mike", "member-pass-123")
    page.goto(f"{live_server.url}/bots/{handbook.slug}/")
    ask(page, QUESTIONS[2], count=1)
    answer = page.locator("article.message.assistant")
    expect(answer.locator(".sources li").first).to_contain_text("printers.txt")
    answer.locator("a.cite").first.click()
    expect(answer.locator(".passage").first).to_contain_text("paper tray is empty")
    expect(answer.locator("details.why")).to_have_count(0)
    expect(page.get_by_role("link", name="Knowledge")).to_have_count(0)
    expect(page.locator("a[href^='/documents/']")).to_have_count(0)
