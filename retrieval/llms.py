"""Language-model providers behind one small interface.

Pure Python, no Django. A provider takes OpenAI-style chat messages and either
streams the answer's text as it is generated or returns it whole, with the token
usage the server reported. Failures of any kind reach the caller as `LLMError`,
carrying the server's own message and a one-line hint an admin can act on.

The `openai` package is imported only when a request is made, so importing this
module (the web views do, through services) stays cheap.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

Message = dict[str, str]

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Sent when the admin leaves the key empty: local servers (Ollama, llama.cpp,
# vLLM) ignore it, and the openai client refuses to run without one.
PLACEHOLDER_API_KEY = "none"
# Long enough to quote the start of an HTML error page, short enough for the admin UI.
MAX_QUOTED_BODY_CHARS = 300


def load_client_library() -> None:
    """Import the `openai` package now (~0.5 s and ~40 MB), so the first question to a provider doesn't wait for it."""
    import openai  # noqa: F401


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str
    finish_reason: str | None = None


class LLMError(Exception):
    """A provider call failed.

    `server_message` is what the server (or the network layer) said, verbatim;
    `hint` is one line on what to check. `retryable` is true for failures that may
    pass on their own (timeouts, refused connections, rate limits, server errors)
    and false for configuration mistakes (wrong key, URL or model name).
    """

    def __init__(
        self, server_message: str, hint: str = "", *, status_code: int | None = None, retryable: bool = False
    ) -> None:
        self.server_message = server_message
        self.hint = hint
        self.status_code = status_code
        self.retryable = retryable
        super().__init__(f"{server_message}\n{hint}" if hint else server_message)


@dataclass(frozen=True)
class _Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str | None
    finish_reason: str | None


class CompletionStream(Iterator[str]):
    """The answer's text deltas, in order, as the server produces them.

    Once iteration has finished, `completion` holds the whole text with the usage
    and model the server reported (None where it reported none). The source may
    interleave `_Usage` records with the text; they are absorbed, not yielded.
    """

    def __init__(self, events: Iterator[str | _Usage], model: str, release: Callable[[], None] | None = None) -> None:
        self._events = events
        self._release = release
        self._parts: list[str] = []
        self._usage = _Usage(None, None, None, None)
        self._model = model
        self.finished = False

    def __iter__(self) -> CompletionStream:
        return self

    def __next__(self) -> str:
        for event in self._events:
            if isinstance(event, _Usage):
                # Servers spread these over several chunks; a later None doesn't erase a value.
                self._usage = _Usage(
                    *(
                        new if new is not None else old
                        for new, old in zip(astuple(event), astuple(self._usage), strict=True)
                    )
                )
            elif event:
                self._parts.append(event)
                return event
        self.finished = True
        raise StopIteration

    @property
    def text(self) -> str:
        return "".join(self._parts)

    @property
    def completion(self) -> Completion:
        return Completion(
            text=self.text,
            prompt_tokens=self._usage.prompt_tokens,
            completion_tokens=self._usage.completion_tokens,
            model=self._usage.model or self._model,
            finish_reason=self._usage.finish_reason,
        )

    def close(self) -> None:
        """Stop early and release the connection (a user pressed "stop")."""
        close = getattr(self._events, "close", None)
        if close is not None:
            close()
        # A generator closed before its first step never runs its cleanup.
        if self._release is not None:
            self._release()


class LLM(Protocol):
    model: str

    def stream(self, messages: Sequence[Message], *, temperature: float, max_tokens: int) -> CompletionStream:
        """The answer's text as it is generated; raises LLMError, also midway."""
        ...

    def complete(self, messages: Sequence[Message], *, temperature: float, max_tokens: int) -> Completion:
        """The whole answer at once; raises LLMError."""
        ...


