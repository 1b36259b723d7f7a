"""Citations say where a passage is in the terms of its format: a PDF's page, a spreadsheet's rows,
the headings of a web page, Markdown or Word document; never "page 1" of a file without pages."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from documents import services as documents
from documents.models import Chunk
from tests.conftest import fixture_bytes

pytestmark = pytest.mark.django_db

# Forty staff rows; each id is the row's number in a spreadsheet (the header is row 1).
STAFF_CSV = "id,name,office,parking\n" + "".join(
    f"{row},Person {row},Office {row},{'Bay 7 in the basement garage' if row == 30 else 'none'}\n"
    for row in range(2, 42)
)
# The same with what a spreadsheet counts but the passages leave out: a blank line before
# the header, blank rows, a row of empty cells, and a quoted cell spanning two lines (one row).
GAPPY_CSV = "\nid,name,office,parking\n" + "".join(
    "\n" if row % 7 == 0 else ",,,\n" if row % 11 == 0 else f'{row},Person {row},"Office\n{row}",none\n'
    for row in range(3, 60)
)
BENEFITS_MD = """# Benefits

Northwind looks after its people.

## Dental

Dental cover pays eighty percent of check-ups, fillings and crowns at any registered dentist.

## Vision

Glasses are reimbursed up to 200 euros every two years.
"""


@pytest.fixture
def library(bot, settings, tmp_path):
    """A bot holding a PDF, a CSV, a Markdown file and a web page, ingested in this process."""
    settings.MEDIA_ROOT = tmp_path / "media"
    bot.chunk_size_tokens = 64  # several passages per file
    bot.save(update_fields=["chunk_size_tokens"])
    files = {
        "handbook.pdf": fixture_bytes("handbook.pdf"),
        "staff.csv": STAFF_CSV.encode(),
        "gappy.csv": GAPPY_CSV.encode(),
        "benefits.md": BENEFITS_MD.encode(),
        "intranet.html": fixture_bytes("intranet.html"),
    }
    for name, data in files.items():
        upload = documents.add_document(bot, SimpleUploadedFile(name, data), enqueue=False)
        documents.ingest_version(upload.document.current_version_id)
        upload.document.refresh_from_db()
        assert upload.document.status == "ready", upload.document.error
    return bot


def search(client, bot, query: str, document: str) -> dict:
    hits = client.post(f"/api/v1/bots/{bot.id}/search", {"query": query, "k": 20}, "application/json").json()
    return next(hit for hit in hits["results"] if hit["document_name"] == document)


def test_each_format_names_its_own_kind_of_location_in_search_and_chat(owner_api, library):
    bot = library
    assert search(owner_api, bot, "How many days of paid vacation do I get?", "handbook.pdf")["location"] == "page 2"

    parking = search(owner_api, bot, "Bay 7 in the basement garage", "staff.csv")
    first, last = map(int, re.fullmatch(r"rows (\d+)–(\d+)", parking["location"]).groups())
    assert first <= 30 <= last
    # The numbers are the rows a spreadsheet shows: the passage starts with row `first` and ends with row `last`.
    assert parking["text"].startswith(f"id: {first};")
    assert parking["text"].splitlines()[-1].startswith(f"id: {last};")

    hotels = search(owner_api, bot, "hotels", "intranet.html")
    assert hotels["location"].startswith("Travel policy › ")
    pageless = Chunk.objects.exclude(document__filename="handbook.pdf")
    assert not any(chunk.location.startswith("page") for chunk in pageless)

    reply = owner_api.post(
        f"/api/v1/bots/{bot.id}/chat", {"message": "What share of fillings does dental cover pay?"}, "application/json"
    ).json()
    cited = next(citation for citation in reply["citations"] if citation["document_name"] == "benefits.md")
    assert cited["location"] == "Benefits › Dental"

    completion = owner_api.post(
        "/v1/chat/completions",
        {"model": bot.slug, "messages": [{"role": "user", "content": "What share of fillings does dental cover pay?"}]},
        "application/json",
    ).json()
    assert "Benefits › Dental" in {citation["location"] for citation in completion["citations"]}


def test_passages_indexed_before_locations_were_stored_fall_back_to_a_pdfs_page_only(owner_api, bot, index_texts):
    ids = index_texts(bot, {"old.pdf": "Parking is free on weekends.", "old.html": "Parking costs two euros."})
    Chunk.objects.filter(pk=ids["old.pdf"]).update(page=4)

    hits = owner_api.post(f"/api/v1/bots/{bot.id}/search", {"query": "parking"}, "application/json").json()
    locations = {hit["document_name"]: hit["location"] for hit in hits["results"]}
    assert locations == {"old.pdf": "page 4", "old.html": ""}


def test_csv_row_numbers_count_the_rows_a_spreadsheet_shows_even_blank_ones(library):
    passages = Chunk.objects.filter(document__filename="gappy.csv").order_by("ordinal")
    assert passages.count() > 3
    for passage in passages:
        ids = [int(found) for found in re.findall(r"^id: (\d+);", passage.text, re.MULTILINE)]
        numbers = re.fullmatch(r"rows? (\d+)(?:–(\d+))?", passage.location).groups()
        first, last = int(numbers[0]), int(numbers[1] or numbers[0])
        assert (first, last) == (ids[0], ids[-1]), passage.text
