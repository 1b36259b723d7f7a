"""Browser security: every page sends a strict CSP and a Permissions-Policy, templates carry no
inline JavaScript the CSP would block, the API docs come from our own static files, and
DOCENT_HTTPS turns on what a deployment behind TLS needs."""

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from documents import services as documents

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIRS = [ROOT / "templates", *ROOT.glob("*/templates")]


def parse_csp(header: str) -> dict[str, list[str]]:
    policy = {}
    for directive in header.split(";"):
        name, *values = directive.split()
        policy[name] = values
    return policy


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser("ada", password="admin-pass-123")


@pytest.fixture
def pages(owner, admin, bot):
    """One URL of every kind of page, with the user who may see it (None: logged out)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    document = documents.add_document(bot, SimpleUploadedFile("notes.txt", b"Some notes.")).document
    return {
        "login": (None, "/accounts/login/"),
        "bot list": (owner, "/"),
        "bot chat": (owner, f"/bots/{bot.slug}/"),
        "knowledge": (owner, f"/bots/{bot.slug}/knowledge/"),
        "knowledge table fragment": (owner, f"/bots/{bot.slug}/knowledge/table/"),
        "document": (owner, f"/documents/{document.pk}/"),
        "settings": (owner, f"/bots/{bot.slug}/settings/"),
        "profile": (owner, "/profile/"),
        "console": (admin, "/console/"),
        "console users": (admin, "/console/users/"),
        "api docs": (None, "/api/v1/docs"),
        "api json": (owner, "/api/v1/bots"),
        "not found": (owner, "/no-such-page/"),
    }


def get_as(user, path):
    client = Client()
    if user is not None:
        client.force_login(user)
    return client.get(path)


def test_every_page_type_sends_a_strict_csp_and_a_permissions_policy(pages):
    for name, (user, path) in pages.items():
        response = get_as(user, path)
        assert response.status_code in (200, 404), (name, response.status_code)
        assert "Content-Security-Policy" in response, name
        policy = parse_csp(response["Content-Security-Policy"])
        assert policy["default-src"] == ["'self'"], name
        assert policy["script-src"] == ["'self'"], name  # no 'unsafe-inline', no 'unsafe-eval', no hosts
        assert policy["style-src"] == ["'self'"], name
        assert policy["object-src"] == ["'none'"], name
        assert policy["base-uri"] == ["'self'"], name
        assert policy["frame-ancestors"] == ["'none'"], name
        assert policy["form-action"] == ["'self'"], name
        features = dict(item.split("=") for item in response["Permissions-Policy"].split(", "))
        for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
            assert features[feature] == "()", (name, feature)
        assert response["Referrer-Policy"] == "same-origin", name
        assert response["X-Content-Type-Options"] == "nosniff", name


INLINE_JS = {
    "inline <script> without src": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I),
    "on* event handler attribute": re.compile(r"\son[a-z]+\s*=", re.I),
    "hx-on attribute (htmx evaluates it)": re.compile(r"\bhx-on", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
    "js: value (htmx evaluates it)": re.compile(r"""hx-(vals|headers|vars)\s*=\s*["']\s*js:""", re.I),
    "hx-vars (htmx evaluates it)": re.compile(r"\bhx-vars\b", re.I),
    "hx-trigger event filter (htmx evaluates it)": re.compile(r"""hx-trigger\s*=\s*["'][^"']*\[""", re.I),
    # style-src is 'self' too: a <style> block or style attribute would be refused.
    "<style> block": re.compile(r"<style\b", re.I),
    "style attribute": re.compile(r"""\sstyle\s*=\s*["']""", re.I),
}


def test_no_template_holds_javascript_or_styles_the_csp_would_block():
    templates = [path for directory in TEMPLATE_DIRS for path in directory.rglob("*.html")]
    assert len(templates) > 20
    found = []
    for path in templates:
        text = path.read_text()
        for what, pattern in INLINE_JS.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(ROOT)}:{line}: {what}: {match.group(0)!r}")
    assert found == []


def test_the_scan_catches_each_kind_of_inline_javascript():
    # The scan above passes on an empty pattern table too; prove each pattern bites.
    samples = {
        "inline <script> without src": "<script>alert(1)</script>",
        "on* event handler attribute": '<form onsubmit="return confirm()">',
        "hx-on attribute (htmx evaluates it)": '<form hx-on::after-request="x()">',
        "javascript: URL": '<a href="javascript:void(0)">',
        "js: value (htmx evaluates it)": "<div hx-vals='js:{a: f()}'>",
        "hx-vars (htmx evaluates it)": '<div hx-vars="a:1">',
        "hx-trigger event filter (htmx evaluates it)": '<div hx-trigger="keyup[ctrlKey]">',
        "<style> block": "<style>p{}</style>",
        "style attribute": '<p style="color:red">',
    }
    assert samples.keys() == INLINE_JS.keys()
    for what, sample in samples.items():
        assert INLINE_JS[what].search(sample), what
    assert not INLINE_JS["inline <script> without src"].search('<script src="/static/x.js" defer></script>')
    assert not INLINE_JS["on* event handler attribute"].search('<input name="notion" data-confirm="x">')


