import io
import re
import time
import zipfile
from pathlib import Path

import pytest

from documents import parsers
from tests.conftest import FIXTURES, SHARED_DATA

SHARED_DOCS = SHARED_DATA / "docs"
CORPUS_FOLDERS = {"pdf", "docx", "html", "md", "csv"}  # html_reference/ holds expected outputs, not uploads
needs_shared_docs = pytest.mark.skipif(
    not SHARED_DOCS.is_dir(), reason="the shared corpus of real documents is not here (set DOCENT_SHARED_DATA)"
)


def parse(name: str) -> list[parsers.ParsedPage]:
    return list(parsers.parse(FIXTURES / name, name))


def parse_bytes(tmp_path: Path, filename: str, data: bytes) -> list[parsers.ParsedPage]:
    path = tmp_path / filename
    path.write_bytes(data)
    return list(parsers.parse(path, filename))


def parse_error(tmp_path: Path, filename: str, data: bytes) -> str:
    with pytest.raises(parsers.ParseError) as error:
        parse_bytes(tmp_path, filename, data)
    return str(error.value)


# --- PDF ---------------------------------------------------------------------------


def test_pdf_pages_keep_their_numbers_and_text():
    pages = parse("handbook.pdf")
    assert [page.number for page in pages] == [1, 2, 3, 4]
    assert "25 days of paid vacation" in pages[1].text
    assert "EXP-4471" in pages[2].text
    assert "EXP-4471" not in pages[1].text


def test_pdf_pages_without_text_are_yielded_empty_so_they_can_be_reported(tmp_path: Path):
    from pypdf import PdfReader, PdfWriter

    handbook = PdfReader(FIXTURES / "handbook.pdf")
    writer = PdfWriter()
    writer.add_page(handbook.pages[0])
    for _ in range(2):
        writer.add_blank_page(width=595, height=842)
    writer.add_page(handbook.pages[1])
    buffer = io.BytesIO()
    writer.write(buffer)

    pages = parse_bytes(tmp_path, "partly-scanned.pdf", buffer.getvalue())

    assert [page.number for page in pages] == [1, 2, 3, 4]
    assert [page.number for page in pages if not page.text] == [2, 3]
    assert "25 days of paid vacation" in pages[3].text


@pytest.mark.parametrize(
    ("numbers", "described"),
    [([3, 4, 5, 6, 7, 9], "3–7, 9"), ([9, 3, 4, 3], "3–4, 9"), ([2], "2"), ([1, 3, 5], "1, 3, 5"), ([], "")],
)
def test_page_ranges_are_described_briefly(numbers: list[int], described: str):
    assert parsers.describe_page_ranges(numbers) == described


def test_page_count_is_cheap_and_one_for_single_page_formats():
    assert parsers.page_count(FIXTURES / "handbook.pdf") == 4
    assert parsers.page_count(FIXTURES / "handbook.docx") == 1
    assert parsers.page_count(FIXTURES / "corrupt.pdf") == 0


# --- Word ----------------------------------------------------------------------------


def test_word_headings_become_markdown_headings_and_paragraphs_stay_apart():
    (page,) = parse("handbook.docx")
    assert page.number == 1
    assert page.text.startswith("# Northwind Employee Handbook\n\nThis handbook explains")
    assert "\n# Benefits\n\n## Vacation\n\nFull-time employees receive 25 days" in page.text
    # "Policy Heading" is a custom style based on Heading 2.
    assert "\n## Parental leave\n\nParental leave is 16 weeks" in page.text
    assert "- Tell the People team at least eight weeks ahead." in page.text
    assert page.text.endswith("\n\nReceipts are kept for ten years.")  # inside a content control


def test_word_tables_are_rows_of_cells_and_page_headers_are_left_out():
    (page,) = parse("handbook.docx")
    assert "Code | Purpose\nEXP-4471 | Client entertainment\nEXP-2210 | Train tickets\n" in page.text
    assert "\nAsk finance about anything else\n" in page.text  # a merged cell, once
    assert "page header" not in page.text
    assert "page footer" not in page.text


def test_a_damaged_word_document_is_reported_as_damaged(tmp_path: Path):
    truncated = (FIXTURES / "handbook.docx").read_bytes()[:5000]
    assert "Word document is damaged" in parse_error(tmp_path, "handbook.docx", truncated)


def zip_of(names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, "<x/>")
    return buffer.getvalue()


