import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Body limits hold here through config.limits.LimitRequestBodyMiddleware (first in MIDDLEWARE):
# under WSGI Django reads the body lazily, so the middleware answers before it is read.
application = get_wsgi_application()
