"""One question gets exactly one answer and one trace, however many readers stream it at once.

Six parallel GETs of one answer stream used to run the pipeline six times: five ended
in an IntegrityError on the reply's unique `in_reply_to`, and six traces were stored.
"""

from __future__ import annotations

import re
import threading

import pytest
from django.db import connection
from django.test import Client

from bots import services
from bots.models import Message
from retrieval.models import Trace
from tests.conftest import index_texts_into

READERS = 6


def read_stream(client: Client, url: str) -> tuple[int, str]:
    response = client.get(url)
    body = b"".join(response.streaming_content).decode()
    response.close()
    return response.status_code, body


def answer_in(body: str) -> str:
    """The answer paragraph of the stream's "done" event (the rest holds each reader's CSRF token)."""
    event = body.split("event: done\n", 1)[1].split("\n\n", 1)[0]
    html = "\n".join(line.removeprefix("data: ") for line in event.split("\n"))
    return re.search(r'<article class="message assistant" id="message-\d+">\s*<p class="answer">.*?</p>', html, re.S)[0]


@pytest.mark.django_db(transaction=True)
def test_six_parallel_readers_of_one_question_get_one_answer_and_one_trace(owner, bot):
    index_texts_into(bot, {"leave.txt": "Full-time employees receive 25 days of paid vacation per calendar year."})
    question = services.post_question(bot, owner, "How many vacation days do employees get?")
    url = f"/bots/{bot.slug}/questions/{question.pk}/answer/"
    start = threading.Barrier(READERS)
    results: list[tuple[int, str] | BaseException] = []

    def reader():
        client = Client()
        client.force_login(owner)
        start.wait()
        try:
            results.append(read_stream(client, url))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reader) for _ in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert len(results) == READERS
    assert all(not isinstance(result, BaseException) for result in results), results
    assert [status for status, _ in results] == [200] * READERS
    assert Message.objects.filter(in_reply_to=question).count() == 1
    assert Trace.objects.filter(bot=bot).count() == 1
    reply = Message.objects.get(in_reply_to=question)
    assert "25 days" in reply.text
    answers = {answer_in(body) for _, body in results}
    assert len(answers) == 1
    assert f'id="message-{reply.pk}"' in answers.pop()


@pytest.mark.django_db(transaction=True)
def test_a_reader_after_the_answer_replays_the_stored_reply_without_new_work(owner, bot):
    index_texts_into(bot, {"leave.txt": "Full-time employees receive 25 days of paid vacation per calendar year."})
    question = services.post_question(bot, owner, "How many vacation days do employees get?")
    first = list(services.answer_stream(question))
    again = list(services.answer_stream(question))
    assert [event.kind for event in again] == ["done"]
    assert again[0].message.pk == first[-1].message.pk
    assert Trace.objects.filter(bot=bot).count() == 1
