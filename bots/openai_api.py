"""The OpenAI-compatible endpoint (/v1/): any OpenAI client can chat with a bot.

`model` is a bot's slug and the caller's API token is the API key, so the official
SDKs, LangChain, Open WebUI and the like work unchanged against a base URL of
`https://<docent>/v1`. Answers come from the same pipeline as the chat page
(retrieval.services.answer_stream), with Docent's citations and trace id as extra
top-level fields. Errors use OpenAI's `{"error": {"message", "type", "param", "code"}}`
shape so those clients raise their usual exceptions.

These are plain Django views rather than a NinjaAPI: ninja would answer errors as
`{"detail": ...}` and validation failures as 422, both of which OpenAI clients misread.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from bots import services
from bots.streaming import sse_response
from retrieval import services as retrieval

logger = logging.getLogger(__name__)

# The REST chat's limit on a question applies to the last user message; the whole
# conversation sent along is bounded too, since every turn goes into the prompt.
QUESTION_MAX_CHARS = services.QUESTION_MAX_CHARS
CONVERSATION_MAX_CHARS = 32_000
MAX_MESSAGES = 200


class OpenAIError(Exception):
    """A request we refuse, answered in OpenAI's error shape with `status`."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def response(self) -> JsonResponse:
        error_type = "invalid_request_error" if self.status < 500 else "server_error"
        body = {"error": {"message": self.message, "type": error_type, "param": self.param, "code": self.code}}
        response = JsonResponse(body, status=self.status)
        if self.status == 401:
            response["WWW-Authenticate"] = "Bearer"
        return response


def openai_view(method: str):
    """Wrap a view taking (request, user, ...): bearer auth, one HTTP method, OpenAI-shaped errors.

    CSRF-exempt because only a bearer token is accepted, never the session cookie,
    so a page in the user's browser cannot make these requests on their behalf.
    """

    def decorate(view):
        @csrf_exempt
        def wrapped(request, *args, **kwargs):
            try:
                if request.method != method:
                    raise OpenAIError(405, f"Use {method} for {request.path}.", code="method_not_allowed")
                return view(request, _authenticated_user(request), *args, **kwargs)
            except OpenAIError as refusal:
                return refusal.response()
            except Exception:
                # Django's own 500 page is HTML, which OpenAI clients cannot read.
                logger.exception("OpenAI-compatible request failed: %s %s", request.method, request.path)
                return OpenAIError(500, "Something went wrong on our side; it has been logged.").response()

        wrapped.__name__ = view.__name__
        wrapped.__doc__ = view.__doc__
        return wrapped

    return decorate


def _authenticated_user(request):
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    user = services.user_for_token(key.strip()) if scheme.lower() == "bearer" and key.strip() else None
    if user is None:
        raise OpenAIError(
            401, "Missing or invalid API key: send a Docent API token as a Bearer token.", code="invalid_api_key"
        )
    return user


def _bot_for_model(user, model: str):
    if "\x00" in model:
        raise OpenAIError(400, _NUL_MESSAGE.format(field="`model`"), param="model", code="nul_character")
    bot = services.visible_bots(user).select_related("owner").filter(slug=model).first()
    if bot is None:
        # The same answer for a bot that doesn't exist and one not shared with the caller.
        raise OpenAIError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return bot


@openai_view("GET")
def list_models(request, user):
    """The bots the caller may chat with, as OpenAI models (`id` is the bot's slug)."""
    bots = services.visible_bots(user).select_related("owner")
    return JsonResponse({"object": "list", "data": [_model_json(bot) for bot in bots]})


@openai_view("GET")
def retrieve_model(request, user, model: str):
    """One bot as an OpenAI model; 404 `model_not_found` if the caller may not see it."""
    return JsonResponse(_model_json(_bot_for_model(user, model)))


def _model_json(bot) -> dict:
    return {
        "id": bot.slug,
        "object": "model",
        "created": int(bot.created_at.timestamp()),
        "owned_by": bot.owner.get_username(),
    }