class OpenAICompatibleLLM:
    """A model behind an OpenAI-compatible chat-completions endpoint.

    Works with OpenAI itself and with servers that speak its protocol (vLLM,
    Ollama, llama.cpp server, LM Studio...). `base_url` is the API root, usually
    ending in /v1. `timeout` is in seconds and, while streaming, bounds the wait for
    each next piece rather than the whole answer. The client retries refused
    connections, rate limits and server errors `max_retries` times before failing.
    """

    def __init__(self, base_url: str, api_key: str, model: str, timeout: float = 60, max_retries: int = 2) -> None:
        self.base_url = (base_url or OPENAI_BASE_URL).rstrip("/")
        self.api_key = api_key
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        # Flips to False when the server rejects `stream_options`; usage is then unknown.
        self._server_accepts_stream_options = True

    def __repr__(self) -> str:
        return f"OpenAICompatibleLLM(base_url={self.base_url!r}, model={self.model!r})"

    @functools.cached_property
    def _client(self) -> openai.OpenAI:
        import openai

        # The URL and key are always passed, never None: on None the client falls back to
        # the host's OPENAI_BASE_URL / OPENAI_API_KEY and would send that key elsewhere.
        return openai.OpenAI(
            base_url=self.base_url,
            api_key=self.api_key or PLACEHOLDER_API_KEY,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )

    def complete(self, messages: Sequence[Message], *, temperature: float, max_tokens: int) -> Completion:
        """The whole answer at once, with the server's token counts."""
        return self._complete(self._client, messages, temperature=temperature, max_tokens=max_tokens)

    def _complete(
        self, client: openai.OpenAI, messages: Sequence[Message], *, temperature: float, max_tokens: int
    ) -> Completion:
        try:
            response = client.chat.completions.create(
                model=self.model, messages=_chat_messages(messages), temperature=temperature, max_tokens=max_tokens
            )
        except Exception as error:
            raise self._translate(error) from error
        if not response.choices:
            raise LLMError("The server answered without any choices.", "Check that the model can chat.")
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            model=response.model or self.model,
            finish_reason=choice.finish_reason,
        )

    def stream(self, messages: Sequence[Message], *, temperature: float, max_tokens: int) -> CompletionStream:
        """The answer's text deltas as they arrive.

        The request is sent before this returns, so a wrong key, URL or model raises
        LLMError here, before any text; a failure midway raises it from iteration.
        """
        chunks = self._open_stream(list(messages), temperature=temperature, max_tokens=max_tokens)
        return CompletionStream(self._events(chunks), model=self.model, release=chunks.close)

    def _open_stream(
        self, messages: list[Message], *, temperature: float, max_tokens: int
    ) -> openai.Stream[ChatCompletionChunk]:
        import openai

        try:
            completions = self._client.chat.completions  # building the client may fail too
            chat = _chat_messages(messages)
            if self._server_accepts_stream_options:
                try:
                    return completions.create(
                        model=self.model,
                        messages=chat,
                        temperature=temperature,
                        max_tokens=max_tokens,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                except openai.BadRequestError as error:
                    # Servers older than the usage option may reject it outright.
                    if "stream_options" not in str(error):
                        raise
                    self._server_accepts_stream_options = False
            return completions.create(
                model=self.model, messages=chat, temperature=temperature, max_tokens=max_tokens, stream=True
            )
        except Exception as error:
            raise self._translate(error) from error

    def _events(self, chunks: openai.Stream[ChatCompletionChunk]) -> Iterator[str | _Usage]:
        try:
            for chunk in chunks:
                usage = getattr(chunk, "usage", None)
                finish_reason = None
                for choice in chunk.choices or ():
                    if choice.delta and choice.delta.content:
                        yield choice.delta.content
                    finish_reason = choice.finish_reason or finish_reason
                if usage or finish_reason or chunk.model:
                    yield _Usage(
                        prompt_tokens=usage.prompt_tokens if usage else None,
                        completion_tokens=usage.completion_tokens if usage else None,
                        model=chunk.model or None,
                        finish_reason=finish_reason,
                    )
        except Exception as error:
            raise self._translate(error) from error
        finally:
            chunks.close()

    def test_connection(self) -> tuple[bool, str]:
        """Make a real, tiny chat request; (True, what answered) or (False, why not).

        No retries, so a wrong URL fails at once instead of after the backoff.
        """
        started = time.perf_counter()
        try:
            completion = self._complete(
                self._client.with_options(max_retries=0),
                [{"role": "user", "content": "Reply with the word OK."}],
                temperature=0,
                max_tokens=5,
            )
        except LLMError as error:
            return False, str(error)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return True, f"Connected: {completion.model} at {self.base_url} answered in {elapsed_ms:.0f} ms."

    def close(self) -> None:
        if "_client" in self.__dict__:
            self._client.close()

    def _translate(self, error: Exception) -> LLMError:
        """`error` from the openai client as an LLMError with a hint; other errors pass through."""
        import openai

        if isinstance(error, LLMError):
            return error
        if isinstance(error, openai.APITimeoutError):
            return LLMError(
                _message_of(error),
                f"The server did not answer within {self.timeout:g} s: check that it is running and the model "
                "is loaded, or raise the timeout.",
                retryable=True,
            )
        if isinstance(error, openai.APIConnectionError):
            return LLMError(
                _message_of(error),
                f"Could not reach {self.base_url}: check the URL and that the server is running and reachable "
                "from Docent's machine.",
                retryable=True,
            )
        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            return LLMError(
                _message_of(error),
                self._hint_for_status(status),
                status_code=status,
                retryable=status in (408, 409, 429) or status >= 500,
            )
        if isinstance(error, openai.APIError):
            return LLMError(_message_of(error), "The server reported an error while answering: check its logs.")
        if isinstance(error, openai.OpenAIError):
            return LLMError(_message_of(error), "The model server's answer could not be used.")
        raise error

    def _hint_for_status(self, status: int) -> str:
        if status == 401:
            return "The server rejected the API key: check the key in the provider settings."
        if status == 403:
            return "The API key is not allowed to use this model or endpoint: check its permissions."
        if status == 404:
            return (
                f"Check the base URL (OpenAI-compatible servers usually end in /v1, e.g. "
                f"http://localhost:11434/v1) and that the server has a model named {self.model!r}."
            )
        if status == 429:
            return "The server is rate-limiting this key or its quota is used up: wait and retry, or check the limits."
        if status >= 500:
            return "The server failed while answering: check its logs; retrying later may help."
        if status in (400, 422):
            return "The server refused the request: check the model name and the generation settings."
        return "The model server refused the request."


def _chat_messages(messages: Sequence[Message]) -> list[ChatCompletionMessageParam]:
    """`messages` as the openai client's types: the prompts module builds them with OpenAI's role names,
    but as plain string dicts, so that it needs no openai import."""
    return cast("list[ChatCompletionMessageParam]", list(messages))


def _message_of(error: Exception) -> str:
    """What the server or network said: the status line, the body's message or text, the socket error."""
    message = str(getattr(error, "message", "") or error)
    body = getattr(error, "body", None)
    if isinstance(body, str) and body.strip() and body.strip() not in message:
        # A server that isn't OpenAI-compatible at this URL answers in plain text or HTML.
        message += f" - {' '.join(body.split())[:MAX_QUOTED_BODY_CHARS]}"
    cause = error.__cause__
    if cause is not None and str(cause) and str(cause).lower() not in message.lower():
        message += f" ({cause})"
    return message
