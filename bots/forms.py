from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.core.validators import MaxLengthValidator

from bots.models import Bot
from bots.services import (
    INSTRUCTIONS_MAX_CHARS,
    MIN_PASSAGE_TOKENS,
    PROMPT_TEMPLATE_MAX_CHARS,
    QUESTION_MAX_CHARS,
    SETTING_RANGES,
    SETTINGS_FIELDS,
    max_passage_tokens,
)

# Free-text fields stored in TextFields, which give their form fields no length limit.
TEXT_LIMITS = {"instructions": INSTRUCTIONS_MAX_CHARS, "prompt_template": PROMPT_TEMPLATE_MAX_CHARS}


def limit_text_fields(form: forms.BaseForm) -> None:
    """Give the form's TextField-backed fields a maximum length, checked and shown in the browser."""
    for name, max_chars in TEXT_LIMITS.items():
        if name in form.fields:
            field = form.fields[name]
            field.max_length = max_chars
            field.validators.append(MaxLengthValidator(max_chars))
            field.widget.attrs["maxlength"] = str(max_chars)


class BotForm(forms.ModelForm):
    class Meta:
        model = Bot
        fields = ["name", "instructions"]
        widgets = {
            "name": forms.TextInput(attrs={"placeholder": "e.g. HR handbook", "autofocus": True}),
            "instructions": forms.Textarea(
                attrs={"rows": 3, "placeholder": "What is this bot for? e.g. Answers questions about our HR policies."}
            ),
        }
        help_texts = {"instructions": "Optional. Tells colleagues what to ask this bot."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        limit_text_fields(self)


class BotSettingsForm(forms.ModelForm):
    """Every setting with a one-line explanation a non-engineer can act on."""

    class Meta:
        model = Bot
        fields = SETTINGS_FIELDS
        labels = {
            "provider": "Answer with",
            "llm_model": "Language model",
            "max_tokens": "Longest answer (tokens)",
            "prompt_template": "Prompt template",
            "rrf_k": "Fusion constant",
            "vector_weight": "Weight of meaning",
            "keyword_weight": "Weight of exact words",
            "reranker": "Reranker",
            "top_k": "Passages per answer",
            "refusal_threshold": "Refusal threshold",
            "chunking_strategy": "How documents are split",
            "chunk_size_tokens": "Passage size (tokens)",
            "chunk_overlap_tokens": "Passage overlap (tokens)",
            "embedding_model": "Embedding model",
            "judge_provider": "Judge for test runs",
            "judge_model": "Judge model",
            "evaluate_on_change": "Evaluate after every change",
        }
        help_texts = {
            "instructions": "What the bot is for and how it should answer.",
            "provider": "A language model service set up by an admin, or Docent's built-in answerer, which quotes "
            "the documents word for word.",
            "llm_model": "One of the provider's models; empty means its first.",
            "temperature": "0 gives the same answer every time; higher is more varied. 0.2 suits factual bots.",
            "max_tokens": "Caps how long an answer may be. 512 is a few paragraphs.",
            "prompt_template": "Advanced. Empty uses Docent's default, which insists on citations and on saying when "
            "the documents don't cover a question. Placeholders: $instructions, $context.",
            "rrf_k": "Advanced. How strongly the top results of each search count. Default 60.",
            "vector_weight": "Advanced. How much finding passages by meaning counts. Default 1.",
            "keyword_weight": "Advanced. How much matching exact words and codes counts. Default 1.",
            "reranker": "Advanced. A model an admin set up that reads each passage with the question and "
            "re-orders them; better order, slower answers. None keeps the order of the two searches.",
            "top_k": "How many passages the bot reads before answering. More finds more, but is slower. Default 5.",
            "refusal_threshold": "0–1. Higher means the bot says “not in the documents” more readily. Default 0.25.",
            "chunking_strategy": "By headings keeps sections together (best for manuals and policies). "
            "Changing it re-indexes all documents in the background.",
            "chunk_size_tokens": "A token is about ¾ of a word; 200 is a paragraph or two.",
            "chunk_overlap_tokens": "Text repeated between neighbouring passages so nothing falls between them.",
            "embedding_model": "The model that finds passages by meaning. Changing it re-indexes all documents.",
            "judge_provider": "Optional. A language model that grades each answer of a test run for faithfulness "
            "to the passages and relevance to the question, and says why. Does not change how the bot answers.",
            "judge_model": "One of the judge provider's models; empty means its first.",
            "evaluate_on_change": "Runs the default test set (Quality tab) against every saved settings version, "
            "so you can see whether a change made the bot better.",
        }
        widgets = {
            "instructions": forms.Textarea(attrs={"rows": 3}),
            "prompt_template": forms.Textarea(attrs={"rows": 4}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        limit_text_fields(self)
        # The browser checks the same ranges the server does (bots.services.SETTING_RANGES).
        for name, (lowest, highest, _) in SETTING_RANGES.items():
            self.fields[name].widget.attrs.update(min=lowest, max=highest)
        largest = max_passage_tokens(self.instance.embedding_model)
        self.fields["chunk_size_tokens"].widget.attrs.update(min=MIN_PASSAGE_TOKENS, max=largest)
        self.fields["chunk_size_tokens"].help_text += f" At most {largest} for this bot's embedding model."
        self.fields["embedding_model"].empty_label = "Installation default"
        self.fields["provider"].empty_label = "Built-in answerer (quotes the documents)"
        self.fields["reranker"].empty_label = "None"
        self.fields["judge_provider"].empty_label = "No judge"

    def changes(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.changed_data}

    def groups(self) -> list[SettingsGroup]:
        """The fields in SETTINGS_GROUPS order; a group's advanced fields open by themselves on an error."""
        return [
            SettingsGroup(
                title,
                intro,
                [self._setting(name) for name in main],
                [self._setting(name) for name in advanced],
                open_advanced=any(self[name].errors for name in advanced),
            )
            for title, intro, main, advanced in SETTINGS_GROUPS
        ]

    def _setting(self, name: str) -> SettingField:
        needs = SETTINGS_NEEDS.get(name, "")
        return SettingField(self[name], needs, hidden=bool(needs) and not self[needs].value())


@dataclass
class SettingField:
    field: forms.BoundField
    needs: str  # the setting this one applies to ("provider"): hidden while that is empty
    hidden: bool


@dataclass
class SettingsGroup:
    title: str
    intro: str
    fields: list[SettingField]
    advanced: list[SettingField]
    open_advanced: bool

    @property
    def advanced_needs(self) -> str:
        """The setting all advanced fields need ("provider"), so the fold hides with them; else ""."""
        needs = {setting.needs for setting in self.advanced}
        return needs.pop() if len(needs) == 1 else ""

    @property
    def advanced_hidden(self) -> bool:
        return bool(self.advanced) and all(setting.hidden for setting in self.advanced)


# Title, one line on what the group decides, its everyday fields, and the advanced ones folded away.
SETTINGS_GROUPS = [
    ("About", "", ["name", "instructions"], []),
    (
        "Answers",
        "Who writes the answers and how.",
        ["provider", "llm_model", "temperature", "max_tokens"],
        ["prompt_template"],
    ),
    (
        "Retrieval",
        "How the bot finds the passages it answers from.",
        ["top_k", "refusal_threshold"],
        ["reranker", "vector_weight", "keyword_weight", "rrf_k"],
    ),
    (
        "Indexing",
        "How documents are cut into passages and embedded. Changing these re-indexes every document in the "
        "background; the bot keeps answering meanwhile.",
        ["chunking_strategy", "chunk_size_tokens", "embedding_model"],
        ["chunk_overlap_tokens"],
    ),
    (
        "Quality",
        "Test runs on the Quality tab.",
        ["evaluate_on_change"],
        ["judge_provider", "judge_model"],
    ),
]
# Fields that mean something only once another is set: shown when it is, hidden otherwise.
SETTINGS_NEEDS = {
    "llm_model": "provider",
    "temperature": "provider",
    "max_tokens": "provider",
    "prompt_template": "provider",
    "judge_model": "judge_provider",
}


class ChatForm(forms.Form):
    message = forms.CharField(max_length=QUESTION_MAX_CHARS, strip=True)
    conversation = forms.IntegerField(required=False, widget=forms.HiddenInput)
