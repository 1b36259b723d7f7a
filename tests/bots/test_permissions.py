"""Owner sees everything of their bot; an outsider gets 404 for all of it, in the API and the pages."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from documents import services as documents

pytestmark = pytest.mark.django_db


@pytest.fixture
def document(bot):
    return documents.add_document(bot, SimpleUploadedFile("canteen.txt", b"The canteen opens at 11:30.")).document


def api_requests(bot, document):
    return [
        ("get", f"/api/v1/bots/{bot.id}", None),
        ("get", f"/api/v1/bots/{bot.id}/documents", None),
        ("get", f"/api/v1/documents/{document.id}", None),
        ("post", f"/api/v1/bots/{bot.id}/search", {"query": "canteen"}),
    ]


def test_outsider_cannot_change_delete_or_retry(outsider_api, bot, document):
    assert outsider_api.patch(f"/api/v1/bots/{bot.id}", {"name": "x"}, "application/json").status_code == 404
    assert outsider_api.delete(f"/api/v1/documents/{document.id}").status_code == 404
    assert outsider_api.post(f"/api/v1/documents/{document.id}/retry").status_code == 404
    rollback = outsider_api.post(f"/api/v1/documents/{document.id}/rollback", {"version": 1}, "application/json")
    assert rollback.status_code == 404
    bot.refresh_from_db()
    assert bot.name == "Handbook" and bot.documents.count() == 1


def test_owner_reaches_the_bot_its_documents_and_search(owner_api, bot, document):
    for method, url, body in api_requests(bot, document):
        response = getattr(owner_api, method)(url, body, "application/json") if body else owner_api.get(url)
        assert response.status_code == 200, url


def test_outsider_gets_404_for_the_bot_its_documents_and_search(outsider_api, bot, document):
    for method, url, body in api_requests(bot, document):
        response = getattr(outsider_api, method)(url, body, "application/json") if body else outsider_api.get(url)
        assert response.status_code == 404, url
        assert "detail" in response.json()
    upload = outsider_api.post(f"/api/v1/bots/{bot.id}/documents", {"file": SimpleUploadedFile("x.txt", b"x")})
    chat = outsider_api.post(f"/api/v1/bots/{bot.id}/chat", {"message": "hi"}, "application/json")
    assert (upload.status_code, chat.status_code) == (404, 404)
    assert bot.documents.count() == 1


def test_outsider_does_not_see_the_bot_in_lists(outsider_api, bot):
    assert outsider_api.get("/api/v1/bots").json() == []


def test_outsider_gets_404_for_the_pages(client, outsider, owner, bot, document):
    pages = [
        f"/bots/{bot.slug}/",
        f"/bots/{bot.slug}/knowledge/",
        f"/bots/{bot.slug}/knowledge/table/",
        f"/bots/{bot.slug}/settings/",
        f"/documents/{document.id}/",
    ]
    client.force_login(outsider)
    for url in pages:
        assert client.get(url).status_code == 404, url
    assert client.post(f"/bots/{bot.slug}/chat/", {"message": "hi"}).status_code == 404
    assert client.post(f"/bots/{bot.slug}/documents/", {"file": SimpleUploadedFile("x.txt", b"x")}).status_code == 404
    assert client.post(f"/bots/{bot.slug}/settings/", {"name": "Mine now"}).status_code == 404
    for action in ["retry", "delete"]:
        assert client.post(f"/documents/{document.id}/{action}/").status_code == 404
    assert f"/bots/{bot.slug}/" not in client.get("/").content.decode()
    client.force_login(owner)
    for url in pages:
        assert client.get(url).status_code == 200, url
    bot.refresh_from_db()
    assert bot.name == "Handbook"
    assert bot.documents.count() == 1


def test_anonymous_visitors_are_sent_to_log_in(client, bot):
    response = client.get(f"/bots/{bot.slug}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_chat_only_user_gets_answers_with_their_sources_but_no_documents_scores_or_traces(
    owner_api, member, bot, index_texts
):
    from bots import services
    from tests.conftest import api_client_for

    index_texts(bot, {"canteen.txt": "The canteen on the second floor opens at 11:30 on weekdays."})
    services.share_bot(bot, username="mike")
    member_api = api_client_for(member)

    reply = member_api.post(
        f"/api/v1/bots/{bot.id}/chat", {"message": "When does the canteen open?"}, "application/json"
    )
    assert reply.status_code == 200
    body = reply.json()
    citation = body["citations"][0]
    assert citation["document_name"] == "canteen.txt" and "location" in citation
    assert "opens at 11:30" in citation["passage"]
    assert not any("score" in key for key in citation)
    assert body["trace_id"] is None

    document_id = citation["document_id"]
    trace_id = owner_api.post(f"/api/v1/bots/{bot.id}/chat", {"message": "Canteen hours?"}, "application/json")
    trace_url = f"/api/v1/traces/{trace_id.json()['trace_id']}"
    for url in (f"/api/v1/bots/{bot.id}/documents", f"/api/v1/documents/{document_id}", trace_url):
        response = member_api.get(url)
        assert response.status_code == 404 and "detail" in response.json(), url
    assert member_api.post(f"/api/v1/bots/{bot.id}/search", {"query": "canteen"}, "application/json").status_code == 404
