"""The application layer's entry points: bots, tokens and conversations.

Views, API endpoints and management commands call these; they in turn reach the ML
layer only through documents.services and retrieval.services.
"""

from __future__ import annotations

from django.db import transaction
from django.http import Http404

from bots.models import ApiToken, Bot, Conversation, Message
from documents import services as documents
from retrieval import services as retrieval


def visible_bots(user):
    return Bot.objects.visible_to(user)


def get_bot(user, *, pk: int | None = None, slug: str | None = None) -> Bot:
    """The bot with this id or slug if `user` may see it; Http404 otherwise (also for others' bots)."""
    lookup = {"pk": pk} if pk is not None else {"slug": slug}
    bot = visible_bots(user).filter(**lookup).first()
    if bot is None:
        raise Http404("No such bot.")
    return bot


def get_document(user, pk: int):
    document = documents.documents_of_bots(visible_bots(user)).filter(pk=pk).first()
    if document is None:
        raise Http404("No such document.")
    return document


def create_bot(owner, name: str, instructions: str = "") -> Bot:
    name = name.strip()
    if not name:
        raise ValueError("A bot needs a name.")
    return Bot.objects.create(owner=owner, name=name[:120], instructions=instructions.strip())


def user_for_token(key: str):
    """The active user a bearer token belongs to, recording its use; None if unknown or revoked."""
    token = ApiToken.objects.active().select_related("user").filter(key_hash=ApiToken.hash_key(key)).first()
    if token is None:
        return None
    token.touch()
    return token.user


def ask(bot: Bot, user, text: str, conversation_id: int | None = None) -> tuple[Conversation, Message]:
    """Put `text` to `bot` in a new or existing conversation of `user`; returns the stored answer."""
    text = text.strip()
    if not text:
        raise ValueError("Ask a question first.")
    if conversation_id is None:
        conversation = Conversation.objects.create(bot=bot, user=user, title=text[:200])
    else:
        conversation = Conversation.objects.filter(bot=bot, user=user, pk=conversation_id).first()
        if conversation is None:
            raise Http404("No such conversation.")
    result, trace = retrieval.answer(bot, text)
    with transaction.atomic():
        Message.objects.create(conversation=conversation, role=Message.Role.USER, text=text)
        reply = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            text=result.text,
            citations=[
                {
                    "n": citation.n,
                    "chunk_id": citation.chunk.chunk_id,
                    "document_id": citation.chunk.document_id,
                    "document_name": citation.chunk.document_name,
                    "page": citation.chunk.page,
                    "heading_path": citation.chunk.heading_path,
                    "snippet": citation.snippet,
                }
                for citation in result.citations
            ],
            trace=trace,
        )
        conversation.save(update_fields=["updated_at"])
    return conversation, reply