@pytest.mark.parametrize("filename", ["photos.zip", "photos.docx", "photos"])
def test_a_zip_that_is_not_a_word_document_is_refused_clearly(tmp_path: Path, filename: str):
    message = parse_error(tmp_path, filename, zip_of(["holiday/beach.txt"]))
    assert message == "This is a ZIP archive, not a Word document. Unzip it and upload the documents inside one by one."


@pytest.mark.parametrize(
    ("filename", "names", "reason"),
    [
        ("budget.xlsx", ["[Content_Types].xml", "xl/workbook.xml"], "Save the sheet as CSV"),
        ("deck.pptx", ["[Content_Types].xml", "ppt/presentation.xml"], "Save it as PDF"),
    ],
)
def test_other_office_formats_say_what_to_do_instead(tmp_path: Path, filename: str, names: list[str], reason: str):
    assert reason in parse_error(tmp_path, filename, zip_of(names))


def test_legacy_and_password_protected_office_files_are_refused_clearly(tmp_path: Path):
    ole_header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    assert "older Microsoft Office file" in parse_error(tmp_path, "minutes.doc", ole_header)


# --- HTML ----------------------------------------------------------------------------


def test_web_page_keeps_headings_lists_and_tables_and_drops_page_furniture():
    (page,) = parse("intranet.html")
    assert page.text.startswith("# Travel policy\n\nBook all business trips")
    assert "at least two weeks before you leave." in page.text  # inline markup and line breaks joined
    assert "\n## Trains and flights\n" in page.text
    assert "- Second class for trains.\n- Economy class for flights." in page.text
    assert "City | Limit per night\nLondon | £180\nParis | €170" in page.text
    furniture = [
        *["tracking-snippet", "font-family"],  # script and style
        *["intranet home", "Search the intranet", "People directory"],  # banner, search form, navigation
        *["Expense policy", "Cookie settings", "Draft note"],  # sidebar, footer, hidden paragraph
    ]
    for text in furniture:
        assert text not in page.text


def test_code_in_a_web_page_is_fenced_so_its_comments_are_not_headings():
    (page,) = parse("intranet.html")
    assert "```\nExpense code for hotels: EXP-3300\n# keep the receipt\n```" in page.text


def test_a_saved_web_page_is_read_as_html_whatever_its_name(tmp_path: Path):
    html = b"<!-- saved from url=(0014)about:internet -->\n<!DOCTYPE html><html><body><h2>Hi</h2><p>there</p>"
    (page,) = parse_bytes(tmp_path, "page.txt", html)
    assert page.text == "## Hi\n\nthere"


def test_the_charset_a_web_page_declares_is_used():
    latin = '<html><head><meta charset="iso-8859-1"></head><body><p>Café €5</p></body></html>'.encode("cp1252")
    assert parsers.html_to_text(parsers.decode_html(latin)) == "Café €5"
    japanese = '<meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS"><p>会議</p>'
    assert parsers.html_to_text(parsers.decode_html(japanese.encode("shift_jis"))) == "会議"


def test_deeply_nested_markup_does_not_exhaust_the_stack():
    nested = "<div>" * 2000 + "deep text" + "</div>" * 2000
    text = parsers.html_to_text(f"<html><body><p>start</p>{nested}<p>end</p></body></html>")
    assert text.startswith("start")


def reference_sentences(name: str) -> list[str]:
    import lxml.html

    reference = (SHARED_DOCS / "html_reference" / f"readability__{name}__expected.html").read_text("utf-8")
    text = lxml.html.fromstring(reference).text_content()
    sentences = (comparable(sentence) for sentence in re.split(r"(?<=[.!?])\s+", text))
    return [sentence for sentence in sentences if len(sentence.split()) >= 5]


def comparable(text: str) -> str:
    return re.sub(r"\W+", " ", text).lower().strip()


@needs_shared_docs
@pytest.mark.parametrize(
    ("name", "navigation"),
    [
        ("google-sre-book-1", ["Table of Contents", "Part II - Principles", "5. Eliminating Toil"]),
        ("lemonde-1", ["S'abonner au Monde à partir de 1 €", "Boutique Le Monde", "Courrier international"]),
    ],
)
def test_main_content_of_real_web_pages_matches_the_readability_reference(name: str, navigation: list[str]):
    source = SHARED_DOCS / "html" / f"readability__test__test-pages__{name}__source.html"
    (page,) = list(parsers.parse(source, source.name))
    expected = reference_sentences(name)
    found = comparable(page.text)
    share = sum(sentence in found for sentence in expected) / len(expected)
    assert share >= 0.9
    for link in navigation:
        assert link not in page.text


