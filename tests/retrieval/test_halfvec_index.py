"""The 384-d HNSW index holds half-precision vectors; search casts to match, so the index serves it."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from retrieval import services

pytestmark = pytest.mark.django_db

TEXTS = {
    "vacation.txt": "Employees get 25 vacation days a year.",
    "laptop.txt": "Laptops are replaced every three years.",
    "expenses.txt": "Travel expenses are reimbursed within a month.",
    "security.txt": "Badges must be worn in the office at all times.",
}


def index_definition() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'chunk_embedding_hnsw_384'")
        return cursor.fetchone()[0]


def candidates_plan(bot, question: str) -> str:
    """The plan of search()'s one statement, with the tiny table's shortcuts discouraged.

    On a handful of rows (and once the table has been analysed) the planner rightly prefers reading
    the bot's rows and sorting them; with sorts and sequential scans disabled, only an ordered
    index scan serves the vector part, so the plan shows whether the HNSW index can.
    """
    with CaptureQueriesContext(connection) as captured:
        services.search(bot, question, k=2)
    (statement,) = [query["sql"] for query in captured.captured_queries if "vector_hits" in query["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {statement}")
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_index_is_half_precision_with_a_denser_graph():
    definition = index_definition()
    assert "halfvec(384)" in definition and "halfvec_cosine_ops" in definition
    assert "m='32'" in definition and "ef_construction='128'" in definition


def test_search_uses_the_halfvec_index_and_finds_the_nearest_passage(bot, index_texts):
    ids = index_texts(bot, TEXTS)
    with connection.cursor() as cursor:  # statistics as a long test run leaves them
        cursor.execute("ANALYZE documents_chunk")
    assert "chunk_embedding_hnsw_384" in candidates_plan(bot, "How many days off do I get?")
    hits = services.search(bot, "How many days off do I get?", k=2).chunks
    assert hits[0].chunk_id == ids["vacation.txt"]
    vector = services.embed_texts(["How many days off do I get?"])[0]
    model = services.embedding_model_for(bot)
    approximate = services.vector_search(services.active_chunks(bot), model, vector, 4)
    exact = services.vector_search(services.active_chunks(bot), model, vector, 4, exact=True)
    assert [chunk_id for chunk_id, _ in approximate] == [chunk_id for chunk_id, _ in exact]


def test_the_migration_indexes_chunks_that_existed_before_it(bot, index_texts):
    call_command("migrate", "retrieval", "0008", verbosity=0)
    assert "vector(384)" in index_definition() and "halfvec" not in index_definition()
    ids = index_texts(bot, TEXTS)  # stored under the float32 index
    with connection.cursor() as cursor:  # as if committed: no deferred checks pending
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    call_command("migrate", "retrieval", "0009", verbosity=0)
    assert "halfvec(384)" in index_definition()
    # (The planner can't use an index built in the same transaction over updated rows: the plan is tested above.)
    assert services.search(bot, "Who pays for my train ticket?", k=1).chunks[0].chunk_id == ids["expenses.txt"]


def test_a_registered_model_of_another_size_gets_the_same_kind_of_index():
    services.ensure_vector_index(12)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'chunk_embedding_hnsw_12'")
        (definition,) = cursor.fetchone()
    assert "halfvec(12)" in definition and "halfvec_cosine_ops" in definition
    assert "m='32'" in definition and "ef_construction='128'" in definition