@openai_view("POST")
def chat_completions(request, user):
    """Answer the last user message from the bot named by `model`, OpenAI-style.

    Earlier user and assistant messages are the conversation history (follow-ups
    are rewritten to stand alone); system, developer and tool messages are ignored
    because the bot's own instructions govern, and so is anything after the last
    user message. Nothing is stored as a conversation; the answer's trace is.
    `temperature`, `max_tokens` and other sampling options are ignored: the bot's
    configured values apply, as they do in the chat page.

    Without `stream` the answer is a `chat.completion` with extra top-level
    `citations` and `trace_id`. With `"stream": true` it is server-sent
    `chat.completion.chunk`s (the first carries the role), a last chunk with
    `finish_reason: "stop"`, `citations` and `trace_id`, a usage chunk if
    `stream_options.include_usage` is set, then `data: [DONE]`.
    """
    asked = _read_request(request)
    bot = _bot_for_model(user, asked["model"])
    reply = _Reply(bot.slug, asked["question"], asked["history"])
    events = retrieval.answer_stream(bot, asked["question"], asked["history"], asked_by=user)
    if asked["stream"]:
        return sse_response(request, reply.stream(events, include_usage=asked["include_usage"]))
    for event in events:
        if event.kind == "done":
            return JsonResponse(reply.completion(event))
    raise OpenAIError(503, "The answer could not be produced; try again.")


