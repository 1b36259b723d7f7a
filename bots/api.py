"""The REST API (/api/v1/): bots, their documents, search and chat.

Every endpoint resolves objects through bots.services (visibility included) and
calls the same services as the browser views.
"""

import functools

from ninja import File, Router, Status, UploadedFile
from ninja.errors import HttpError

from bots import schemas, services
from bots.streaming import INTERRUPTED, ending_on_failure, sse, sse_response
from documents import services as documents
from retrieval import services as retrieval

router = Router(tags=["bots"])


@router.post("/bots", response={201: schemas.BotOut})
def create_bot(request, payload: schemas.BotIn):
    return Status(201, services.create_bot(request.user, payload.name, payload.instructions))


@router.get("/bots", response=list[schemas.BotOut])
def list_bots(request):
    return services.visible_bots(request.user).select_related("owner")


@router.get("/bots/{bot_id}", response=schemas.BotOut)
def get_bot(request, bot_id: int):
    return services.get_bot(request.user, pk=bot_id)


@router.patch("/bots/{bot_id}", response=schemas.BotOut)
def update_bot(request, bot_id: int, payload: schemas.BotPatch):
    bot = services.get_editable_bot(request.user, pk=bot_id)
    changes = payload.dict(exclude_unset=True)
    if "embedding_model" in changes:
        changes["embedding_model"] = retrieval.get_embedding_model(changes["embedding_model"])
    for field in ("provider", "judge_provider"):
        if field in changes:
            changes[field] = retrieval.get_provider(changes[field])
    return services.update_bot(bot, request.user, changes)


@router.delete("/bots/{bot_id}", response={204: None})
def delete_bot(request, bot_id: int):
    """Delete the bot with its documents, conversations, traces and test sets: owner or admin only (403)."""
    services.delete_bot(request.user, services.get_bot(request.user, pk=bot_id))
    return Status(204, None)


@router.post(
    "/bots/{bot_id}/documents",
    response={202: list[schemas.UploadOut], frozenset({409, 413, 415, 422, 507}): schemas.UploadErrorOut},
)
def upload_documents(request, bot_id: int, file: File[list[UploadedFile]]):
    """Upload files (field `file`, repeatable; up to DOCENT_MAX_FILES_PER_UPLOAD per request).

    Every file Docent can read is stored, or the answer says per file which were refused and why.
    A ZIP archive is unpacked: each file in it Docent can read becomes a document named with its
    folders ("policies/leave.pdf"), and the archive's own entry summarises what was left out."""
    bot = services.get_editable_bot(request.user, pk=bot_id)
    try:
        # The same files as `file`, or the refusal receiving them ended in (too many files).
        results = documents.add_documents(bot, documents.uploaded_files(request))
    except documents.UploadRefused as exc:
        raise HttpError(exc.status, str(exc)) from exc
    return Status(202, [_upload_entry(result) for result in results])


def _upload_entry(result) -> dict:
    if isinstance(result, documents.Refused):
        return {"id": None, "filename": result.filename, "status": "refused", "error": result.reason}
    if isinstance(result, documents.Unpacked):
        return {
            "id": None,
            "filename": result.archive,
            "status": "unpacked",
            "message": result.message,
            "left_out": [{"filename": member.name, "reason": member.reason} for member in result.left_out],
        }
    return {
        "id": result.document.id,
        "filename": result.document.filename,
        "status": result.document.status,
        "version": result.document.current_version.number,
        "unchanged": result.unchanged,
        "archive": result.archive or None,
    }


@router.get("/bots/{bot_id}/documents", response=list[schemas.DocumentOut])
def list_documents(request, bot_id: int):
    bot = services.get_editable_bot(request.user, pk=bot_id)  # chat-only users see cited passages only
    return documents.documents_of_bots([bot])


@router.get("/documents/{document_id}", response=schemas.DocumentOut, tags=["documents"])
def get_document(request, document_id: int):
    return services.get_document(request.user, document_id)


@router.delete("/documents/{document_id}", response={204: None}, tags=["documents"])
def delete_document(request, document_id: int):
    documents.delete_document(services.get_document(request.user, document_id))
    return Status(204, None)


@router.post("/documents/{document_id}/retry", response={202: schemas.DocumentOut}, tags=["documents"])
def retry_document(request, document_id: int):
    document = services.get_document(request.user, document_id)
    return Status(202, documents.retry(document))


@router.post("/documents/{document_id}/rollback", response={202: schemas.DocumentOut}, tags=["documents"])
def rollback_document(request, document_id: int, payload: schemas.RollbackIn):
    document = services.get_document(request.user, document_id)
    return Status(202, documents.rollback(document, payload.version))


@router.post("/bots/{bot_id}/search", response=schemas.SearchOut, tags=["search"])
def search(request, bot_id: int, payload: schemas.SearchIn):
    bot = services.get_editable_bot(request.user, pk=bot_id)  # scores and raw passages are for editors
    found = retrieval.search(bot, payload.query, k=payload.k, document_ids=payload.document_ids)
    return {"results": found.chunks, "timings_ms": found.timings_ms}


