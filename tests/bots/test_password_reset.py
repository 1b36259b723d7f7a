"""Password resets: by email when Docent can send it, otherwise by an admin in the Console.

Every place a password is set applies Django's validators (at least 10 characters).
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core import mail
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.test import Client
from django.urls import reverse

from config.email import email_settings

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "correct-horse-battery"


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser("ada", password="admin-pass-123")


@pytest.fixture
def with_email(member, settings):
    settings.DOCENT_EMAIL_ENABLED = True
    member.email = "mike@example.com"
    member.save()


def test_without_a_mail_server_the_reset_page_says_to_ask_an_administrator(client, member, settings):
    settings.DOCENT_EMAIL_ENABLED = False
    member.email = "mike@example.com"
    member.save()
    page = client.get(reverse("password_reset")).content.decode()
    assert "ask an administrator" in page.lower()
    assert 'name="email"' not in page

    response = client.post(reverse("password_reset"), {"email": "mike@example.com"})
    assert response.status_code == 200
    assert "ask an administrator" in response.content.decode().lower()
    assert mail.outbox == []


def test_the_login_page_links_to_the_reset_page(client):
    assert reverse("password_reset") in client.get(reverse("login")).content.decode()


def test_with_a_mail_server_the_reset_link_is_sent_and_sets_a_new_password(client, member, with_email):
    response = client.post(reverse("password_reset"), {"email": "mike@example.com"}, follow=True)
    assert "Check your email" in response.content.decode()
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+)", mail.outbox[0].body).group(1)

    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200
    set_url = form_page.redirect_chain[-1][0] if form_page.redirect_chain else link
    too_short = client.post(set_url, {"new_password1": "short-1", "new_password2": "short-1"})
    assert "at least 10 characters" in too_short.content.decode()
    done = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}, follow=True)
    assert "Password changed" in done.content.decode()
    assert Client().login(username="mike", password=NEW_PASSWORD)


def test_an_admin_sets_a_password_in_the_console(admin, member):
    console = Client()
    console.force_login(admin)
    url = reverse("console:user-password", args=[member.pk])
    assert url in console.get(reverse("console:users")).content.decode()

    response = console.post(url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}, follow=True)
    assert "Set a new password for mike" in response.content.decode()
    assert Client().login(username="mike", password=NEW_PASSWORD)


def test_the_console_refuses_a_weak_password(admin, member):
    console = Client()
    console.force_login(admin)
    url = reverse("console:user-password", args=[member.pk])
    response = console.post(url, {"new_password1": "abc123def", "new_password2": "abc123def"})
    assert response.status_code == 200
    assert "at least 10 characters" in response.content.decode()
    assert Client().login(username="mike", password="member-pass-123")


def test_only_admins_can_set_passwords(member, owner, outsider):
    url = reverse("console:user-password", args=[member.pk])
    for person in (owner, outsider):
        other = Client()
        other.force_login(person)
        assert other.post(url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}).status_code == 404
    assert Client().post(url).status_code == 302
    assert not Client().login(username="mike", password=NEW_PASSWORD)


def test_a_new_user_from_the_console_needs_10_characters(admin):
    console = Client()
    console.force_login(admin)
    response = console.post(reverse("console:users"), {"username": "bea", "password": "nine-char", "role": "member"})
    assert "at least 10 characters" in response.content.decode()
    assert not type(admin).objects.filter(username="bea").exists()


def test_changing_your_own_password_applies_the_validators(client, member):
    client.force_login(member)
    response = client.post(
        reverse("password_change"),
        {"old_password": "member-pass-123", "new_password1": "123456789012", "new_password2": "123456789012"},
    )
    assert "entirely numeric" in response.content.decode()


def test_the_generated_admin_password_passes_the_validators(settings, tmp_path, monkeypatch, django_user_model):
    from config.management.commands import serve

    monkeypatch.delenv("DOCENT_ADMIN_PASSWORD", raising=False)
    settings.DATA_DIR = tmp_path
    serve.Command().ensure_admin()
    password = (tmp_path / "admin-password.txt").read_text().strip()
    validate_password(password, django_user_model.objects.get(username=serve.ADMIN_USERNAME))


def test_docent_email_url_configures_django_email(monkeypatch):
    monkeypatch.setenv("DOCENT_EMAIL_URL", "submission://docent%40example.com:p%2Fss@mail.example.com")
    configured = email_settings()
    assert configured["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (configured["EMAIL_HOST"], configured["EMAIL_PORT"], configured["EMAIL_USE_TLS"]) == (
        "mail.example.com",
        587,
        True,
    )
    assert (configured["EMAIL_HOST_USER"], configured["EMAIL_HOST_PASSWORD"]) == ("docent@example.com", "p/ss")


def test_djangos_email_host_variable_also_configures_email(monkeypatch):
    monkeypatch.delenv("DOCENT_EMAIL_URL", raising=False)
    monkeypatch.setenv("EMAIL_HOST", "relay.internal")
    assert email_settings()["EMAIL_HOST"] == "relay.internal"


def test_no_email_settings_means_no_email(monkeypatch):
    monkeypatch.delenv("DOCENT_EMAIL_URL", raising=False)
    monkeypatch.delenv("EMAIL_HOST", raising=False)
    assert email_settings() == {}


def test_an_unknown_email_url_scheme_fails_loudly(monkeypatch):
    monkeypatch.setenv("DOCENT_EMAIL_URL", "smtp+tls://mail.example.com")
    with pytest.raises(ImproperlyConfigured, match="unknown scheme"):
        email_settings()


def test_short_passwords_fail_the_validators():
    with pytest.raises(ValidationError, match="at least 10 characters"):
        validate_password("Xk3!pq9Lm")