def _read_request(request) -> dict:
    """The parts of an OpenAI chat request Docent uses, or OpenAIError 400 saying what is wrong."""
    try:
        body = json.loads(request.body)
    except RequestDataTooBig as exc:
        raise OpenAIError(413, "The request body is too large.") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise OpenAIError(400, "The request body is not valid JSON.") from exc
    except RecursionError as exc:
        raise OpenAIError(400, "The request body is nested too deeply.") from exc
    if not isinstance(body, dict):
        raise OpenAIError(400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise OpenAIError(400, "`model` must be the slug of one of your bots (see GET /v1/models).", param="model")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise OpenAIError(400, "`stream` must be true or false.", param="stream")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise OpenAIError(400, "`stream_options` must be an object.", param="stream_options")
    if "\x00" in model:
        raise OpenAIError(400, _NUL_MESSAGE.format(field="`model`"), param="model", code="nul_character")
    question, history = _question_and_history(body.get("messages"))
    return {
        "model": model.strip(),
        "stream": stream,
        "include_usage": stream_options.get("include_usage") is True,
        "question": question,
        "history": history,
    }


_NUL_MESSAGE = "{field} must not contain NUL (\\x00) characters."


def _question_and_history(messages) -> tuple[str, list[tuple[str, str]]]:
    if not isinstance(messages, list) or not all(isinstance(message, dict) for message in messages):
        raise OpenAIError(400, "`messages` must be a list of message objects.", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise OpenAIError(
            400, f"`messages` may hold at most {MAX_MESSAGES} messages, not {len(messages)}.", param="messages"
        )
    turns = [
        (message["role"], _text_of(message.get("content"), index))
        for index, message in enumerate(messages)
        if message.get("role") in ("user", "assistant")
    ]
    last_user = max((index for index, (role, _) in enumerate(turns) if role == "user"), default=None)
    if last_user is None or not turns[last_user][1].strip():
        raise OpenAIError(400, "`messages` must contain a user message with the question.", param="messages")
    history = [(role, text) for role, text in turns[:last_user] if text.strip()]
    question = turns[last_user][1].strip()
    _check_lengths(question, history)
    return question, history


def _check_lengths(question: str, history: list[tuple[str, str]]) -> None:
    texts = [question] + [text for _, text in history]
    if any("\x00" in text for text in texts):
        raise OpenAIError(400, _NUL_MESSAGE.format(field="Messages"), param="messages", code="nul_character")
    if len(question) > QUESTION_MAX_CHARS:
        raise OpenAIError(
            400,
            f"The last user message is too long: at most {QUESTION_MAX_CHARS:,} characters, not {len(question):,}.",
            param="messages",
            code="context_length_exceeded",
        )
    total = sum(len(text) for text in texts)
    if total > CONVERSATION_MAX_CHARS:
        raise OpenAIError(
            400,
            f"The messages are too long together: at most {CONVERSATION_MAX_CHARS:,} characters, not {total:,}.",
            param="messages",
            code="context_length_exceeded",
        )


def _text_of(content, index: int) -> str:
    """A message's text: a string, or the text parts of a content-parts list (images etc. are skipped)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    raise OpenAIError(400, "A message's `content` must be a string or a list of parts.", param=f"messages[{index}]")


@csrf_exempt
def not_found(request, path: str = ""):
    """Any other path under /v1/: OpenAI's 404 shape rather than Django's HTML page."""
    return OpenAIError(404, f"Docent has no endpoint {request.path}.", code="unknown_url").response()


class _Reply:
    """The OpenAI-shaped pieces of one answer: the whole completion, or its chunks."""

    def __init__(self, model: str, question: str, history: list[tuple[str, str]]):
        self.id = f"chatcmpl-{secrets.token_hex(12)}"
        self.created = int(time.time())
        self.model = model
        self.prompt_text = "\n".join([text for _, text in history] + [question])

    def completion(self, done) -> dict:
        return {
            **self._envelope("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done.answer.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": self._usage(done),
            **self._docent_fields(done),
        }

    def stream(self, events, *, include_usage: bool):
        # The role goes out before any work, so a client sees the stream open at once.
        yield self._chunk({"role": "assistant", "content": ""})
        try:
            for event in events:
                if event.kind == "token":
                    yield self._chunk({"content": event.text})
                    continue
                yield self._chunk({}, finish_reason="stop", **self._docent_fields(event))
                if include_usage:
                    yield _data({**self._envelope("chat.completion.chunk"), "choices": [], "usage": self._usage(event)})
        except Exception:
            # The 200 status is already sent; OpenAI clients raise on an error object in the stream.
            logger.exception("Streamed answer for %s failed", self.model)
            yield _data({"error": {"message": "The answer failed; try again.", "type": "server_error"}})
            return
        yield "data: [DONE]\n\n"

    def _chunk(self, delta: dict, finish_reason: str | None = None, **extra) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _data({**self._envelope("chat.completion.chunk"), "choices": [choice], **extra})

    def _envelope(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def _usage(self, done) -> dict:
        # A provider's own counts when it reported them; otherwise an estimate, since
        # the extractive answerer has no tokenizer and OpenAI clients expect numbers.
        counted = done.trace.tokens if done.trace else {}
        prompt = counted.get("prompt")
        completion = counted.get("completion")
        prompt = prompt if isinstance(prompt, int) else _approximate_tokens(self.prompt_text)
        completion = completion if isinstance(completion, int) else _approximate_tokens(done.answer.text)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    @staticmethod
    def _docent_fields(done) -> dict:
        return {
            "citations": [_citation_json(citation) for citation in done.answer.citations],
            "trace_id": done.trace.pk if done.trace else None,
        }


def _citation_json(citation) -> dict:
    # The REST chat's citation minus the full passage and sentence list, which the snippet summarises.
    full = services.citation_json(citation)
    return {key: value for key, value in full.items() if key not in ("passage", "sentences")}


def _approximate_tokens(text: str) -> int:
    # About four characters per token for English; only used when nothing better is known.
    return len(text) // 4 + 1 if text else 0


def _data(payload: dict) -> str:
    # OpenAI streams bare `data:` lines; an `event:` line (as bots.streaming.sse writes) would confuse its clients.
    return f"data: {json.dumps(payload)}\n\n"
