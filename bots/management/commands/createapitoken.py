from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from bots.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for a user and print it (last line of the output). It is shown only once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--create-user", action="store_true", help="Create the user if it doesn't exist.")
        parser.add_argument("--name", default="API token", help="A label to tell tokens apart.")

    def handle(self, *args, username: str, create_user: bool, name: str, **options):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create_user:
                raise CommandError(f"No user named {username!r}; pass --create-user to create one.")
            user = User.objects.create_user(username=username)
            self.stderr.write(f"Created user {username} (no password; set one with changepassword).")
        _, key = ApiToken.issue(user, name=name)
        self.stdout.write(key)
