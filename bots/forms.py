from django import forms

from bots.models import Bot


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


class ChatForm(forms.Form):
    message = forms.CharField(max_length=4000, strip=True)
    conversation = forms.IntegerField(required=False, widget=forms.HiddenInput)