# --- Markdown and plain text ---------------------------------------------------------


def test_text_and_markdown_are_one_page_with_paragraphs_kept():
    (canteen,) = parse("canteen.txt")
    assert canteen.number == 1
    assert "opens at 11:30" in canteen.text
    assert "\n\n" in canteen.text
    (onboarding,) = parse("onboarding.md")
    assert onboarding.text.startswith("# Onboarding checklist")


def test_markdown_loses_its_front_matter_and_underlined_headings_become_hash_headings():
    (page,) = parse("policy-front-matter.md")
    assert page.text.startswith("# Remote work policy\n\nEveryone may work from home")
    assert "\n## Equipment\n" in page.text
    assert "owner: People team" not in page.text
    # Indentation is Markdown syntax (an indented code block here) and is kept.
    assert "\n    # not a heading: an indented code block\n" in page.text


def test_a_thematic_break_at_the_top_is_not_mistaken_for_front_matter():
    text = "---\n\nIntro paragraph.\n\n---\n\nMore text."
    assert parsers.markdown_text(text) == text


def test_utf16_text_is_read_not_refused_as_binary(tmp_path: Path):
    (page,) = parse_bytes(tmp_path, "notes.txt", "Grüße aus München\n".encode("utf-16"))
    assert page.text == "Grüße aus München"


def test_legacy_encodings_are_decoded():
    assert parsers.decode_text("Café".encode("cp1252")) == "Café"
    assert parsers.decode_text("naïve résumé, Ærø".encode("cp1252")) == "naïve résumé, Ærø"
    assert parsers.decode_text("\ufeffCafé".encode()) == "Café"
    assert parsers.decode_text("Café".encode("utf-16")) == "Café"
    japanese = "日本語のテキストです。会議は月曜日に行います。"
    assert parsers.decode_text(japanese.encode("shift_jis")) == japanese


# --- CSV -----------------------------------------------------------------------------


def test_csv_rows_become_lines_named_by_the_header():
    # people.csv: cp1252, semicolons, CRLF, a quoted value with a quote and a semicolon, a blank row.
    (page,) = parse("people.csv")
    assert page.text == (
        "name: José García; team: Finance; office: München; note: Café lover\n\n"
        'name: Alice Smith; team: Engineering; office: London; note: Prefers "tea"; not coffee\n\n'
        "name: Bob Lee; team: People"
    )


def test_each_csv_paragraph_knows_the_row_a_spreadsheet_shows_it_on():
    # people.csv's rows: header 1, José 2, Alice 3, an all-empty row 4, Bob 5.
    text = (FIXTURES / "people.csv").read_bytes().decode("cp1252")
    assert parsers.csv_row_numbers(text) == [2, 3, 5]
    # A blank line above the header and a blank row count; a cell spanning two lines is one row.
    assert parsers.csv_row_numbers('\nwho,what\nAda,"lunch\nthen a walk"\n\nBob,tea\n') == [3, 5]
    assert parsers.spreadsheet_rows(FIXTURES / "people.csv", "people.csv") == [2, 3, 5]


def test_tab_separated_utf16_files_are_read(tmp_path: Path):
    data = "city\tlimit\nLondon\t180\nParis\t170\n".encode("utf-16")
    (page,) = parse_bytes(tmp_path, "limits.tsv", data)
    assert page.text == "city: London; limit: 180\n\ncity: Paris; limit: 170"


def test_a_tsv_with_commas_in_its_values_is_split_on_tabs_and_leading_blank_lines_are_skipped(tmp_path: Path):
    (page,) = parse_bytes(tmp_path, "notes.tsv", b"\n\nwho\twhat\nAda, Bob\tlunch, then a walk\n")
    assert page.text == "who: Ada, Bob; what: lunch, then a walk"


def test_extra_cells_and_unnamed_columns_get_a_column_number(tmp_path: Path):
    (page,) = parse_bytes(tmp_path, "odd.csv", b"name,,role\nAda,x,Engineer,late\n")
    assert page.text == "name: Ada; column 2: x; role: Engineer; column 4: late"


def test_a_csv_with_only_a_header_is_refused(tmp_path: Path):
    assert "no data rows" in parse_error(tmp_path, "empty.csv", b"name,role\n")


