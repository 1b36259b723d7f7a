"""Stored sentence vectors: an extractive answer embeds only its question, and says the same as before.

Also: questions are embedded without torch, so the web process never loads it.
"""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from retrieval import answering, sentences
from retrieval.answerers import scoring_texts
from retrieval.embedders import ONNX_FP32, TORCH, get_embedder, get_query_embedder
from tests.conftest import database_url

ROOT = Path(__file__).resolve().parents[2]
HANDBOOK = {
    "leave.md": (
        "# Leave\n\nFull-time employees receive 25 days of paid vacation per calendar year. "
        "Unused days expire on 31 March of the following year.\n\n"
        "## Sick leave\n\nA doctor's note is needed from the fourth day of absence."
    ),
    "printer.txt": "Printer error E-4417 means tray 2 is open. Close the tray firmly and press Resume.",
    "canteen.txt": "The canteen opens at 11:30 and serves a vegetarian menu every day of the week.",
}
QUESTIONS = [
    "How many vacation days do employees get?",
    "What does printer error E-4417 mean?",
    "When do I need a doctor's note?",
    "What is the capital of Peru?",
]


def _answers(bot):
    return [answering.answer(bot, question)[0] for question in QUESTIONS]


@pytest.mark.django_db
def test_with_sentence_vectors_stored_an_answer_embeds_nothing_but_its_question(bot, index_texts, monkeypatch):
    index_texts(bot, HANDBOOK)
    before = _answers(bot)  # nothing stored yet: the answerer embeds the passages' sentences itself

    assert sentences.fill_sentence_vectors(yield_to_ingestion=False) == len(HANDBOOK)
    encoded = []
    monkeypatch.setattr(answering, "embed_queries", lambda texts, model=None: encoded.append(texts))
    after = _answers(bot)

    assert encoded == []
    assert [answer.text for answer in after] == [answer.text for answer in before]
    assert [answer.refused for answer in after] == [False, False, False, True]


@pytest.mark.django_db
def test_stored_vectors_of_texts_that_changed_are_ignored(bot, index_texts):
    from documents.models import Chunk

    ids = index_texts(bot, HANDBOOK)
    sentences.fill_sentence_vectors(yield_to_ingestion=False)
    chunk = Chunk.objects.get(pk=ids["canteen.txt"])
    hit = answering.search(bot, "canteen opening hours", k=1).chunks
    assert set(sentences.stored_vectors(hit, 384)) == set(scoring_texts(chunk.text))

    Chunk.objects.filter(pk=chunk.pk).update(text="The canteen opens at noon. It closes at two in the afternoon.")
    hit = answering.search(bot, "canteen opening hours", k=1).chunks
    assert sentences.stored_vectors(hit, 384) == {}


@pytest.mark.django_db
def test_the_fill_leaves_the_worker_to_ingestion_while_documents_wait(bot, index_texts):
    from documents.models import Chunk, Document

    index_texts(bot, HANDBOOK)
    Document.objects.create(bot=bot, filename="queued.txt", status="queued")
    assert sentences.fill_sentence_vectors() == 0
    assert not Chunk.objects.filter(sentence_vectors__isnull=False).exists()


@pytest.mark.django_db(transaction=True)
def test_the_worker_fills_sentence_vectors_when_beat_asks(bot, index_texts, celery_worker):
    from documents.models import Chunk
    from retrieval.tasks import fill_sentence_vectors

    index_texts(bot, HANDBOOK)
    fill_sentence_vectors.delay()
    deadline = time.monotonic() + 60
    while Chunk.objects.filter(bot=bot, sentence_vectors__isnull=True).exists():
        assert time.monotonic() < deadline, "the worker did not store sentence vectors"
        time.sleep(0.2)


def test_a_torch_model_embeds_questions_with_its_fp32_onnx_twin():
    questions = ["How many vacation days do employees get?", "What does printer error E-4417 mean?"]
    query_embedder = get_query_embedder()
    assert query_embedder.backend == ONNX_FP32
    cosines = (query_embedder.encode(questions) * get_embedder(backend=TORCH).encode(questions)).sum(axis=1)
    assert np.all(cosines > 0.9999)


@pytest.mark.django_db(transaction=True)
def test_answering_a_question_does_not_import_torch(bot, index_texts):
    """What the web process does per question, in a fresh interpreter: search, answer, trace."""
    from django.conf import settings
    from django.db import connection

    index_texts(bot, HANDBOOK)
    get_query_embedder()  # the export exists, as after the server's warm-up
    script = (
        "import sys, django\n"
        "django.setup()\n"
        "import config.urls\n"
        "from bots.models import Bot\n"
        "from retrieval import services\n"
        f"answer, _ = services.answer(Bot.objects.get(pk={bot.pk}), 'What does printer error E-4417 mean?')\n"
        "assert 'E-4417' in answer.text, answer.text\n"
        "print(sorted(name for name in ('torch', 'transformers', 'sentence_transformers') if name in sys.modules))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DOCENT_DATA_DIR": str(settings.DATA_DIR),
        "HF_HUB_OFFLINE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.django_db
def test_a_fill_run_that_stops_for_time_with_chunks_left_sends_itself_again(bot, index_texts, settings, monkeypatch):
    from celery.signals import before_task_publish

    from retrieval import tasks

    index_texts(bot, {f"note-{i}.txt": f"Note {i} says the meeting room {i} has a projector." for i in range(3)})
    sent = []

    def record(sender=None, **kwargs):
        sent.append(sender)

    monkeypatch.setattr(sentences, "FILL_BATCH", 1)
    before_task_publish.connect(record)
    try:
        settings.DOCENT_SENTENCE_FILL_SECONDS = 0  # every run stops after its first batch
        tasks.fill_sentence_vectors()  # one chunk filled, two left: it goes on in a new run
        assert sent == ["retrieval.tasks.fill_sentence_vectors"]

        settings.DOCENT_SENTENCE_FILL_SECONDS = 3600
        sent.clear()
        tasks.fill_sentence_vectors()  # the rest, well within its time: nothing left to send
        assert sent == []
    finally:
        before_task_publish.disconnect(record)
