"""Test sets typed, imported from CSV and JSONL, and from a BEIR zip (which brings its corpus)."""

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from documents import services as documents
from evaluation import services
from evaluation.models import TestCase
from tests.conftest import SHARED_DATA, fixture_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def handbook(bot):
    for name, text in {
        "canteen.txt": b"The canteen opens at 11:30.",
        "leave.pdf": fixture_bytes("handbook.pdf"),
    }.items():
        documents.add_document(bot, SimpleUploadedFile(name, text), enqueue=False)
    return bot


def expected(case) -> set[str]:
    return {document.filename for document in case.expected_documents.all()}


def test_a_typed_test_set_links_cases_to_the_bots_documents(handbook, owner):
    test_set = services.create_test_set(
        handbook,
        "Basics",
        [
            {"question": "When does the canteen open?", "expected_documents": ["canteen.txt"], "pages": [1]},
            {"question": "Who won the 1954 World Cup?", "answerable": False},
        ],
        created_by=owner,
    )
    first, second = test_set.cases.all()
    assert expected(first) == {"canteen.txt"} and first.pages == [1] and first.generator == "typed"
    assert second.answerable is False and expected(second) == set()


CSV = (
    "question,expected_documents,pages,reference_answer,answerable\n"
    "When does the canteen open?,canteen.txt,,At 11:30.,yes\n"
    "How much leave?,leave.pdf;canteen.txt,2;3,,\n"
    "What is the CEO's shoe size?,,,,no\n"
)


def test_csv_import_reads_semicolon_separated_documents_and_pages(handbook):
    test_set = services.import_test_set(handbook, "basics.csv", CSV.encode())
    assert test_set.name == "basics"
    canteen, leave, shoe = test_set.cases.all()
    assert canteen.reference_answer == "At 11:30." and canteen.generator == TestCase.Generator.CSV
    assert expected(leave) == {"leave.pdf", "canteen.txt"} and leave.pages == [2, 3] and leave.answerable
    assert shoe.answerable is False


