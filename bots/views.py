"""Browser views: bot list, and a bot's tabs (chat, knowledge, settings), documents.

Views hold no business logic: they parse the request, call bots.services (or the
ML layer's services) and render. Under htmx they return fragments declared as
{% partialdef %} blocks of the page template.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import escape
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import reswap, retarget
from django_htmx.middleware import HtmxDetails

from bots import services
from bots.forms import BotForm, BotSettingsForm, ChatForm
from bots.models import Bot, BotShare, Conversation
from bots.streaming import INTERRUPTED, ending_on_failure, sse, sse_response
from documents import services as documents
from retrieval import services as retrieval

CHAT_TEMPLATE = "bots/bot_chat.html"
KNOWLEDGE_TEMPLATE = "bots/bot_knowledge.html"


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails
    user: AbstractBaseUser | AnonymousUser


@login_required
def bot_list(request: HtmxHttpRequest) -> HttpResponse:
    can_create = services.can_create_bots(request.user)
    form = BotForm(request.POST or None) if can_create else None
    if request.method == "POST":
        if not can_create:
            raise PermissionDenied("Only builders can create bots.")
        if form.is_valid():
            bot = services.create_bot(request.user, form.cleaned_data["name"], form.cleaned_data["instructions"])
            return redirect("bots:knowledge", bot.slug)  # a new bot needs documents before it can answer
    bots = services.visible_bots(request.user).select_related("owner")
    return render(request, "bots/bot_list.html", {"bots": bots, "form": form})


def _bot_context(request: HtmxHttpRequest, bot: Bot, tab: str) -> dict:
    return {"bot": bot, "tab": tab, "can_edit": services.can_edit(request.user, bot)}


@login_required
@require_GET
def bot_chat(request: HtmxHttpRequest, slug: str, pk: int | None = None) -> HttpResponse:
    """The chat tab: a new conversation, or one of the user's own at its own URL."""
    bot = services.get_bot(request.user, slug=slug)
    if pk is None and (old_link := request.GET.get("conversation", "")).isdigit():
        return redirect("bots:conversation", bot.slug, int(old_link))  # links from before conversations had URLs
    conversation = services.get_conversation(bot, request.user, pk) if pk is not None else None
    context = _bot_context(request, bot, "chat") | {
        "conversations": services.conversations_of(bot, request.user)[:50],
        "conversation": conversation,
        "chat_messages": conversation.messages.all() if conversation else [],
        "chat_form": ChatForm(initial={"conversation": conversation.pk if conversation else None}),
        "has_documents": services.has_searchable_documents(bot),
        "max_question_chars": services.QUESTION_MAX_CHARS,
    }
    return render(request, CHAT_TEMPLATE, context)


def _conversation_url(conversation: Conversation) -> str:
    return reverse("bots:conversation", args=[conversation.bot.slug, conversation.pk])


