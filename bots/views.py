"""Browser views: bot list, bot page (chat + knowledge), uploads and live document rows.

Views hold no business logic: they parse the request, call bots.services (or the
ML layer's services) and render. Under htmx they return fragments declared as
{% partialdef %} blocks of the page template.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import retarget
from django_htmx.middleware import HtmxDetails

from bots import services
from bots.forms import BotForm, ChatForm
from bots.models import Conversation
from documents import services as documents

DETAIL_TEMPLATE = "bots/bot_detail.html"


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails
    user: AbstractBaseUser | AnonymousUser


@login_required
def bot_list(request: HtmxHttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = BotForm(request.POST)
        if form.is_valid():
            bot = services.create_bot(request.user, form.cleaned_data["name"], form.cleaned_data["instructions"])
            return redirect(bot)
    else:
        form = BotForm()
    bots = services.visible_bots(request.user).select_related("owner")
    return render(request, "bots/bot_list.html", {"bots": bots, "form": form})


@login_required
@require_GET
def bot_detail(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_bot(request.user, slug=slug)
    conversation = None
    if conversation_id := request.GET.get("conversation", "").strip():
        conversation = Conversation.objects.filter(
            bot=bot, user=request.user, pk=int(conversation_id) if conversation_id.isdigit() else 0
        ).first()
    context = {
        "bot": bot,
        "documents": documents.documents_of_bots([bot]),
        "conversation": conversation,
        "chat_messages": conversation.messages.all() if conversation else [],
        "chat_form": ChatForm(initial={"conversation": conversation.pk if conversation else None}),
        "max_upload_mb": documents.max_upload_bytes() // (1024 * 1024),
    }
    return render(request, DETAIL_TEMPLATE, context)


@login_required
@require_POST
def upload(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_bot(request.user, slug=slug)
    files = request.FILES.getlist("file")
    error = None
    if not files:
        error = "Choose or drop at least one file."
    else:
        try:
            documents.add_documents(bot, files)
        except documents.UploadTooLarge as exc:
            error = str(exc)
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect(bot)
    if error:
        response = render(request, DETAIL_TEMPLATE + "#upload-error", {"error": error}, status=413 if files else 400)
        return retarget(response, "#upload-error")
    return render(
        request, DETAIL_TEMPLATE + "#documents", {"bot": bot, "documents": documents.documents_of_bots([bot])}
    )


@login_required
@require_GET
def document_row(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    document = services.get_document(request.user, pk)
    return render(request, DETAIL_TEMPLATE + "#document-row", {"document": document})


@login_required
@require_POST
def chat(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_bot(request.user, slug=slug)
    form = ChatForm(request.POST)
    if not form.is_valid():
        if request.htmx:
            return render(request, DETAIL_TEMPLATE + "#chat-error", {"error": "Type a question first."})
        return redirect(bot)
    conversation, reply = services.ask(
        bot, request.user, form.cleaned_data["message"], form.cleaned_data.get("conversation")
    )
    if not request.htmx:
        return redirect(f"{reverse('bots:detail', args=[bot.slug])}?conversation={conversation.pk}")
    question = conversation.messages.filter(role="user").last()
    return render(
        request,
        DETAIL_TEMPLATE + "#exchange",
        {"bot": bot, "conversation": conversation, "exchange": [question, reply]},
    )
