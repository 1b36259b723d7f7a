"""The REST API (/api/v1/): bots, their documents, search and chat.

Every endpoint resolves objects through bots.services (visibility included) and
calls the same services as the browser views.
"""

from django.http import Http404
from ninja import File, Router, Status, UploadedFile
from ninja.errors import HttpError

from bots import schemas, services
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


@router.post("/bots/{bot_id}/documents", response={202: list[schemas.UploadOut]})
def upload_documents(request, bot_id: int, file: File[list[UploadedFile]]):
    bot = services.get_bot(request.user, pk=bot_id)
    try:
        uploads = documents.add_documents(bot, file)
    except documents.UploadTooLarge as exc:
        raise HttpError(413, str(exc)) from exc
    return Status(
        202,
        [
            {
                "id": upload.document.id,
                "filename": upload.document.filename,
                "status": upload.document.status,
                "version": upload.document.current_version.number,
                "unchanged": upload.unchanged,
            }
            for upload in uploads
        ],
    )


@router.get("/bots/{bot_id}/documents", response=list[schemas.DocumentOut])
def list_documents(request, bot_id: int):
    bot = services.get_bot(request.user, pk=bot_id)
    return documents.documents_of_bots([bot])


@router.get("/documents/{document_id}", response=schemas.DocumentOut, tags=["documents"])
def get_document(request, document_id: int):
    return services.get_document(request.user, document_id)


@router.post("/bots/{bot_id}/search", response=schemas.SearchOut, tags=["search"])
def search(request, bot_id: int, payload: schemas.SearchIn):
    bot = services.get_bot(request.user, pk=bot_id)
    found = retrieval.search(bot, payload.query, k=payload.k, document_ids=payload.document_ids)
    return {"results": found.chunks, "timings_ms": found.timings_ms}


@router.post("/bots/{bot_id}/chat", response=schemas.ChatOut, tags=["chat"])
def chat(request, bot_id: int, payload: schemas.ChatIn):
    bot = services.get_bot(request.user, pk=bot_id)
    if payload.stream:
        raise HttpError(400, 'Streaming is not available yet; send "stream": false.')
    conversation, reply = services.ask(bot, request.user, payload.message, payload.conversation_id)
    return {
        "conversation_id": conversation.id,
        "message_id": reply.id,
        "answer": reply.text,
        "citations": reply.citations,
        "trace_id": reply.trace_id,
    }


@router.get("/traces/{trace_id}", response=schemas.TraceOut, tags=["traces"])
def get_trace(request, trace_id: int):
    trace = retrieval.traces_of_bots(services.visible_bots(request.user)).filter(pk=trace_id).first()
    if trace is None:
        raise Http404("No such trace.")
    return trace