def test_htmx_runs_without_eval_script_tags_or_its_injected_indicator_style(owner):
    html = get_as(owner, "/").content.decode()
    config = json.loads(re.search(r"""<meta name="htmx-config" content='([^']*)'>""", html).group(1))
    assert config["allowEval"] is False  # hx-on, js: values and trigger filters would need eval
    assert config["allowScriptTags"] is False
    assert config["includeIndicatorStyles"] is False  # htmx would add a <style> the CSP refuses
    css = finders.find("css/docent.css")
    assert ".htmx-request .htmx-indicator" in Path(css).read_text()


class AssetCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.assets: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            if attrs.get("src"):
                self.assets.append(attrs["src"])
            else:
                self.inline_scripts += 1
        elif tag == "link" and attrs.get("href"):
            self.assets.append(attrs["href"])
        elif tag == "img" and attrs.get("src"):
            self.assets.append(attrs["src"])


def test_api_docs_load_swagger_ui_only_from_our_own_static_files(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "cdn." not in html and "https://" not in html and "http://" not in html
    parser = AssetCollector()
    parser.feed(html)
    assert parser.inline_scripts == 0
    scripts = [asset for asset in parser.assets if asset.endswith(".js")]
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in scripts
    assert "/static/js/api-docs.js" in scripts
    for asset in parser.assets:
        assert asset.startswith("/static/") and not asset.startswith("//"), asset
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not among our static files"
    # The CSS draws icons from data: URLs: only this page allows them.
    assert parse_csp(response["Content-Security-Policy"])["img-src"] == ["'self'", "data:"]
    assert parse_csp(Client().get("/accounts/login/")["Content-Security-Policy"])["img-src"] == ["'self'"]


def test_swagger_ui_is_pinned_in_package_json_and_its_lock():
    package = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    version = package["dependencies"]["swagger-ui-dist"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "pin an exact version"
    assert lock["packages"]["node_modules/swagger-ui-dist"]["version"] == version


def settings_under(env: dict[str, str], tmp_path) -> dict:
    """config.settings as a fresh process computes it under these environment variables."""
    names = [
        "DOCENT_HTTPS",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_SSL_REDIRECT",
        "SECURE_PROXY_SSL_HEADER",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    ]
    script = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {names!r}}}))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DOCENT_", "SECURE_"))}
    base.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DOCENT_DATA_DIR=str(tmp_path),
        # Settings only: don't start the embedded servers.
        DATABASE_URL="postgres://nobody@127.0.0.1:1/none",
        CELERY_BROKER_URL="redis://127.0.0.1:1/0",
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_docent_https_turns_on_secure_cookies_hsts_redirect_and_the_proxy_header(tmp_path):
    on = settings_under({"DOCENT_HTTPS": "true"}, tmp_path)
    assert on["SESSION_COOKIE_SECURE"] is True
    assert on["CSRF_COOKIE_SECURE"] is True
    assert on["SECURE_SSL_REDIRECT"] is True
    assert on["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert on["SECURE_HSTS_SECONDS"] >= 60 * 60 * 24 * 180
    assert on["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is False

    off = settings_under({}, tmp_path)  # plain http on a laptop: cookies must still work
    assert off["SESSION_COOKIE_SECURE"] is False
    assert off["CSRF_COOKIE_SECURE"] is False
    assert off["SECURE_SSL_REDIRECT"] is False
    assert off["SECURE_PROXY_SSL_HEADER"] is None
    assert off["SECURE_HSTS_SECONDS"] == 0

    tuned = settings_under(
        {"DOCENT_HTTPS": "1", "DOCENT_HSTS_SECONDS": "3600", "DOCENT_HSTS_INCLUDE_SUBDOMAINS": "true"}, tmp_path
    )
    assert tuned["SECURE_HSTS_SECONDS"] == 3600
    assert tuned["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True


def test_docent_https_with_a_value_it_does_not_understand_stops_the_start(tmp_path):
    with pytest.raises(AssertionError, match="DOCENT_HTTPS='maybe' is not a boolean"):
        settings_under({"DOCENT_HTTPS": "maybe"}, tmp_path)


def test_with_docent_https_the_app_sends_hsts_secure_cookies_and_redirects_plain_http(settings, owner, client):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True

    plain = client.get("/accounts/login/")
    assert plain.status_code == 301 and plain["Location"].startswith("https://")

    behind_proxy = client.get("/accounts/login/", headers={"X-Forwarded-Proto": "https"})
    assert behind_proxy.status_code == 200
    assert behind_proxy["Strict-Transport-Security"] == "max-age=3600"
    assert behind_proxy.cookies["csrftoken"]["secure"] is True
    logged_in = client.post(
        "/accounts/login/",
        {"username": "olivia", "password": "owner-pass-123"},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert logged_in.status_code == 302
    assert logged_in.cookies["sessionid"]["secure"] is True


def test_a_form_without_its_csrf_token_gets_a_readable_page_the_csp_allows(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post("/", {"name": "Forged"})
    assert response.status_code == 403
    html = response.content.decode()
    assert "This form has expired" in html
    # Django's built-in page carries an inline <style> the CSP would refuse.
    assert "<style" not in html
    assert parse_csp(response["Content-Security-Policy"])["style-src"] == ["'self'"]