def test_jsonl_import_takes_one_case_per_line(handbook):
    lines = [
        {"question": "When does the canteen open?", "expected_documents": ["canteen.txt"]},
        {"question": "Unknowable?", "answerable": False},
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode() + b"\n\n"
    test_set = services.import_test_set(handbook, "set.jsonl", data, name="From JSONL")
    assert test_set.name == "From JSONL"
    assert [case.generator for case in test_set.cases.all()] == ["jsonl", "jsonl"]


@pytest.mark.parametrize(
    ("filename", "data", "message"),
    [
        ("x.csv", b"q,expected_documents\nhi,canteen.txt\n", "'question' column"),
        ("x.csv", b"question,colour\nhi,red\n", "Unknown CSV column(s): colour"),
        ("x.csv", b"question,expected_documents\nWhen?,missing.txt\n", "no document named 'missing.txt'"),
        ("x.csv", b"question,expected_documents,answerable\nWhen?,canteen.txt,maybe\n", "answerable must be yes or no"),
        ("x.csv", b"question,expected_documents\nWhen?,canteen.txt,extra\n", "more fields than the header"),
        ("x.csv", b"question,expected_documents\nWhen?,\n", "Case 1 is answerable but names no expected document"),
        ("x.csv", b"question,expected_documents,pages\nWhen?,canteen.txt,two\n", "pages must be page numbers"),
        ("x.csv", b"question\n", "at least one case"),
        ("x.csv", b"\xff\xfequestion\n", "not UTF-8"),
        ("x.jsonl", b'{"question": "a", "answerable": "no"}\n{oops\n', "JSONL line 2 is not valid JSON"),
        ("x.jsonl", b"[1, 2]\n", "JSONL line 1 must be a JSON object"),
        ("x.jsonl", b'{"question": "a\\u0000b", "answerable": false}\n', "NUL character"),
        ("x.jsonl", b'{"question": 3}\n', "question must be text"),
        ("x.jsonl", b'{"question": "a", "answerable": false, "expected_documents": "x"}\n', "cannot expect"),
        ("x.jsonl", b'{"question": "a", "colour": 1}\n', "unknown field(s) colour"),
        ("x.txt", b"question\nhi\n", "Import a .csv, .jsonl or BEIR .zip file"),
        ("x.zip", b"not a zip", "not a readable zip"),
    ],
)  # fmt: skip
def test_bad_imports_say_what_is_wrong_and_store_nothing(handbook, filename, data, message):
    with pytest.raises(ValueError) as caught:
        services.import_test_set(handbook, filename, data)
    assert message in str(caught.value)
    assert not handbook.test_sets.exists()


def test_a_second_set_with_the_same_name_is_refused(handbook):
    services.import_test_set(handbook, "basics.csv", CSV.encode())
    with pytest.raises(ValueError, match="already has a test set named 'basics'"):
        services.import_test_set(handbook, "basics.csv", CSV.encode())


def beir_zip(folder: str = "tiny/") -> bytes:
    corpus = [
        {"_id": "d1", "title": "Canteen", "text": "The canteen opens at 11:30 on weekdays."},
        {"_id": "d2", "title": "Leave", "text": "Employees get 25 days of paid leave."},
        {"_id": "d3", "title": "Printer", "text": "Error E-4417 means the toner is empty."},
        {"_id": "d4", "title": "Parking", "text": "Visitors park in lot B."},
        {"_id": "d5", "title": "", "text": "The office closes at 18:00."},
    ]
    queries = [
        {"_id": "q1", "text": "When does the canteen open?"},
        {"_id": "q2", "text": "What does E-4417 mean?"},
        {"_id": "q3", "text": "Where do visitors park?"},
        {"_id": "q4", "text": "A query with no judgement"},
    ]
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td5\t2\nq2\td3\t1\nq3\td4\t1\nq3\td2\t0\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(folder + "corpus.jsonl", "\n".join(json.dumps(entry) for entry in corpus))
        archive.writestr(folder + "queries.jsonl", "\n".join(json.dumps(entry) for entry in queries))
        archive.writestr(folder + "qrels/test.tsv", qrels)
    return buffer.getvalue()


def test_a_beir_zip_adds_one_document_per_corpus_entry_and_a_case_per_judged_query(bot):
    test_set = services.import_test_set(bot, "tiny.zip", beir_zip())
    assert sorted(bot.documents.values_list("filename", flat=True)) == [f"d{n}.txt" for n in range(1, 6)]
    assert bot.documents.get(filename="d1.txt").current_version.file.read() == (
        b"Canteen\n\nThe canteen opens at 11:30 on weekdays."
    )
    cases = {case.external_id: case for case in test_set.cases.all()}
    assert set(cases) == {"q1", "q2", "q3"}  # q4 has no judgement; grade 0 is not relevant
    assert expected(cases["q1"]) == {"d1.txt", "d5.txt"}
    d5 = bot.documents.get(filename="d5.txt").id
    assert cases["q1"].grades[str(d5)] == 2
    assert expected(cases["q3"]) == {"d4.txt"}
    assert {case.generator for case in cases.values()} == {"beir"}


def test_a_beir_zip_without_qrels_is_refused_before_anything_is_stored(bot):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("corpus.jsonl", json.dumps({"_id": "d1", "text": "x"}))
        archive.writestr("queries.jsonl", json.dumps({"_id": "q1", "text": "x"}))
    with pytest.raises(ValueError, match="needs corpus.jsonl, queries.jsonl and qrels"):
        services.import_test_set(bot, "broken.zip", buffer.getvalue())
    assert not bot.documents.exists()


def test_a_beir_corpus_larger_than_the_bot_has_room_for_is_refused_before_anything_is_stored(bot, settings):
    settings.DOCENT_MAX_DOCUMENTS_PER_BOT = 4
    settings.DOCENT_MAX_FILES_PER_UPLOAD = 2  # several batches: none of them may be stored
    with pytest.raises(ValueError, match="has 5 entries; this bot has room for 4 more"):
        services.import_test_set(bot, "tiny.zip", beir_zip())
    assert not bot.documents.exists()


NFCORPUS = SHARED_DATA / "beir" / "nfcorpus"


@pytest.mark.skipif(not (NFCORPUS / "corpus.jsonl").is_file(), reason="the shared BEIR data is not here")
def test_a_real_beir_folder_is_read_with_its_test_split():
    beir = services.read_beir_folder(NFCORPUS)
    assert len(beir.corpus) == 3633
    assert len(beir.qrels) == 323  # nfcorpus's judged test queries
    assert {grade for judged in beir.qrels.values() for grade in judged.values()} == {1, 2}
