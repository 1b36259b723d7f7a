from pathlib import Path

import pytest

from documents import parsers
from tests.conftest import FIXTURES


def parse(name: str) -> list[parsers.ParsedPage]:
    return list(parsers.parse(FIXTURES / name, name))


def test_pdf_pages_keep_their_numbers_and_text():
    pages = parse("handbook.pdf")
    assert [page.number for page in pages] == [1, 2, 3, 4]
    assert "25 days of paid vacation" in pages[1].text
    assert "EXP-4471" in pages[2].text
    assert "EXP-4471" not in pages[1].text


def test_text_and_markdown_are_one_page_with_paragraphs_kept():
    (canteen,) = parse("canteen.txt")
    assert canteen.number == 1
    assert "opens at 11:30" in canteen.text
    assert "\n\n" in canteen.text
    (onboarding,) = parse("onboarding.md")
    assert onboarding.text.startswith("# Onboarding checklist")


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


def test_legacy_encodings_are_decoded():
    assert parsers.decode_text("Café".encode("cp1252")) == "Café"
    assert parsers.decode_text("\ufeffCafé".encode()) == "Café"
    assert parsers.decode_text("Café".encode("utf-16")) == "Café"
