"""Authentication for the REST and OpenAI-compatible APIs: bearer tokens or the session cookie."""

from ninja.security import HttpBearer, SessionAuth

from bots import services


class BearerToken(HttpBearer):
    def authenticate(self, request, token: str):
        user = services.user_for_token(token)
        if user is not None:
            request.user = user
        return user


# Session auth checks CSRF on unsafe methods, as every browser form does.
api_auth = [BearerToken(), SessionAuth(csrf=True)]
