"""A web process loads the LLM client library as it starts only when a provider is set up."""

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

from retrieval.models import LLMProvider
from tests.conftest import ROOT, database_url

PROBE = """
import json, sys, django
django.setup()
from retrieval.services import warm_up_llm_client
before = "openai" in sys.modules
loaded = warm_up_llm_client()
print(json.dumps({"before": before, "loaded": loaded, "after": "openai" in sys.modules}))
"""


def warm_up_in_a_new_process() -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url(connection.settings_dict),
    }
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.django_db(transaction=True)
def test_the_llm_client_is_loaded_ahead_of_the_first_question_only_when_a_provider_is_set_up():
    assert warm_up_in_a_new_process() == {"before": False, "loaded": False, "after": False}
    LLMProvider.objects.create(name="Local", base_url="http://127.0.0.1:9/v1", model_names=["m"])
    assert warm_up_in_a_new_process() == {"before": False, "loaded": True, "after": True}
