"""Fine-tuning a bot's embedding model: training in the worker, the held-out verdict, promotion, removal."""

import json
import shutil
import time

import numpy as np
import pytest

from bots import services as bots
from bots.models import Bot, BotShare
from documents import services as documents
from evaluation import finetuning, services
from evaluation.models import FineTune
from tests.conftest import api_client_for

# Six workplace documents, and the nicknames staff use for them, which appear in no document:
# the shipped model can only guess which document "the Pit" means; a fine-tune learns it.
DOCUMENTS = {
    "canteen.txt": "The staff restaurant on the ground floor serves a hot lunch from 11:30 to 14:00 on weekdays. "
    "A vegetarian dish is offered every day, and payment is by badge only.",
    "parking.txt": "The underground garage has 120 spaces for employees. "
    "Spaces are assigned by the facilities team, and electric cars charge for free on level -2.",
    "laptops.txt": "Company laptops are replaced every four years. "
    "A broken screen or keyboard is repaired by the IT service desk within two working days.",
    "travel.txt": "Business trips are booked through the travel portal at least two weeks ahead. "
    "Train is preferred over flights for journeys under five hours.",
    "gym.txt": "The fitness room in building C is open from 06:00 to 22:00. "
    "Towels are provided and lockers must be emptied every evening.",
    "library.txt": "The reading room lends books and journals for up to three weeks. "
    "Rare volumes stay in the room and can be scanned on request.",
}
NICKNAMES = {
    "canteen.txt": "the Trough", "parking.txt": "the Pit", "laptops.txt": "the Brick",
    "travel.txt": "the Jaunt", "gym.txt": "the Sweatbox", "library.txt": "the Vault",
}  # fmt: skip
QUESTIONS = [
    "When can I use {}?",
    "Who is in charge of {}?",
    "What are the rules for {}?",
    "Is there anything I should know about {}?",
    "How do I get access to {}?",
]
JARGON_CASES = [
    {"question": question.format(nickname), "expected_documents": [name]}
    for name, nickname in NICKNAMES.items()
    for question in QUESTIONS
]


def wait_for_fine_tune(client, fine_tune_id: int, timeout: float = 240) -> tuple[dict, list[float]]:
    """Poll the API until the fine-tune is final; returns it and the progress values seen while running."""
    deadline, seen = time.monotonic() + timeout, []
    while True:
        body = client.get(f"/api/v1/fine-tunes/{fine_tune_id}").json()
        if body["status"] == "running":
            seen.append(body["progress"])
        if body["status"] in {"done", "failed"}:
            return body, seen
        if time.monotonic() > deadline:
            raise AssertionError(f"fine-tune still {body['status']} at {body['progress']} after {timeout}s")
        time.sleep(0.2)


