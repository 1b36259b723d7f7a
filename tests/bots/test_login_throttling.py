"""Logins are throttled per username and address (django-axes); admins unlock in the Console."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

PASSWORD = "member-pass-123"  # the `member` fixture's
HERE = "127.0.0.2"
ELSEWHERE = "127.0.0.3"


def log_in(client: Client, username: str, password: str, address: str = HERE):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def fail(client: Client, username: str, times: int, address: str = HERE) -> None:
    for attempt in range(times):
        response = log_in(client, username, f"wrong-{attempt}", address)
        assert response.status_code in (200, 429)


@pytest.fixture(autouse=True)
def small_limits(settings):
    # Fewer tries than the defaults (5 per username, 20 per address) keep the tests quick.
    settings.DOCENT_LOGIN_FAILURES_PER_USER = 3
    settings.DOCENT_LOGIN_FAILURES_PER_IP = 7


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser("ada", password="admin-pass-123")


def test_repeated_wrong_passwords_lock_the_user_out_even_with_the_right_one(client, member, settings):
    fail(client, "mike", settings.DOCENT_LOGIN_FAILURES_PER_USER - 1)
    assert log_in(Client(), "mike", PASSWORD).status_code == 302  # one failure short: still allowed

    browser = Client()
    fail(browser, "mike", settings.DOCENT_LOGIN_FAILURES_PER_USER)
    response = log_in(browser, "mike", PASSWORD)
    assert response.status_code == 429
    assert not logged_in(browser)


def test_the_lockout_page_is_the_login_page_saying_when_to_try_again(client, member, settings):
    fail(client, "mike", settings.DOCENT_LOGIN_FAILURES_PER_USER)
    response = log_in(client, "mike", PASSWORD)
    page = response.content.decode()
    assert 'name="password"' in page  # the login form, not a bare error page
    assert re.search(r"Try again after \d\d:\d\d \(UTC\), in about 15 minutes", page), page


def test_a_lockout_holds_for_the_address_it_came_from_only(client, member, settings):
    fail(client, "mike", settings.DOCENT_LOGIN_FAILURES_PER_USER)
    assert log_in(client, "mike", PASSWORD).status_code == 429
    elsewhere = Client()
    assert log_in(elsewhere, "mike", PASSWORD, ELSEWHERE).status_code == 302
    assert logged_in(elsewhere)


def test_many_failures_from_one_address_lock_out_every_username_from_there(client, member, settings):
    # Guessing across usernames, fewer failures each than the per-user limit.
    per_user = settings.DOCENT_LOGIN_FAILURES_PER_USER - 1
    for index in range(settings.DOCENT_LOGIN_FAILURES_PER_IP // per_user + 1):
        fail(client, f"someone-{index}", per_user)
    assert log_in(Client(), "mike", PASSWORD).status_code == 429
    assert log_in(Client(), "mike", PASSWORD, ELSEWHERE).status_code == 302


def test_a_successful_login_forgets_earlier_failures(client, member, settings):
    fail(client, "mike", settings.DOCENT_LOGIN_FAILURES_PER_USER - 1)
    assert log_in(client, "mike", PASSWORD).status_code == 302
    browser = Client()
    fail(browser, "mike", settings.DOCENT_LOGIN_FAILURES_PER_USER - 1)
    assert log_in(browser, "mike", PASSWORD).status_code == 302


def test_logging_into_another_account_between_guesses_does_not_reset_the_count(client, member, outsider, settings):
    for _ in range(settings.DOCENT_LOGIN_FAILURES_PER_USER):
        fail(client, "mike", 1)
        assert log_in(Client(), "oscar", "outsider-pass-123").status_code == 302
    assert log_in(client, "mike", PASSWORD).status_code == 429


def test_api_tokens_work_while_the_user_is_locked_out(client, member, settings):
    fail(client, "mike", settings.DOCENT_LOGIN_FAILURES_PER_USER)
    api = api_client_for(member)
    assert api.get("/api/v1/bots", REMOTE_ADDR=HERE).status_code == 200


def test_an_admin_sees_the_lockout_in_the_console_and_unlocks_it(client, member, admin, settings):
    fail(client, "mike", settings.DOCENT_LOGIN_FAILURES_PER_USER)
    console = Client()
    console.force_login(admin)
    page = console.get(reverse("console:users")).content.decode()
    assert "Locked out" in page
    assert re.search(r"<strong>mike</strong>\s*<span[^>]*>from 127\.0\.0\.2</span>", page)

    response = console.post(reverse("console:unlock"), {"username": "mike"}, follow=True)
    assert "mike can log in again" in response.content.decode()
    assert log_in(client, "mike", PASSWORD).status_code == 302
    assert logged_in(client)


def test_an_admin_unlocks_an_address(client, member, admin, settings):
    fail(client, "nobody", settings.DOCENT_LOGIN_FAILURES_PER_IP)
    assert log_in(client, "mike", PASSWORD).status_code == 429
    console = Client()
    console.force_login(admin)
    assert "everyone from <strong>127.0.0.2</strong>" in console.get(reverse("console:users")).content.decode()
    console.post(reverse("console:unlock"), {"ip_address": HERE})
    assert log_in(client, "mike", PASSWORD).status_code == 302


def test_only_admins_can_unlock(client, member, owner, outsider, settings):
    fail(client, "mike", settings.DOCENT_LOGIN_FAILURES_PER_USER)
    for person in (owner, outsider):
        other = Client()
        other.force_login(person)
        assert other.post(reverse("console:unlock"), {"username": "mike"}).status_code == 404
    anonymous = Client().post(reverse("console:unlock"), {"username": "mike"})
    assert anonymous.status_code == 302 and reverse("login") in anonymous["Location"]
    assert log_in(client, "mike", PASSWORD).status_code == 429


def test_unlocking_a_malformed_address_changes_nothing(client, member, admin, settings):
    fail(client, "mike", settings.DOCENT_LOGIN_FAILURES_PER_USER)
    console = Client()
    console.force_login(admin)
    response = console.post(reverse("console:unlock"), {"ip_address": "not-an-address"}, follow=True)
    assert response.status_code == 200
    assert log_in(client, "mike", PASSWORD).status_code == 429


def test_the_test_clients_login_still_works(member):
    # Client.login() authenticates without a request: nothing to throttle, nothing to break.
    assert Client().login(username="mike", password=PASSWORD)