def _event(name: str, data: dict) -> dict:
    """One server-sent event as OpenAPI describes it: its name, and its data as JSON of `data`'s shape."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
        },
    }


# With "stream": true the 200 is an event stream, which ninja cannot describe from ChatOut alone.
STREAMED_ANSWER = {
    "responses": {
        200: {
            "content": {
                "text/event-stream": {
                    "schema": {
                        "description": '`token` events {"text"} while the answer is produced, then one `done` '
                        'event, or an `error` event {"detail"} if the answer broke off.',
                        "oneOf": [
                            _event(
                                "token",
                                {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
                            ),
                            _event("done", {"$ref": "#/components/schemas/ChatOut"}),
                            _event("error", {"$ref": "#/components/schemas/ErrorOut"}),
                        ],
                    }
                }
            }
        }
    }
}


@router.post(
    "/bots/{bot_id}/chat",
    response={200: schemas.ChatOut, 503: schemas.ErrorOut},
    tags=["chat"],
    openapi_extra=STREAMED_ANSWER,
)
def chat(request, bot_id: int, payload: schemas.ChatIn):
    """Ask the bot. With `"stream": true` the answer comes as server-sent events:
    `token` events `{"text"}` while it is produced, then one `done` event with the body below,
    or an `error` event `{"detail"}` if the answer broke off (ask again)."""
    bot = services.get_bot(request.user, pk=bot_id)
    question = services.post_question(bot, request.user, payload.message, payload.conversation_id)
    editor = services.can_edit(request.user, bot)
    if payload.stream:

        def events():
            for event in services.answer_stream(question):
                if event.kind == "token":
                    yield sse("token", {"text": event.text})
                else:
                    yield sse("done", _chat_body(event.message, editor))

        failed = functools.partial(sse, "error", {"detail": INTERRUPTED})
        return sse_response(request, ending_on_failure(events(), failed))
    for event in services.answer_stream(question):
        if event.kind == "done":
            return _chat_body(event.message, editor)
    raise HttpError(503, "The answer could not be produced; try again.")


def _chat_body(reply, editor: bool) -> dict:
    return {
        "conversation_id": reply.conversation_id,
        "message_id": reply.id,
        "answer": reply.text,
        "citations": reply.citations,
        # Traces (scores, prompts, every candidate) are for editors; chat-only users get the citations.
        "trace_id": reply.trace_id if editor else None,
    }


@router.get("/bots/{bot_id}/shares", response=list[schemas.ShareOut], tags=["sharing"])
def list_shares(request, bot_id: int):
    return services.shares_of(services.get_editable_bot(request.user, pk=bot_id))


@router.post("/bots/{bot_id}/shares", response={201: schemas.ShareOut}, tags=["sharing"])
def share_bot(request, bot_id: int, payload: schemas.ShareIn):
    bot = services.get_editable_bot(request.user, pk=bot_id)
    return Status(201, services.share_bot(bot, username=payload.user, group=payload.group, role=payload.role))


@router.delete("/bots/{bot_id}/shares/{share_id}", response={204: None}, tags=["sharing"])
def unshare_bot(request, bot_id: int, share_id: int):
    services.unshare_bot(services.get_editable_bot(request.user, pk=bot_id), share_id)
    return Status(204, None)


@router.get("/bots/{bot_id}/conversations", response=list[schemas.ConversationOut], tags=["chat"])
def list_conversations(request, bot_id: int):
    return services.conversations_of(services.get_bot(request.user, pk=bot_id), request.user)


@router.patch("/bots/{bot_id}/conversations/{conversation_id}", response=schemas.ConversationOut, tags=["chat"])
def rename_conversation(request, bot_id: int, conversation_id: int, payload: schemas.ConversationPatch):
    bot = services.get_bot(request.user, pk=bot_id)
    return services.rename_conversation(services.get_conversation(bot, request.user, conversation_id), payload.title)


@router.delete("/bots/{bot_id}/conversations/{conversation_id}", response={204: None}, tags=["chat"])
def delete_conversation(request, bot_id: int, conversation_id: int):
    bot = services.get_bot(request.user, pk=bot_id)
    services.get_conversation(bot, request.user, conversation_id).delete()
    return Status(204, None)


@router.post("/messages/{message_id}/feedback", response={201: schemas.FeedbackOut}, tags=["chat"])
def give_feedback(request, message_id: int, payload: schemas.FeedbackIn):
    return Status(201, services.give_feedback(request.user, message_id, payload.rating, payload.comment))


@router.get("/traces/{trace_id}", response=schemas.TraceOut, tags=["traces"])
def get_trace(request, trace_id: int):
    return services.get_trace(request.user, trace_id)
