"""The admin console at /console/: providers, embedding models, defaults, users and groups, usage.

Only platform admins (is_superuser) reach it. Anyone else who is logged in gets 404 on
every console URL, as if it didn't exist; logged-out visitors are sent to the login page.

The first section holds the user and group services (roles are the application
layer's, so they don't belong in retrieval.services); the views below it parse the
request, call a service and render.
"""

from __future__ import annotations

import functools

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Count, Prefetch, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from bots import auth
from bots.console_forms import (
    ROLE_HELP,
    DefaultsForm,
    EmbeddingModelForm,
    GroupForm,
    GroupMemberForm,
    ProviderForm,
    RerankerForm,
    Role,
    RoleForm,
    UserCreateForm,
)
from bots.models import Bot
from bots.views import HtmxHttpRequest
from retrieval import services as retrieval
from retrieval.models import EmbeddingModel, LLMProvider, Reranker

User = get_user_model()

# --- Users and groups: services ----------------------------------------------------------
# Admin = is_superuser. Builder = holds BUILD_PERMISSION, directly or through a group.
# Member = everyone else.

BUILD_PERMISSION = ("bots", "add_bot")


def build_permission() -> Permission:
    app_label, codename = BUILD_PERMISSION
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def builder_ids() -> set[int]:
    """Ids of users who may create bots through a direct grant or a group (admins aside)."""
    permission = build_permission()
    return set(
        User.objects.filter(Q(user_permissions=permission) | Q(groups__permissions=permission)).values_list(
            "pk", flat=True
        )
    )


def role_of(user, builders: set[int] | None = None) -> Role:
    if user.is_superuser:
        return Role.ADMIN
    return Role.BUILDER if user.pk in (builder_ids() if builders is None else builders) else Role.MEMBER


def create_user(username: str, password: str, role: str) -> User:
    """A new active user with this password and role."""
    with transaction.atomic():
        user = User.objects.create_user(username=username, password=password)
        _apply_role(user, Role(role))
    return user


def set_role(user, role: str, *, by) -> None:
    """Give `user` exactly this role.

    Raises ValueError when it can't hold: an admin may not demote themselves (so there
    is always an admin who can undo a mistake), and a Member can't be made of someone
    who is a Builder through a group; they must leave that group first.
    """
    role = Role(role)
    if user.pk == by.pk and role != Role.ADMIN:
        raise ValueError("You can't remove your own admin role; ask another admin to do it.")
    if role == Role.MEMBER:
        permission = build_permission()
        granting = user.groups.filter(permissions=permission).values_list("name", flat=True)
        if granting:
            raise ValueError(
                f"{user.get_username()} can create bots as a member of {', '.join(sorted(granting))}; "
                "remove them from that group first."
            )
    with transaction.atomic():
        _apply_role(user, role)


def _apply_role(user, role: Role) -> None:
    # Admins are staff too, so the Django admin pages at /admin/ open for them.
    user.is_superuser = user.is_staff = role == Role.ADMIN
    user.save(update_fields=["is_superuser", "is_staff"])
    if role == Role.BUILDER:
        user.user_permissions.add(build_permission())
    elif role == Role.MEMBER:
        user.user_permissions.remove(build_permission())


def set_active(user, active: bool, *, by) -> None:
    """Let `user` log in and use API tokens again, or stop them (their data stays)."""
    if user.pk == by.pk and not active:
        raise ValueError("You can't deactivate yourself.")
    user.is_active = active
    user.save(update_fields=["is_active"])


def create_group(name: str, can_build: bool = False) -> Group:
    with transaction.atomic():
        group = Group.objects.create(name=name)
        set_group_can_build(group, can_build)
    return group


def set_group_can_build(group: Group, can_build: bool) -> None:
    """Whether membership of `group` makes someone a Builder."""
    if can_build:
        group.permissions.add(build_permission())
    else:
        group.permissions.remove(build_permission())


def add_member(group: Group, user) -> None:
    group.user_set.add(user)


def remove_member(group: Group, user) -> None:
    group.user_set.remove(user)


# --- Views -------------------------------------------------------------------------------


def admin_required(view):
    """Platform admins only: logged-out visitors go to the login page, everyone else gets 404."""

    @functools.wraps(view)
    @login_required
    def wrapper(request, *args, **kwargs):
        if not request.user.is_superuser:
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return wrapper


def _page(request: HtmxHttpRequest, template: str, section: str, context: dict) -> HttpResponse:
    return render(request, f"console/{template}", {"section": section, **context})


@admin_required
def overview(request: HtmxHttpRequest) -> HttpResponse:
    """Where to start: each section with a one-line summary."""
    providers = LLMProvider.objects.all()
    context = {
        "provider_count": providers.count(),
        "failing_providers": providers.filter(last_check_ok=False),
        "default_embedding_model": EmbeddingModel.objects.filter(is_default=True).first(),
        "embedding_model_count": EmbeddingModel.objects.count(),
        "reranker_count": Reranker.objects.count(),
        "user_count": User.objects.filter(is_active=True).count(),
        "group_count": Group.objects.count(),
        "bot_count": Bot.objects.count(),
    }
    return _page(request, "overview.html", "overview", context)