def test_a_malformed_csv_names_the_line(tmp_path: Path):
    data = b'name,note\nAda,"never closed\n' + b"x" * 200_000 + b"\n"
    assert "quote that is never closed, in the row that starts on line 2" in parse_error(tmp_path, "broken.csv", data)


@needs_shared_docs
def test_real_csv_with_crlf_and_with_a_legacy_encoding_parse():
    crlf = SHARED_DOCS / "csv" / "fivethirtyeight__cabinet-turnover__cabinet-turnover.csv"
    (page,) = list(parsers.parse(crlf, crlf.name))
    assert page.text.startswith("president: Carter; position: OMB Director; appointee: Bert Lance;")
    assert "\r" not in page.text
    legacy = SHARED_DOCS / "csv" / "fivethirtyeight__sleeping-alone-data__sleeping-alone-data.csv"
    (page,) = list(parsers.parse(legacy, legacy.name))
    assert "\ufffd" not in page.text


# --- Kinds and refusals --------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "filename", "kind"),
    [
        (b"%PDF-1.7\n", "report.txt", "pdf"),
        (b"PK\x03\x04....word/document.xml", "report", "docx"),
        (b"<!DOCTYPE html><html>", "page.txt", "html"),
        (b"<p>fragment</p>", "page.htm", "html"),
        (b"a,b\n1,2\n", "data.csv", "csv"),
        (b"a\tb\n1\t2\n", "data.tsv", "csv"),
        (b"# Title\n", "notes.md", "markdown"),
        (b"Some notes\n", "notes", "text"),
        (b"\xff\xfeh\x00i\x00", "notes.txt", "text"),
    ],
)
def test_kind_is_sniffed_from_content_first(head: bytes, filename: str, kind: str):
    assert parsers.sniff_kind(head, filename) == kind


def test_content_wins_over_the_extension(tmp_path: Path):
    renamed = tmp_path / "handbook.txt"
    renamed.write_bytes((FIXTURES / "handbook.pdf").read_bytes())
    pages = list(parsers.parse(renamed, "handbook.txt"))
    assert len(pages) == 4


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty.txt", "The file is empty."),
        ("encrypted.pdf", "password-protected"),
        ("corrupt.pdf", "damaged"),
        ("scanned.pdf", "No text could be extracted"),
        ("pixel.png", "can't read this kind of file (.png)"),
    ],
)
def test_bad_files_raise_a_reason_a_person_understands(name: str, reason: str):
    with pytest.raises(parsers.ParseError) as error:
        parse(name)
    assert reason in str(error.value)


def test_a_pdf_encrypted_with_an_empty_password_is_opened():
    # secHandler.pdf only restricts editing; it must not be reported as password-protected.
    with pytest.raises(parsers.ParseError) as error:
        parse("empty-password.pdf")
    assert "password" not in str(error.value)


def test_a_binary_file_named_txt_is_refused(tmp_path: Path):
    fake = tmp_path / "notes.txt"
    fake.write_bytes((FIXTURES / "pixel.png").read_bytes())
    with pytest.raises(parsers.ParseError, match="can't read this kind of file"):
        list(parsers.parse(fake, "notes.txt"))


def test_unsupported_text_formats_list_what_is_supported(tmp_path: Path):
    message = parse_error(tmp_path, "config.json", b'{"a": 1}')
    assert message == f"Docent can't read .json files yet. Supported: {parsers.SUPPORTED_DESCRIPTION}."


@needs_shared_docs
def test_every_file_of_the_shared_corpus_parses_or_says_why_not():
    """Broken, encrypted, scanned, CJK, fuzzed: ParseError at worst, never another exception or a hang.

    The whole corpus (268 files) takes about 15 s, most of it in three long PDFs.
    """
    files = sorted(p for p in SHARED_DOCS.rglob("*") if p.is_file() and p.parent.name in CORPUS_FOLDERS)
    assert len(files) > 200
    outcomes = {"parsed": 0, "refused": 0}
    for path in files:
        started = time.monotonic()
        try:
            pages = list(parsers.parse(path, path.name))
        except parsers.ParseError as error:
            assert str(error).endswith("."), path.name  # a sentence for a person, not an exception's repr
            outcomes["refused"] += 1
        else:
            assert pages and all(page.number >= 1 for page in pages), path.name
            outcomes["parsed"] += 1
        assert time.monotonic() - started < 30, f"{path.name} took too long"
    assert outcomes["parsed"] > outcomes["refused"]