@login_required
@require_POST
def chat(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Store the question; under htmx the answer then streams in from answer_stream()."""
    bot = services.get_bot(request.user, slug=slug)
    form = ChatForm(request.POST)
    if not form.is_valid():
        error = _chat_form_error(form)
        if request.htmx:
            return render(request, CHAT_TEMPLATE + "#chat-error", {"error": error})
        messages.error(request, error)
        return redirect(bot)
    question = services.post_question(
        bot, request.user, form.cleaned_data["message"], form.cleaned_data.get("conversation")
    )
    conversation = question.conversation
    if not request.htmx:
        for _ in services.answer_stream(question):  # without JavaScript: answer, then show the page
            pass
        return redirect(_conversation_url(conversation))
    started = not conversation.messages.exclude(pk=question.pk).exists()
    context = {"bot": bot, "conversation": conversation, "question": question, "started": started}
    response = render(request, CHAT_TEMPLATE + "#exchange", context)
    if started:
        # The new conversation gets its URL now, so Back and Reload come back to it.
        response["HX-Push-Url"] = _conversation_url(conversation)
    return response


def _chat_form_error(form: ChatForm) -> str:
    if "message" in form.errors and form.data.get("message", "").strip():
        return " ".join(form.errors["message"])  # too long, or characters that cannot be stored
    return "Type a question first."


@login_required
@require_GET
def answer_stream(request: HtmxHttpRequest, slug: str, message_id: int) -> HttpResponse:
    """SSE: "token" events with escaped text as the answer is produced, then "done" with the rendered reply."""
    bot = services.get_bot(request.user, slug=slug)
    question = services.unanswered_question(request.user, bot, message_id)

    def events():
        for event in services.answer_stream(question):
            if event.kind == "token":
                yield sse("token", escape(event.text))
            else:
                context = {"message": event.message, "can_edit": services.can_edit(request.user, bot)}
                html = render_to_string(CHAT_TEMPLATE + "#message", context, request=request)
                yield sse("done", html)

    def interrupted() -> str:
        # "done" still, so the page puts the reason where the answer was and closes the stream.
        return sse("done", render_to_string(CHAT_TEMPLATE + "#chat-error", {"error": INTERRUPTED}))

    return sse_response(request, ending_on_failure(events(), interrupted))


def _knowledge_context(bot: Bot, was_reindexing: bool = False) -> dict:
    rows = list(documents.documents_of_bots([bot]))
    reindexed, reindex_total = documents.reindex_progress(bot)
    reindexing = reindexed < reindex_total
    return {
        "documents": rows,
        "polling": reindexing or documents.any_running(rows),
        "reindexing": reindexing,
        "reindex_prepared": documents.reindex_prepared(bot) if reindexing else reindexed,
        "reindex_total": reindex_total,
        # The poll that sees a re-index end says so, rather than the banner just vanishing.
        "reindex_finished": was_reindexing and not reindexing,
    }


@login_required
@require_GET
def bot_knowledge(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    context = _bot_context(request, bot, "knowledge") | _knowledge_context(bot)
    context["max_upload_mb"] = documents.max_upload_bytes() // (1024 * 1024)
    return render(request, KNOWLEDGE_TEMPLATE, context)


@login_required
@require_GET
def documents_table(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    context = _bot_context(request, bot, "knowledge") | _knowledge_context(bot, "reindexing" in request.GET)
    return render(request, KNOWLEDGE_TEMPLATE + "#documents", context)


@login_required
@require_POST
def upload(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Store the dropped files. Refusals show in the drop zone's message area; the table stays."""
    bot = services.get_editable_bot(request.user, slug=slug)
    try:
        results = documents.add_documents(bot, documents.uploaded_files(request))
    except documents.UploadRefused as exc:
        if not request.htmx:
            messages.error(request, str(exc))
            return redirect("bots:knowledge", bot.slug)
        response = render(request, KNOWLEDGE_TEMPLATE + "#upload-message", {"error": str(exc)}, status=exc.status)
        return reswap(retarget(response, "#upload-message"), "innerHTML")
    refused = [result for result in results if isinstance(result, documents.Refused)]
    unpacked = [result.message for result in results if isinstance(result, documents.Unpacked)]
    unchanged = [result.document.filename for result in results if getattr(result, "unchanged", False)]
    notice = f"Already up to date, nothing to do: {', '.join(unchanged)}." if unchanged else ""
    if not request.htmx:
        if notice:
            messages.info(request, notice)
        for summary in unpacked:
            messages.info(request, summary)
        for refusal in refused:
            messages.error(request, refusal.message)
        return redirect("bots:knowledge", bot.slug)
    context = _bot_context(request, bot, "knowledge") | _knowledge_context(bot) | {"notice": notice}
    html = render_to_string(KNOWLEDGE_TEMPLATE + "#documents", context, request=request)
    # The files that were stored join the table; the drop zone's message says which were not.
    message = {"refused": refused, "unpacked": unpacked}  # ZIP archives: what was added, what was left out
    html += render_to_string(KNOWLEDGE_TEMPLATE + "#upload-message-oob", message, request=request)
    return HttpResponse(html)


@login_required
def bot_settings(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    form = BotSettingsForm(request.POST or None, instance=Bot.objects.get(pk=bot.pk))
    if request.method == "POST" and form.is_valid():
        before = bot.config_version
        try:
            bot = services.update_bot(bot, request.user, form.changes())
        except services.SettingError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            request.session["settings_saved"] = _saved_message(bot, before)
            return redirect("bots:settings", bot.slug)
    return _settings_page(request, bot, form)


def _settings_page(request: HtmxHttpRequest, bot: Bot, form: BotSettingsForm, delete_error: str = "") -> HttpResponse:
    context = _bot_context(request, bot, "settings") | {
        "form": form,
        "saved": request.session.pop("settings_saved", "") if request.method == "GET" else "",
        "history": services.settings_history(bot, BotSettingsForm.base_fields),
        "can_delete": services.can_delete(request.user, bot),
        "delete_error": delete_error,
    }
    return render(request, "bots/bot_settings.html", context, status=400 if delete_error else 200)


@login_required
@require_POST
def bot_delete(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Delete the bot once its name is typed back (the settings tab's last section)."""
    bot = services.get_editable_bot(request.user, slug=slug)
    if not services.can_delete(request.user, bot):
        raise PermissionDenied("Only the bot's owner or an admin can delete it.")
    if request.POST.get("confirm_name", "").strip() != bot.name:
        form = BotSettingsForm(instance=Bot.objects.get(pk=bot.pk))
        return _settings_page(request, bot, form, "Nothing was deleted: type the bot's name exactly as shown.")
    document_count = services.delete_bot(request.user, bot)
    messages.success(
        request, f"Deleted “{bot.name}” with its {document_count} document{'s' if document_count != 1 else ''}."
    )
    return redirect("bots:list")


def _saved_message(bot: Bot, version_before: int) -> str:
    if bot.config_version == version_before:
        return "Nothing changed, so nothing was saved."
    message = f"Saved as settings version {bot.config_version}."
    if documents.reindex_progress(bot)[1] and bot.config_versions.first().changes.keys() & services.INDEX_FIELDS:
        message += " Every document is being re-indexed in the background; the Knowledge tab shows how far it is."
    return message


@login_required
@require_GET
def document_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    document = services.get_document(request.user, pk)
    context = _bot_context(request, document.bot, "knowledge") | {
        "document": document,
        "versions": documents.versions_of(document),
    }
    return render(request, "bots/document_detail.html", context)


@login_required
@require_POST
def document_retry(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    document = services.get_document(request.user, pk)
    try:
        documents.retry(document)
    except ValueError as exc:
        messages.error(request, str(exc))
    return redirect("bots:document", document.pk)


@login_required
@require_POST
def document_rollback(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    document = services.get_document(request.user, pk)
    number = request.POST.get("version", "")
    try:
        documents.rollback(document, int(number) if number.isdigit() else 0)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Going back to version {number}; it answers as soon as it is indexed.")
    return redirect("bots:document", document.pk)


@login_required
@require_POST
def document_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    document = services.get_document(request.user, pk)
    bot_slug, filename = document.bot.slug, document.filename
    documents.delete_document(document)
    messages.success(request, f"Deleted {filename}.")
    return redirect("bots:knowledge", bot_slug)


@login_required
@require_GET
def trace_panel(request: HtmxHttpRequest, trace_id: int) -> HttpResponse:
    """The "Why this answer?" panel: a fragment under htmx, a page otherwise."""
    trace = services.get_trace(request.user, trace_id)
    context = _bot_context(request, trace.bot, "traces") | {"trace": trace}
    if request.htmx:
        return render(request, "bots/trace_detail.html#trace", context)
    return render(request, "bots/trace_detail.html", context)


@login_required
@require_GET
def bot_traces(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    active_filter = request.GET.get("filter", "")
    traces = retrieval.filter_traces(retrieval.traces_of_bots([bot]), active_filter)
    context = _bot_context(request, bot, "traces") | {
        "traces": traces[:200],
        "filters": retrieval.TRACE_FILTERS,
        "active_filter": active_filter,
    }
    return render(request, "bots/bot_traces.html", context)


@login_required
@require_POST
def conversation_rename(request: HtmxHttpRequest, slug: str, pk: int) -> HttpResponse:
    bot = services.get_bot(request.user, slug=slug)
    conversation = services.get_conversation(bot, request.user, pk)
    try:
        services.rename_conversation(conversation, request.POST.get("title", ""))
    except ValueError as exc:
        messages.error(request, str(exc))
    return redirect(_conversation_url(conversation))


@login_required
@require_POST
def conversation_delete(request: HtmxHttpRequest, slug: str, pk: int) -> HttpResponse:
    bot = services.get_bot(request.user, slug=slug)
    services.get_conversation(bot, request.user, pk).delete()
    messages.success(request, "Conversation deleted.")
    return redirect(bot)


@login_required
@require_POST
def feedback(request: HtmxHttpRequest, message_id: int) -> HttpResponse:
    ratings = {"up": 1, "down": -1}
    comment = request.POST.get("comment", "")
    try:
        if request.POST.get("rating") not in ratings:
            raise ValueError("Choose Helpful or Not helpful, then send your comment.")
        given = services.give_feedback(request.user, message_id, ratings[request.POST["rating"]], comment)
    except ValueError as exc:
        answer, error = services.get_answer(request.user, message_id), str(exc)
        feedback = answer.feedback_or_none
    else:
        answer, error, feedback, comment = given.message, "", given, given.comment
    if request.htmx:
        context = {"message": answer, "feedback": feedback, "error": error, "comment": comment}
        return render(request, CHAT_TEMPLATE + "#feedback", context)
    if error:
        messages.error(request, error)
    return redirect(_conversation_url(answer.conversation))


@login_required
def bot_sharing(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    if request.method == "POST":
        who = request.POST.get("who", "").strip()
        role = request.POST.get("role", "user")
        is_group = who.startswith("group:")
        try:
            share = services.share_bot(
                bot,
                username="" if is_group else who,
                group=who.removeprefix("group:").strip() if is_group else "",
                role=role,
            )
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Shared with {share.grantee} as {share.get_role_display().split(':')[0]}.")
        return redirect("bots:sharing", bot.slug)
    context = _bot_context(request, bot, "sharing") | {
        "shares": services.shares_of(bot),
        "candidates": services.share_candidates(bot),
        "roles": BotShare.Role.choices,
    }
    return render(request, "bots/bot_sharing.html", context)


@login_required
@require_POST
def bot_unshare(request: HtmxHttpRequest, slug: str, share_id: int) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    services.unshare_bot(bot, share_id)
    messages.success(request, "Access removed.")
    return redirect("bots:sharing", bot.slug)


@login_required
def profile(request: HtmxHttpRequest) -> HttpResponse:
    """Your API tokens: create one (its key is shown this once), see when each was last used, revoke."""
    new_key = None
    if request.method == "POST":
        try:
            _, new_key = services.create_token(request.user, request.POST.get("name", ""))
        except ValueError as exc:
            messages.error(request, str(exc))
    context = {"tokens": services.tokens_of(request.user), "new_key": new_key}
    return render(request, "bots/profile.html", context)


@login_required
@require_POST
def token_revoke(request: HtmxHttpRequest, token_id: int) -> HttpResponse:
    services.revoke_token(request.user, token_id)
    messages.success(request, "Token revoked; programs using it can no longer sign in.")
    return redirect("bots:profile")
