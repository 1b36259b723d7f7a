"""Deleting a bot: everything of it goes (rows, passages, keyword statistics, stored files), nothing of others."""

import pytest
from django.db import connection

from bots import services as bots
from bots.models import Bot, BotShare
from documents.models import Chunk, Document, DocumentVersion
from retrieval.models import Trace
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_bots(owner, index_texts):
    """The owner's bot with two indexed documents and an answered question, and a second bot with one."""
    doomed = bots.create_bot(owner, "Canteen")
    index_texts(doomed, {"menu.txt": "The canteen serves soup on Mondays.", "hours.txt": "The canteen opens at 11:30."})
    bots.ask(doomed, owner, "When does the canteen open?")
    kept = bots.create_bot(owner, "Travel")
    index_texts(kept, {"travel.txt": "Train tickets are booked through the travel desk."})
    return doomed, kept


def stored_names(bot) -> list[str]:
    return [version.file.name for version in DocumentVersion.objects.filter(document__bot=bot)]


def keyword_statistics_rows(bot) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM retrieval_keyword_statistics WHERE bot_id = %s", [bot.id])
        return cursor.fetchone()[0]


def test_the_owner_deletes_a_bot_over_the_api_and_only_its_data_goes(
    owner, two_bots, django_capture_on_commit_callbacks
):
    doomed, kept = two_bots
    files, kept_files = stored_names(doomed), stored_names(kept)
    storage = DocumentVersion._meta.get_field("file").storage
    assert len(files) == 2 and all(storage.exists(name) for name in files)
    assert Trace.objects.filter(bot=doomed).exists() and keyword_statistics_rows(doomed) > 0

    with django_capture_on_commit_callbacks(execute=True):
        response = api_client_for(owner).delete(f"/api/v1/bots/{doomed.id}")

    assert response.status_code == 204
    assert not Bot.objects.filter(pk=doomed.pk).exists()
    assert not Document.objects.filter(bot_id=doomed.id).exists()
    assert not Chunk.objects.filter(bot_id=doomed.id).exists()
    assert not Trace.objects.filter(bot_id=doomed.id).exists()
    assert keyword_statistics_rows(doomed) == 0
    assert not any(storage.exists(name) for name in files)
    # The other bot is untouched, files and all, and still answers from its document.
    assert all(storage.exists(name) for name in kept_files)
    assert Chunk.objects.filter(bot=kept).count() == 1 and keyword_statistics_rows(kept) > 0
    _, answer = bots.ask(kept, owner, "How do I book a train ticket?")
    assert [citation["document_name"] for citation in answer.citations] == ["travel.txt"]
    assert api_client_for(owner).get(f"/api/v1/bots/{doomed.id}").status_code == 404


def test_editors_and_chat_users_may_not_delete_and_outsiders_learn_nothing(owner, two_bots, django_user_model):
    doomed, _ = two_bots
    people = {}
    for name, role in [("edith", BotShare.Role.EDITOR), ("uma", BotShare.Role.USER), ("otto", None)]:
        people[name] = django_user_model.objects.create_user(name, password="pass-123-pass")
        if role:
            bots.share_bot(doomed, username=name, role=role)

    for name, status in [("edith", 403), ("uma", 403), ("otto", 404)]:
        response = api_client_for(people[name]).delete(f"/api/v1/bots/{doomed.id}")
        assert response.status_code == status, name
        assert "detail" in response.json()
    assert "owner or an admin" in api_client_for(people["edith"]).delete(f"/api/v1/bots/{doomed.id}").json()["detail"]
    assert Document.objects.filter(bot=doomed).count() == 2


def test_an_admin_may_delete_anyones_bot(two_bots, django_user_model):
    doomed, _ = two_bots
    admin = django_user_model.objects.create_superuser("ada", password="admin-pass-123")
    assert api_client_for(admin).delete(f"/api/v1/bots/{doomed.id}").status_code == 204
    assert not Bot.objects.filter(pk=doomed.pk).exists()


def test_the_settings_page_deletes_only_when_the_name_is_typed_back(owner, two_bots, client):
    doomed, kept = two_bots
    client.force_login(owner)
    page = client.get(f"/bots/{doomed.slug}/settings/")
    assert b"Delete this bot" in page.content and b"2 documents" in page.content

    wrong = client.post(f"/bots/{doomed.slug}/delete/", {"confirm_name": "canteen"})
    assert wrong.status_code == 400
    assert b"Nothing was deleted" in wrong.content
    assert Bot.objects.filter(pk=doomed.pk).exists()

    deleted = client.post(f"/bots/{doomed.slug}/delete/", {"confirm_name": " Canteen "}, follow=True)
    assert deleted.redirect_chain[-1][0] == "/"
    assert "Deleted “Canteen” with its 2 documents." in deleted.content.decode()
    assert not Bot.objects.filter(pk=doomed.pk).exists()
    assert Bot.objects.filter(pk=kept.pk).exists()


def test_an_editor_sees_no_delete_section(owner, two_bots, django_user_model, client):
    doomed, _ = two_bots
    editor = django_user_model.objects.create_user("edith", password="pass-123-pass")
    bots.share_bot(doomed, username="edith", role=BotShare.Role.EDITOR)
    client.force_login(editor)
    page = client.get(f"/bots/{doomed.slug}/settings/")
    assert page.status_code == 200 and b"Delete this bot" not in page.content
