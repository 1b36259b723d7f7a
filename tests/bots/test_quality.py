"""The Quality tab in the browser's terms: forms in, pages out (the worker's path is in tests/evaluation)."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from bots import services as bots
from bots.models import Conversation, Feedback, Message
from evaluation import services as evaluation
from evaluation.models import EvaluationRun, TestCase, TestSet
from retrieval import services as retrieval
from tests.conftest import make_builder

HANDBOOK = {
    "canteen.txt": "The canteen opens at 11:30 on weekdays and serves lunch until 14:00.",
    "vacation.txt": "Full-time employees receive 25 days of paid vacation per calendar year.",
    "printer.txt": "Printer error E-4417 means the toner cartridge is empty; replace the cartridge.",
}
CASES = [
    {"question": "When does the canteen open?", "expected_documents": ["canteen.txt"]},
    {"question": "What does printer error E-4417 mean?", "expected_documents": ["printer.txt"]},
    {"question": "Which football club won the 1954 World Cup final?", "answerable": False},
]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def url(name: str, *args) -> str:
    return reverse(f"bots:{name}", args=args)


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.fixture
def handbook_bot(bot, index_texts):
    index_texts(bot, HANDBOOK)
    return bot


@pytest.mark.django_db
def test_a_typed_test_set_is_created_extended_corrected_and_pruned_from_forms(handbook_bot, owner):
    client, slug = client_for(owner), handbook_bot.slug

    response = client.post(
        url("test-set-create", slug),
        {"name": "Basics", "question": "When does the canteen open?", "answerable": "on",
         "expected_documents": ["canteen.txt"]},
    )  # fmt: skip
    test_set = TestSet.objects.get(bot=handbook_bot, name="Basics")
    assert response.status_code == 302 and response["Location"] == url("test-set", slug, test_set.pk)

    response = client.post(
        url("test-set", slug, test_set.pk),
        {"question": "Who won the 1954 World Cup?", "expected_documents": [], "reference_answer": ""},
    )  # answerable unticked: an unanswerable case
    assert response.status_code == 302
    added = test_set.cases.get(question="Who won the 1954 World Cup?")
    assert (added.answerable, added.generator, added.position) == (False, "typed", 1)

    # An answerable case without its documents is refused with the reason, and nothing is stored.
    response = client.post(url("test-set", slug, test_set.pk), {"question": "Lunch?", "answerable": "on"})
    assert response.status_code == 200 and "names no expected document" in text_of(response)
    assert test_set.cases.count() == 2

    first = test_set.cases.get(position=0)
    response = client.post(
        url("case", slug, test_set.pk, first.pk),
        {"question": "Until when is lunch served?", "answerable": "on", "expected_documents": ["canteen.txt"],
         "pages": "1"},
    )  # fmt: skip
    first.refresh_from_db()
    assert response.status_code == 302 and (first.question, first.pages) == ("Until when is lunch served?", [1])

    client.post(url("case-delete", slug, test_set.pk, added.pk))
    assert list(test_set.cases.values_list("question", flat=True)) == ["Until when is lunch served?"]
    page = text_of(client.get(url("test-set", slug, test_set.pk)))
    assert "Until when is lunch served?" in page and "canteen.txt" in page and "1954" not in page


@pytest.mark.django_db
def test_importing_a_file_from_the_tab_makes_a_set_and_a_bad_file_says_why(handbook_bot, owner):
    client, slug = client_for(owner), handbook_bot.slug
    csv_file = b"question,expected_documents,answerable\nWhen does the canteen open?,canteen.txt,yes\nWho won?,,no\n"
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(url("test-set-import", slug), {"file": SimpleUploadedFile("from-sheet.csv", csv_file)})
    test_set = TestSet.objects.get(bot=handbook_bot, name="from-sheet")
    assert response["Location"] == url("test-set", slug, test_set.pk)
    assert [case.generator for case in test_set.cases.all()] == ["csv", "csv"]

    bad = SimpleUploadedFile("broken.csv", b"question,expected_documents\nWhat?,missing.pdf\n")
    response = client.post(url("test-set-import", slug), {"file": bad}, follow=True)
    assert "broken.csv was not imported" in text_of(response) and "missing.pdf" in text_of(response)
    assert not TestSet.objects.filter(name="broken").exists()


@pytest.mark.django_db
def test_a_finished_run_shows_its_metrics_cases_and_a_chart_once_there_are_two(handbook_bot, owner):
    client, slug = client_for(owner), handbook_bot.slug
    test_set = evaluation.create_test_set(handbook_bot, "Basics", CASES)
    first = evaluation.start_run(test_set)
    evaluation.execute_run(first.id)

    page = text_of(client.get(url("run", slug, first.pk)))
    assert 'data-status="done"' in page and "nDCG@10" in page and "Refusal accuracy" in page
    assert "When does the canteen open?" in page and "rank 1" in page
    quality = text_of(client.get(url("quality", slug)))
    assert f"#{first.pk}" in quality and "after two finished runs" in quality

    bots.update_bot(handbook_bot, owner, {"top_k": 3})
    second = evaluation.start_run(test_set)
    evaluation.execute_run(second.id)
    quality = text_of(client.get(url("quality", slug)))
    assert quality.count("<polyline") == 6  # one line per charted metric
    assert f"#{second.pk} · v2" in quality


@pytest.mark.django_db
def test_the_status_fragment_polls_until_the_run_is_final_then_reloads_the_page(handbook_bot, owner):
    client, slug = client_for(owner), handbook_bot.slug
    run = evaluation.start_run(evaluation.create_test_set(handbook_bot, "Basics", CASES))

    fragment = client.get(url("run", slug, run.pk) + "?part=status", HTTP_HX_REQUEST="true")
    assert 'hx-trigger="every 1s"' in fragment.content.decode() and "0 of 3 cases" in text_of(fragment)

    evaluation.execute_run(run.id)
    fragment = client.get(url("run", slug, run.pk) + "?part=status", HTTP_HX_REQUEST="true")
    assert fragment["HX-Refresh"] == "true"


@pytest.mark.django_db
def test_comparing_two_runs_shows_deltas_the_settings_diff_and_the_changed_cases(handbook_bot, owner):
    client, slug = client_for(owner), handbook_bot.slug
    test_set = evaluation.create_test_set(handbook_bot, "Basics", CASES)
    before = evaluation.start_run(test_set)
    evaluation.execute_run(before.id)
    # Refusing everything: the answerable cases regress (wrong refusals), the unanswerable one stays right.
    bots.update_bot(handbook_bot, owner, {"refusal_threshold": 1.0})
    after = evaluation.start_run(test_set)
    evaluation.execute_run(after.id)

    page = text_of(client.get(url("compare", slug) + f"?a={before.pk}&b={after.pk}"))

    assert "Refusal threshold" in page and "0.25" in page and "1.0" in page
    assert re.search(r"Wrong refusals</td><td>0.000</td><td>1.000</td><td class=\"worse\">\+1.000", page)
    regressed = page.split('id="regressed"')[1].split("</section>")[0]
    assert "When does the canteen open?" in regressed and "now refused" in regressed
    assert "Worse (2)" in page


@pytest.mark.django_db
def test_a_thumbs_down_becomes_a_case_once_and_waits_for_its_documents(handbook_bot, owner, member):
    bots.share_bot(handbook_bot, username=member.username)
    conversation = Conversation.objects.create(bot=handbook_bot, user=member)
    question = Message.objects.create(conversation=conversation, role="user", text="Is the canteen open on Sunday?")
    answer, trace = retrieval.answer(handbook_bot, question.text, asked_by=member)
    reply = Message.objects.create(
        conversation=conversation, role="assistant", text=answer.text, trace=trace, in_reply_to=question
    )
    feedback = Feedback.objects.create(message=reply, user=member, rating=-1, comment="It is closed")
    client, slug = client_for(owner), handbook_bot.slug
    assert "Make it a test case" in text_of(client.get(url("quality", slug)))

    response = client.post(url("feedback-case", slug, feedback.pk))
    case = TestCase.objects.get(test_set__bot=handbook_bot, generator="feedback")
    assert response["Location"] == url("case", slug, case.test_set_id, case.pk)
    assert (case.question, case.answerable, case.test_set.name) == (question.text, True, "From feedback")
    client.post(url("feedback-case", slug, feedback.pk))
    assert TestCase.objects.filter(test_set__bot=handbook_bot).count() == 1

    page = text_of(client.get(url("test-set", slug, case.test_set_id)))
    assert "name no document yet" in page or "names no document yet" in page
    client.post(
        url("case", slug, case.test_set_id, case.pk),
        {"question": case.question, "answerable": "on", "expected_documents": ["canteen.txt"]},
    )
    assert list(case.expected_documents.values_list("filename", flat=True)) == ["canteen.txt"]
    # The member who chats with the bot may not turn feedback into cases.
    assert client_for(member).post(url("feedback-case", slug, feedback.pk)).status_code == 404


@pytest.mark.django_db
def test_evaluate_after_every_change_runs_the_default_set_against_the_new_version(handbook_bot, owner):
    test_set = evaluation.create_test_set(handbook_bot, "Basics", CASES)
    bots.update_bot(handbook_bot, owner, {"top_k": 4})
    assert not EvaluationRun.objects.exists()  # off by default

    client, slug = client_for(owner), handbook_bot.slug
    client.post(url("test-set-default", slug, test_set.pk))
    form = client.get(url("settings", slug)).context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None and name in form.fields}
    response = client.post(url("settings", slug), data | {"evaluate_on_change": "on", "top_k": 6})
    assert response.status_code == 302

    run = EvaluationRun.objects.get()
    handbook_bot.refresh_from_db()
    assert (run.test_set, run.config_version, handbook_bot.config_version) == (test_set, 3, 3)
    bots.update_bot(handbook_bot, owner, {"evaluate_on_change": False})
    assert EvaluationRun.objects.count() == 1


@pytest.mark.django_db
def test_a_run_waits_while_a_settings_change_re_indexes_the_documents(handbook_bot, owner):
    test_set = evaluation.create_test_set(handbook_bot, "Basics", CASES)
    bots.update_bot(handbook_bot, owner, {"chunk_size_tokens": 120})  # re-indexing is queued, not done
    run = evaluation.start_run(test_set)

    assert evaluation.waiting_for_index(run.id)
    page = text_of(client_for(owner).get(url("run", handbook_bot.slug, run.pk)))
    assert "finish indexing" in page

    from documents import services as documents

    documents.reindex_bot(handbook_bot.id)
    assert not evaluation.waiting_for_index(run.id)


@pytest.mark.django_db
def test_nobody_but_editors_reaches_the_quality_pages(handbook_bot, owner, member, outsider):
    bots.share_bot(handbook_bot, username=member.username)
    test_set = evaluation.create_test_set(handbook_bot, "Basics", CASES)
    run = evaluation.start_run(test_set)
    case = test_set.cases.first()
    slug = handbook_bot.slug
    pages = [
        url("quality", slug), url("test-set", slug, test_set.pk), url("run", slug, run.pk),
        url("case", slug, test_set.pk, case.pk), url("compare", slug) + f"?a={run.pk}&b={run.pk}",
    ]  # fmt: skip
    posts = [url("run-start", slug, test_set.pk), url("test-set-delete", slug, test_set.pk)]
    for user in (member, outsider):
        client = client_for(user)
        assert [client.get(page).status_code for page in pages] == [404] * len(pages)
        assert [client.post(page).status_code for page in posts] == [404] * len(posts)
    assert TestSet.objects.filter(pk=test_set.pk).exists() and EvaluationRun.objects.count() == 1
    # Another bot's editor can't reach this bot's set through their own bot's URLs either.
    other = bots.create_bot(make_builder(outsider), "Other")
    response = client_for(outsider).get(url("test-set", other.slug, test_set.pk))
    assert response.status_code == 404


@pytest.mark.django_db
def test_everything_a_user_typed_is_escaped_on_the_quality_pages(handbook_bot, owner):
    script = "<script>alert(1)</script>"
    test_set = evaluation.create_test_set(
        handbook_bot, f"Set {script}", [{"question": f"Canteen {script}?", "expected_documents": ["canteen.txt"]}]
    )
    run = evaluation.start_run(test_set)
    evaluation.execute_run(run.id)
    client = client_for(owner)
    for page in (url("quality", handbook_bot.slug), url("test-set", handbook_bot.slug, test_set.pk),
                 url("run", handbook_bot.slug, run.pk)):  # fmt: skip
        body = client.get(page).content.decode()
        assert script not in body and "&lt;script&gt;" in body


@pytest.mark.django_db
def test_a_fine_tune_is_started_followed_and_removed_from_the_tab_and_promotion_waits_for_a_better_model(
    handbook_bot, owner
):
    client, slug = client_for(owner), handbook_bot.slug
    test_set = evaluation.create_test_set(handbook_bot, "Basics", CASES)

    response = client.post(url("fine-tune-start", slug), {"test_set": str(test_set.pk), "epochs": "2"})
    fine_tune = evaluation.fine_tunes_of_bots([handbook_bot]).get()
    assert response.status_code == 302 and (fine_tune.test_set, fine_tune.epochs) == (test_set, 2)
    fragment = client.get(url("fine-tunes-table", slug), HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in fragment and "<progress" in fragment and "Basics" in fragment

    page = text_of(client.post(url("fine-tune-start", slug), {"epochs": "1"}, follow=True))
    assert "already has a fine-tune in progress" in page
    page = text_of(client.post(url("fine-tune-promote", slug, fine_tune.pk), follow=True))
    assert "only a finished one can be promoted" in page
    handbook_bot.refresh_from_db()
    assert handbook_bot.config_version == 1  # nothing switched

    fine_tune.fail("Stopped for the test.")
    fragment = client.get(url("fine-tunes-table", slug), HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in fragment and "Stopped for the test." in fragment
    client.post(url("fine-tune-delete", slug, fine_tune.pk))
    assert not evaluation.fine_tunes_of_bots([handbook_bot]).exists()


@pytest.mark.django_db
def test_the_comparison_names_settings_and_models_as_people_know_them(handbook_bot, owner, chat_server):
    from retrieval.models import LLMProvider

    test_set = evaluation.create_test_set(handbook_bot, "Basics", CASES)
    before = evaluation.start_run(test_set)
    evaluation.execute_run(before.id)
    chat_server.reply = '{"faithfulness": 1, "relevance": 1, "reasoning": "Quoted from the passage."}'
    judge = LLMProvider.objects.create(name="House judge", base_url=chat_server.base_url)
    bots.update_bot(handbook_bot, owner, {"judge_provider": judge, "top_k": 4})
    after = evaluation.start_run(test_set)
    evaluation.execute_run(after.id)

    page = text_of(client_for(owner).get(url("compare", handbook_bot.slug) + f"?a={before.pk}&b={after.pk}"))
    diff = page.split('id="config-diff"')[1].split("</section>")[0]
    assert "Judge for test runs" in diff and "House judge" in diff and "Passages per answer" in diff
    assert f">{judge.pk}<" not in diff


@pytest.mark.django_db
def test_a_runs_answers_are_traced_for_its_cases_but_are_not_counted_as_use_of_the_bot(handbook_bot, owner):
    from retrieval.usage import usage

    client = client_for(owner)
    retrieval.answer(handbook_bot, "When does the canteen open?", asked_by=owner)  # one real question
    run = evaluation.start_run(evaluation.create_test_set(handbook_bot, "Basics", CASES), started_by=owner)
    evaluation.execute_run(run.id)

    case = evaluation.case_results(run)[0]
    assert case["trace_id"] is not None
    assert client.get(url("trace-panel", case["trace_id"])).status_code == 200
    assert text_of(client.get(url("run", handbook_bot.slug, run.pk))).count("Why this answer?") == len(CASES)
    assert retrieval.traces_of_bots([handbook_bot]).count() == 1
    assert "<strong>1</strong> answers" in text_of(client.get(url("quality", handbook_bot.slug)))
    assert sum(usage([handbook_bot]).totals.questions_per_day) == 1