def wait_for_reindex(bot, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while documents.reindex_progress(Bot.objects.get(pk=bot.pk)) != (len(DOCUMENTS), len(DOCUMENTS)):
        if time.monotonic() > deadline:
            raise AssertionError("the bot was not re-embedded in time")
        time.sleep(0.25)


def ask(client, bot, question: str) -> dict:
    answer = client.post(f"/api/v1/bots/{bot.id}/chat", {"message": question}, content_type="application/json")
    assert answer.status_code == 200, answer.content
    return answer.json()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_fine_tune_learns_the_bots_jargon_and_promotion_re_embeds_the_bot_while_it_answers(
    bot, owner_api, index_texts
):
    index_texts(bot, DOCUMENTS)
    test_set = services.create_test_set(bot, "Jargon", JARGON_CASES)

    started = owner_api.post(
        f"/api/v1/bots/{bot.id}/fine-tunes", {"test_set": test_set.id, "epochs": 1}, content_type="application/json"
    )
    assert started.status_code == 202, started.content
    fine_tune, progress_seen = wait_for_fine_tune(owner_api, started.json()["id"])

    assert fine_tune["status"] == "done", fine_tune["error"]
    assert fine_tune["progress"] == 1.0 and fine_tune["steps_done"] == fine_tune["steps_total"] > 0
    assert any(0 < progress < 1 for progress in progress_seen), progress_seen
    assert progress_seen == sorted(progress_seen)
    assert (fine_tune["pairs_source"], fine_tune["held_out_count"]) == ("test-set", 9)
    assert fine_tune["pair_count"] == len(JARGON_CASES) - 9
    for metrics in (fine_tune["baseline"], fine_tune["candidate"]):
        assert set(finetuning.REPORTED) <= set(metrics) and metrics["cases"] == 9
    assert fine_tune["candidate"]["ndcg@10"] > fine_tune["baseline"]["ndcg@10"]
    assert fine_tune["candidate"]["hit@1"] > fine_tune["baseline"]["hit@1"]
    assert fine_tune["promotable"] is True
    row = FineTune.objects.get(pk=fine_tune["id"])
    stored = json.loads((row.folder / "metrics.json").read_text())
    assert (stored["baseline"], stored["candidate"]) == (fine_tune["baseline"], fine_tune["candidate"])
    assert row.model_path == f"{bot.slug}-ft-{row.pk}" and (row.folder / "config.json").exists()

    promoted = owner_api.post(f"/api/v1/fine-tunes/{row.pk}/promote")
    assert promoted.status_code == 200, promoted.content
    assert promoted.json() | {"config_version": None} == {
        "fine_tune": row.pk, "embedding_model": row.model_path, "dimensions": 384, "config_version": None,
        "index_version": 2,
    }  # fmt: skip
    bot.refresh_from_db()
    assert bot.embedding_model.name == row.model_path
    # The old index answers while the worker re-embeds every document with the new model.
    assert ask(owner_api, bot, "When does the staff restaurant serve lunch?")["citations"]

    wait_for_reindex(bot)
    assert ask(owner_api, bot, "When does the staff restaurant serve lunch?")["citations"]
    found = owner_api.post(f"/api/v1/bots/{bot.id}/search", {"query": "the Sweatbox"}, content_type="application/json")
    assert found.json()["results"][0]["document_name"] == "gym.txt"
    again = owner_api.post(f"/api/v1/fine-tunes/{row.pk}/promote")
    assert again.status_code == 409 and "already promoted" in again.json()["detail"]
    in_use = owner_api.delete(f"/api/v1/fine-tunes/{row.pk}")
    assert in_use.status_code == 409 and bot.name in in_use.json()["detail"]
    assert row.folder.exists()
    assert owner_api.get(f"/api/v1/bots/{bot.id}/fine-tunes").json()[0]["embedding_model"] == row.model_path
    shutil.rmtree(row.folder)  # the test database is emptied without deleting rows one by one


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_fine_tune_that_cannot_train_ends_failed_with_a_reason(bot, owner_api):
    started = owner_api.post(f"/api/v1/bots/{bot.id}/fine-tunes", {}, content_type="application/json")
    assert started.status_code == 202, started.content

    fine_tune, _ = wait_for_fine_tune(owner_api, started.json()["id"], timeout=60)

    assert fine_tune["status"] == "failed" and fine_tune["pairs_source"] == "inverse-cloze"
    assert "too few passages" in fine_tune["error"]
    assert fine_tune["finished_at"] is not None and FineTune.objects.get(pk=fine_tune["id"]).folder is None


@pytest.mark.django_db
def test_a_fine_tune_whose_worker_died_twice_is_failed_rather_than_started_again(bot):
    fine_tune = services.start_fine_tune(bot)  # not committed, so no worker takes it
    fine_tune.start()
    fine_tune.start()  # the task came back after the worker died

    services.run_fine_tune(fine_tune.id)

    fine_tune.refresh_from_db()
    assert fine_tune.status == "failed" and "twice" in fine_tune.error


@pytest.fixture
def models_dir(settings, tmp_path):
    """Fine-tuned models of tests that train nothing go to a temporary folder, not the data directory."""
    settings.DATA_DIR = tmp_path
    return tmp_path / "models"


def done_fine_tune(bot, *, baseline: float, candidate: float) -> FineTune:
    """A fine-tune that finished with these held-out nDCG@10 figures (no training: only its verdict matters)."""
    fine_tune = services.start_fine_tune(bot)
    fine_tune.start()
    fine_tune.prepare(pair_count=2, held_out_count=1, steps_total=1, model_path=f"{bot.slug}-ft-{fine_tune.pk}")
    fine_tune.folder.mkdir(parents=True, exist_ok=True)
    (fine_tune.folder / "metrics.json").write_text("{}")
    fine_tune.finish(
        baseline={"ndcg@10": baseline},
        candidate={"ndcg@10": candidate},
        promotable=finetuning.is_promotable({"ndcg@10": baseline}, {"ndcg@10": candidate}),
    )
    return fine_tune


@pytest.mark.django_db
@pytest.mark.usefixtures("models_dir")
def test_promotion_is_refused_until_the_fine_tune_is_done_and_better(bot, owner_api):
    queued = services.start_fine_tune(bot)
    answer = owner_api.post(f"/api/v1/fine-tunes/{queued.id}/promote")
    assert answer.status_code == 409 and "queued" in answer.json()["detail"]
    queued.fail("stopped")

    worse = done_fine_tune(bot, baseline=0.8, candidate=0.8)
    assert owner_api.get(f"/api/v1/fine-tunes/{worse.id}").json()["promotable"] is False
    answer = owner_api.post(f"/api/v1/fine-tunes/{worse.id}/promote")
    assert answer.status_code == 409
    assert answer.json()["detail"].startswith("The fine-tuned model did not beat the current one")
    bot.refresh_from_db()
    assert (bot.embedding_model_id, bot.config_version) == (None, 1)


@pytest.mark.django_db
def test_only_one_fine_tune_of_a_bot_trains_at_a_time_and_bad_input_is_a_readable_4xx(bot, owner_api):
    url = f"/api/v1/bots/{bot.id}/fine-tunes"
    other_bot = bots.create_bot(bot.owner, "Other")
    foreign = services.create_test_set(other_bot, "Theirs", [{"question": "Who?", "answerable": False}])
    answer = owner_api.post(url, {"test_set": foreign.id}, content_type="application/json")
    assert answer.status_code == 400 and "no such test set" in answer.json()["detail"]
    few = services.create_test_set(bot, "Few", [{"question": "Who?", "answerable": False}])
    answer = owner_api.post(url, {"test_set": few.id}, content_type="application/json")
    assert answer.status_code == 400 and "at least two answerable cases" in answer.json()["detail"]
    assert owner_api.post(url, {"epochs": 0}, content_type="application/json").status_code == 422

    assert owner_api.post(url, {}, content_type="application/json").status_code == 202
    answer = owner_api.post(url, {}, content_type="application/json")
    assert answer.status_code == 409 and "in progress" in answer.json()["detail"]


@pytest.mark.django_db
@pytest.mark.usefixtures("models_dir")
def test_removing_a_fine_tune_deletes_its_folder_and_row(bot, owner_api, django_capture_on_commit_callbacks):
    fine_tune = done_fine_tune(bot, baseline=0.5, candidate=0.4)
    folder = fine_tune.folder
    running = services.start_fine_tune(other_bot := bots.create_bot(bot.owner, "Busy"))
    running.start()

    with django_capture_on_commit_callbacks(execute=True):
        answer = owner_api.delete(f"/api/v1/fine-tunes/{fine_tune.id}")

    assert answer.status_code == 204
    assert not FineTune.objects.filter(pk=fine_tune.id).exists() and not folder.exists()
    busy = owner_api.delete(f"/api/v1/fine-tunes/{running.id}")
    assert busy.status_code == 409 and "still training" in busy.json()["detail"]
    assert other_bot.fine_tunes.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(("role", "status"), [("owner", 200), ("editor", 200), ("member", 404), ("outsider", 404)])
@pytest.mark.usefixtures("models_dir")
def test_only_editors_reach_a_bots_fine_tunes(bot, owner, member, outsider, django_user_model, role, status):
    editor = django_user_model.objects.create_user("edna", password="editor-pass-123")
    bots.share_bot(bot, username="edna", role=BotShare.Role.EDITOR)
    bots.share_bot(bot, username=member.username, role=BotShare.Role.USER)
    fine_tune = done_fine_tune(bot, baseline=0.5, candidate=0.4)
    client = api_client_for({"owner": owner, "editor": editor, "member": member, "outsider": outsider}[role])

    assert client.get(f"/api/v1/bots/{bot.id}/fine-tunes").status_code == status
    assert client.get(f"/api/v1/fine-tunes/{fine_tune.id}").status_code == status
    promote = client.post(f"/api/v1/fine-tunes/{fine_tune.id}/promote")
    assert promote.status_code == (409 if status == 200 else 404)
    started = client.post(f"/api/v1/bots/{bot.id}/fine-tunes", {}, content_type="application/json")
    assert started.status_code == (202 if status == 200 else 404)
    if status == 404:
        assert client.delete(f"/api/v1/fine-tunes/{fine_tune.id}").status_code == 404
        assert FineTune.objects.filter(pk=fine_tune.id).exists()


# --- The pure parts: pairs, the split, the rule ----------------------------------------


def test_a_test_set_is_split_into_training_and_held_out_cases_that_never_overlap():
    cases = [finetuning.LabelledQuestion(n, f"Question {n}?", {n % 3: 1}) for n in range(10)]
    cases.append(finetuning.LabelledQuestion("none", "Unanswerable?", {}))

    training, held_out = finetuning.split_cases(cases)

    assert len(held_out) == 3 and len(training) == 7
    assert {case.case_id for case in training}.isdisjoint(case.case_id for case in held_out)
    assert "none" not in {case.case_id for case in training + held_out}
    assert finetuning.split_cases(cases) == (training, held_out)  # the same split every time
    with pytest.raises(ValueError, match="at least two answerable"):
        finetuning.split_cases(cases[:1])


def test_pairs_from_a_test_set_embed_each_question_once_and_only_the_sampled_documents_passages():
    """A BEIR query judges dozens of documents: encoding per (question, document) took minutes on nfcorpus."""
    passages = [finetuning.Passage(n, n // 2, f"Passage {n} of document {n // 2}.") for n in range(400)]
    judged = dict.fromkeys(range(50), 1)
    cases = [finetuning.LabelledQuestion(n, f"Question {n}?", judged) for n in range(20)]
    encoded: list[str] = []

    def encode(texts: list[str]):
        encoded.extend(texts)
        return np.random.default_rng(len(encoded)).normal(size=(len(texts), 8))

    data = finetuning.test_set_data(cases, passages, encode, max_pairs=30)

    assert len(data.pairs) == 30
    questions = [text for text in encoded if text.startswith("Question")]
    assert len(questions) == len(set(questions)) <= 14  # the training cases, each once
    documents = {pair.positive.rsplit(" ", 1)[-1].rstrip(".") for pair in data.pairs}
    assert len([text for text in encoded if text.startswith("Passage")]) <= 2 * len(documents) <= 60
    for pair in data.pairs:  # the positive is a passage of a document the question judges relevant
        assert int(pair.positive.rsplit(" ", 1)[-1].rstrip(".")) < 50


def test_inverse_cloze_asks_a_sentence_and_leaves_it_out_of_its_passage():
    passages = [
        finetuning.Passage(n, f"doc{n}", f"Topic {n} has a first sentence with words. Topic {n} has a second one here.")
        for n in range(10)
    ]

    data = finetuning.inverse_cloze_data(passages)

    assert len(data.held_out) == 2 and len(data.pairs) == 16  # two sentences of each of the other eight
    for pair in data.pairs:
        assert pair.query not in pair.positive and pair.query.split()[1] in pair.positive
    corpus = {passage.chunk_id: passage.text for passage in data.corpus}
    for case in data.held_out:
        assert case.question not in corpus[case.case_id]
        assert case.relevant == {f"doc{case.case_id}": 1}
    with pytest.raises(ValueError, match="too few passages"):
        finetuning.inverse_cloze_data(passages[:3])


@pytest.mark.parametrize(
    ("baseline", "candidate", "promotable"),
    [(0.5, 0.6, True), (0.5, 0.5, False), (0.6, 0.5, False), (None, 0.5, False), (0.5, None, False)],
)
def test_only_a_higher_held_out_ndcg_makes_a_fine_tune_promotable(baseline, candidate, promotable):
    assert finetuning.is_promotable({"ndcg@10": baseline}, {"ndcg@10": candidate}) is promotable


def test_documents_are_ranked_by_their_best_passage():
    import numpy as np

    passages = [finetuning.Passage(1, "a", ""), finetuning.Passage(2, "b", ""), finetuning.Passage(3, "a", "")]
    vectors = np.array([[0.1, 0.0], [0.5, 0.0], [0.9, 0.0]])

    assert finetuning.rank_documents(np.array([[1.0, 0.0]]), vectors, passages) == [["a", "b"]]