# Providers


@admin_required
def providers(request: HtmxHttpRequest) -> HttpResponse:
    """The providers with their last test result; POST adds one."""
    form = ProviderForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            provider = retrieval.create_provider(**form.service_arguments())
        except ValueError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Added {provider.name}. Test the connection to check the address and key.")
            return redirect("console:providers")
    rows = LLMProvider.objects.annotate(bot_count=Count("bots"))
    return _page(request, "providers.html", "providers", {"providers": rows, "form": form})


@admin_required
def provider_edit(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    provider = get_object_or_404(LLMProvider, pk=pk)
    form = ProviderForm(request.POST or None, provider=provider)
    if request.method == "POST" and form.is_valid():
        try:
            retrieval.update_provider(provider, **form.service_arguments())
        except ValueError as error:
            form.add_error(None, str(error))
            provider.refresh_from_db()  # the refused change may have been half applied in memory
        else:
            messages.success(request, f"Saved {provider.name}.")
            return redirect("console:provider", provider.pk)
    context = {"provider": provider, "form": form, "bot_count": provider.bots.count()}
    return _page(request, "provider_edit.html", "providers", context)


@admin_required
@require_POST
def provider_test(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Call the provider for real; under htmx the result fragment, otherwise back to the list."""
    provider = get_object_or_404(LLMProvider, pk=pk)
    ok, message = retrieval.test_provider(provider)
    if request.htmx:
        back_to = "edit" if request.POST.get("back_to") == "edit" else ""
        return render(request, "console/_provider_check.html", {"provider": provider, "back_to": back_to})
    (messages.success if ok else messages.error)(request, f"{provider.name}: {message}")
    if request.POST.get("back_to") == "edit":
        return redirect("console:provider", provider.pk)
    return redirect("console:providers")


@admin_required
@require_POST
def provider_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    provider = get_object_or_404(LLMProvider, pk=pk)
    name = provider.name
    bots_using = retrieval.delete_provider(provider)
    fallback = f" {bots_using} bot(s) that used it now answer with the built-in answerer." if bots_using else ""
    messages.success(request, f"Deleted {name}.{fallback}")
    return redirect("console:providers")


# Embedding models and defaults


@admin_required
def embedding_models(request: HtmxHttpRequest) -> HttpResponse:
    """The embedding models; POST loads a new one once to verify it, then adds it."""
    form = EmbeddingModelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            model = retrieval.create_embedding_model(**form.cleaned_data)
        except ValueError as error:
            form.add_error("source", str(error))
        else:
            messages.success(request, f"Added {model.name}: {model.dimensions} dimensions, {model.max_tokens} tokens.")
            return redirect("console:embedding-models")
    models = EmbeddingModel.objects.annotate(bot_count=Count("bots"))
    context = {"models": models, "form": form, "backends": EmbeddingModel.Backend.choices}
    return _page(request, "embedding_models.html", "embedding-models", context)


def _make_default(request: HtmxHttpRequest, model: EmbeddingModel) -> None:
    pinned = retrieval.set_default_embedding_model(model)
    kept = f" {pinned} existing bot(s) keep the previous model." if pinned else ""
    messages.success(request, f"New bots now use {model.name}.{kept}")


@admin_required
@require_POST
def embedding_model_backend(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Switch how a model runs (PyTorch or int8 ONNX Runtime); the first switch exports it once."""
    model = get_object_or_404(EmbeddingModel, pk=pk)
    try:
        retrieval.set_embedding_backend(model, request.POST.get("backend", ""))
    except ValueError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"{model.name} now runs on {model.get_backend_display()}.")
    return redirect("console:embedding-models")


@admin_required
@require_POST
def embedding_model_default(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    _make_default(request, get_object_or_404(EmbeddingModel, pk=pk))
    return redirect("console:embedding-models")


# Rerankers


@admin_required
def rerankers(request: HtmxHttpRequest) -> HttpResponse:
    """The rerankers bots may choose; POST loads a new one and scores a pair to verify it, then adds it."""
    form = RerankerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            reranker = retrieval.create_reranker(**form.cleaned_data)
        except ValueError as error:
            form.add_error("source", str(error))
        else:
            messages.success(request, f"Added {reranker.name}. Bot editors can choose it in their bot's settings.")
            return redirect("console:rerankers")
    rows = Reranker.objects.annotate(bot_count=Count("bots"))
    return _page(request, "rerankers.html", "rerankers", {"rerankers": rows, "form": form})


@admin_required
@require_POST
def reranker_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    reranker = get_object_or_404(Reranker, pk=pk)
    name = reranker.name
    bots_using = retrieval.delete_reranker(reranker)
    fallback = f" {bots_using} bot(s) that used it no longer rerank." if bots_using else ""
    messages.success(request, f"Deleted {name}.{fallback}")
    return redirect("console:rerankers")


@admin_required
def defaults(request: HtmxHttpRequest) -> HttpResponse:
    """What new bots start with."""
    current = EmbeddingModel.objects.filter(is_default=True).first()
    form = DefaultsForm(request.POST or None, initial={"embedding_model": current})
    if request.method == "POST" and form.is_valid():
        _make_default(request, form.cleaned_data["embedding_model"])
        return redirect("console:defaults")
    context = {"form": form, "providers": LLMProvider.objects.all()}
    return _page(request, "defaults.html", "defaults", context)


# Users and groups


@admin_required
def users(request: HtmxHttpRequest) -> HttpResponse:
    """Everyone with their role; POST creates a user."""
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = create_user(**form.cleaned_data)
        messages.success(request, f"Created {user.get_username()} as {Role(form.cleaned_data['role']).label}.")
        return redirect("console:users")
    builders = builder_ids()
    rows = [
        (user, role_of(user, builders))
        for user in User.objects.order_by("-is_active", "username").prefetch_related("groups")
    ]
    return _page(
        request,
        "users.html",
        "users",
        {
            "rows": rows,
            "form": form,
            "role_choices": Role.choices,
            "role_help": ROLE_HELP,
            "lockouts": auth.lockouts(),
        },
    )


@admin_required
def user_password(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Set someone's password: how people who forgot theirs get back in when there is no email."""
    person = get_object_or_404(User, pk=pk)
    form = SetPasswordForm(person, request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        # Their failed logins no longer say anything about the new password.
        auth.unlock(username=person.get_username())
        messages.success(request, f"Set a new password for {person.get_username()}. Give it to them in person.")
        return redirect("console:users")
    return _page(request, "user_password.html", "users", {"person": person, "form": form})


@admin_required
@require_POST
def unlock(request: HtmxHttpRequest) -> HttpResponse:
    """Let a locked-out username (from anywhere) or address log in again before the wait is over."""
    username = request.POST.get("username", "").strip()
    ip_address = request.POST.get("ip_address", "").strip()
    if auth.unlock(username=username or None, ip_address=None if username else ip_address or None):
        messages.success(request, f"{username or ip_address} can log in again.")
    else:
        messages.info(request, "Nothing to unlock: the lockout had already ended.")
    return redirect("console:users")


@admin_required
@require_POST
def user_role(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(User, pk=pk)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            set_role(user, form.cleaned_data["role"], by=request.user)
        except ValueError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, f"{user.get_username()} is now {Role(form.cleaned_data['role']).label}.")
    else:
        messages.error(request, "Pick a role.")
    return redirect("console:users")


@admin_required
@require_POST
def user_active(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(User, pk=pk)
    active = request.POST.get("active") == "1"
    try:
        set_active(user, active, by=request.user)
    except ValueError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"{user.get_username()} {'can log in again' if active else 'is deactivated'}.")
    return redirect("console:users")


@admin_required
def groups(request: HtmxHttpRequest) -> HttpResponse:
    """The groups with their members; POST creates a group."""
    form = GroupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        group = create_group(**form.cleaned_data)
        messages.success(request, f"Created the group {group.name}.")
        return redirect("console:groups")
    permission = build_permission()
    group_rows = Group.objects.order_by("name").prefetch_related(
        Prefetch("user_set", queryset=User.objects.order_by("username"), to_attr="members")
    )
    can_build = set(permission.group_set.values_list("pk", flat=True))
    context = {
        "group_rows": [(group, group.pk in can_build) for group in group_rows],
        "form": form,
        "member_form": GroupMemberForm(),
        "usernames": User.objects.filter(is_active=True).order_by("username").values_list("username", flat=True),
    }
    return _page(request, "groups.html", "groups", context)


@admin_required
@require_POST
def group_add_member(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=pk)
    form = GroupMemberForm(request.POST)
    if form.is_valid():
        add_member(group, form.cleaned_data["username"])
        messages.success(request, f"Added {form.cleaned_data['username'].get_username()} to {group.name}.")
    else:
        messages.error(request, " ".join(form.errors.get("username", ["Type a username."])))
    return redirect("console:groups")


@admin_required
@require_POST
def group_remove_member(request: HtmxHttpRequest, pk: int, user_pk: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=pk)
    user = get_object_or_404(User, pk=user_pk)
    remove_member(group, user)
    messages.success(request, f"Removed {user.get_username()} from {group.name}.")
    return redirect("console:groups")


@admin_required
@require_POST
def group_can_build(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=pk)
    can_build = request.POST.get("can_build") == "1"
    set_group_can_build(group, can_build)
    verb = "can" if can_build else "can no longer"
    messages.success(request, f"Members of {group.name} {verb} create bots.")
    return redirect("console:groups")


# Usage


@admin_required
def usage(request: HtmxHttpRequest) -> HttpResponse:
    """Questions per bot per day over the last 14 days, with documents, chunks and storage."""
    report = retrieval.usage(Bot.objects.order_by("name", "pk"), days=14)
    return _page(request, "usage.html", "usage", {"usage": report})
