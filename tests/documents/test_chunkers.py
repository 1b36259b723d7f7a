import re

import pytest

from documents import parsers
from documents.chunkers import (
    STRATEGIES,
    ChunkDraft,
    chunk_pages,
    fixed_token_chunks,
    sentence_window_chunks,
    structure_chunks,
)
from documents.parsers import ParsedPage
from tests.conftest import FIXTURES


class WordTokenizer:
    """Splits on white space: one token per word, enough to test the windowing."""

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [match.span() for match in re.finditer(r"\S+", text)]


def words(n: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, start + n))


def sentences(count: int, length: int, start: int = 0) -> str:
    """`count` sentences of `length` words each, every word unique: "w0 w1 w2." …"""
    return " ".join(words(length, start + i * length) + "." for i in range(count))


def document_words(pages: list[ParsedPage]) -> list[str]:
    return [word for page in pages for word in page.text.split()]


def assert_chunks_fit(chunks: list[ChunkDraft], size: int, tokenizer=None) -> None:
    tokenizer = tokenizer or WordTokenizer()
    for chunk in chunks:
        assert chunk.token_count == len(tokenizer.token_spans(chunk.text)) <= size, chunk.text


def assert_no_text_lost(pages: list[ParsedPage], chunks: list[ChunkDraft]) -> None:
    """Each chunk is a run of the document's words, in order, and together they cover every word."""
    expected = document_words(pages)
    position = 0
    covered = 0
    for chunk in chunks:
        chunk_words = chunk.text.split()
        start = next(
            start for start in range(position, covered + 1) if expected[start : start + len(chunk_words)] == chunk_words
        )
        position, covered = start, max(covered, start + len(chunk_words))
    assert covered == len(expected)


def assert_each_chunk_lies_on_its_page(pages: list[ParsedPage], chunks: list[ChunkDraft]) -> None:
    """Every word of a chunk is on the chunk's page, except heading lines carried over from the page before."""
    page_of_word = {word: page.number for page in pages for word in page.text.split() if word.strip("#")}
    for chunk in chunks:
        body = [line for line in chunk.text.split("\n") if not line.startswith("#")]
        assert {page_of_word[word] for line in body for word in line.split()} <= {chunk.page}, chunk


# --- fixed ----------------------------------------------------------------------------


def test_windows_never_exceed_the_size_and_overlap_as_asked():
    page = ParsedPage(number=1, text=words(100))
    chunks = list(fixed_token_chunks([page], WordTokenizer(), size=30, overlap=10))
    assert_chunks_fit(chunks, 30)
    assert [chunk.text.split()[0] for chunk in chunks] == ["w0", "w20", "w40", "w60", "w80"][: len(chunks)]
    for previous, current in zip(chunks, chunks[1:], strict=False):
        assert previous.text.split()[-10:] == current.text.split()[:10]


def test_every_word_of_every_page_is_in_some_chunk_with_its_page_number():
    pages = [ParsedPage(number=1, text=words(45)), ParsedPage(number=2, text=""), ParsedPage(3, words(7, 1000))]
    chunks = list(fixed_token_chunks(pages, WordTokenizer(), size=20, overlap=5))
    covered = {(chunk.page, word) for chunk in chunks for word in chunk.text.split()}
    expected = {(1, word) for word in words(45).split()} | {(3, word) for word in words(7, 1000).split()}
    assert covered == expected
    assert {chunk.page for chunk in chunks} == {1, 3}
    assert_no_text_lost(pages, chunks)


# --- structure ------------------------------------------------------------------------

HANDBOOK = [
    ParsedPage(1, f"Preamble before any heading.\n\n# Benefits\n\n## Vacation\n\n{sentences(3, 4)}"),
    ParsedPage(2, f"{sentences(2, 4, 100)}\n\n## Parental leave\n{sentences(1, 6, 200)}\n\n# Expenses"),
    ParsedPage(3, f"{sentences(2, 5, 300)}\n\n{sentences(8, 5, 400)}"),
]


def structure(pages=HANDBOOK, size=20, overlap=0) -> list[ChunkDraft]:
    return list(structure_chunks(pages, WordTokenizer(), size=size, overlap=overlap))


def test_structure_chunks_carry_their_heading_path():
    chunks = structure()
    assert [chunk.heading_path for chunk in chunks] == [
        "",
        "Benefits › Vacation",
        "Benefits › Vacation",
        "Benefits › Parental leave",
        "Expenses",
        "Expenses",
        "Expenses",
    ]


def test_a_sections_first_chunk_starts_with_its_heading_lines():
    chunks = structure()
    assert chunks[1].text.startswith("# Benefits\n\n## Vacation\n\nw0 w1 w2 w3.")
    assert chunks[3].text.startswith("## Parental leave\nw200")
    # "# Expenses" ends page 2; it opens the chunk of its text on page 3.
    assert chunks[4].text.startswith("# Expenses\n\nw300")
    assert chunks[4].page == 3


def test_a_structure_chunk_never_mixes_two_sections():
    for chunk in structure():
        lines = [line for line in chunk.text.split("\n") if line.strip()]
        leading_headings = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
        assert not any(line.startswith("#") for line in lines[leading_headings:]), chunk.text


def test_structure_chunks_pack_whole_paragraphs_then_whole_sentences():
    chunks = structure()
    # Page 3's first paragraph (10 words) joins the heading whole; the second (40 words) can't fit
    # in a 20-token chunk, so it is packed sentence by sentence, never cutting one.
    assert chunks[4].text == f"# Expenses\n\n{sentences(2, 5, 300)}\n\n{sentences(1, 5, 400)}"
    assert chunks[5].text == sentences(4, 5, 405)
    assert chunks[6].text == sentences(3, 5, 425)


def test_a_heading_is_not_left_alone_when_the_paragraph_under_it_fills_a_chunk():
    pages = [ParsedPage(1, f"# Title\n\n{sentences(3, 4)}")]  # the paragraph alone is 12 tokens
    chunks = structure(pages, size=12)
    assert [chunk.text for chunk in chunks] == [f"# Title\n\n{sentences(2, 4)}", sentences(1, 4, 8)]


def test_a_section_runs_on_across_a_page_break_in_a_new_chunk():
    chunks = structure(size=200)
    vacation = [chunk for chunk in chunks if chunk.heading_path == "Benefits › Vacation"]
    assert [(chunk.page, chunk.text.split()[-1]) for chunk in vacation] == [(1, "w11."), (2, "w107.")]


def test_structure_chunks_fit_keep_every_word_and_lie_on_their_page():
    for size in (8, 13, 20, 200):
        chunks = structure(size=size)
        assert_chunks_fit(chunks, size)
        assert_no_text_lost(HANDBOOK, chunks)
        assert_each_chunk_lies_on_its_page(HANDBOOK, chunks)


def test_a_sentence_longer_than_the_size_is_the_only_thing_cut():
    pages = [ParsedPage(1, f"# Long\n\n{sentences(1, 4)} {words(25, 100)}. {sentences(1, 4, 200)}")]
    chunks = structure(pages, size=10)
    assert_chunks_fit(chunks, 10)
    assert_no_text_lost(pages, chunks)
    assert chunks[0].text == "# Long\n\nw0 w1 w2 w3."
    assert chunks[-1].text.endswith("w200 w201 w202 w203.")


def test_hash_lines_inside_code_fences_are_not_headings():
    pages = [ParsedPage(1, "# Setup\n\n```\n# install the tools\nmake\n```\n\nDone.")]
    chunks = structure(pages, size=50)
    assert [chunk.heading_path for chunk in chunks] == ["Setup"]


def test_structure_overlap_repeats_whole_pieces_within_a_section_only():
    pages = [ParsedPage(1, f"# A\n\n{sentences(6, 4)}\n\n# B\n\n{sentences(2, 4, 100)}")]
    chunks = structure(pages, size=12, overlap=4)
    assert_chunks_fit(chunks, 12)
    assert_no_text_lost(pages, chunks)
    section_a = [chunk for chunk in chunks if chunk.heading_path == "A"]
    for previous, current in zip(section_a, section_a[1:], strict=False):
        assert current.text.split()[:4] == previous.text.split()[-4:]
    first_of_b = next(chunk for chunk in chunks if chunk.heading_path == "B")
    assert first_of_b.text.startswith("# B")


def test_parsed_word_document_chunks_by_its_headings():
    pages = list(parsers.parse(FIXTURES / "handbook.docx", "handbook.docx"))
    chunks = list(structure_chunks(pages, WordTokenizer(), size=40))
    paths = {chunk.heading_path for chunk in chunks}
    assert {"Benefits › Vacation", "Benefits › Parental leave", "Expense codes"} <= paths
    table_chunk = next(chunk for chunk in chunks if "EXP-4471" in chunk.text)
    assert table_chunk.heading_path == "Expense codes"


# --- sentence -------------------------------------------------------------------------


def sentence_windows(pages, size, overlap) -> list[ChunkDraft]:
    return list(sentence_window_chunks(pages, WordTokenizer(), size=size, overlap=overlap))


def test_sentence_windows_hold_whole_sentences_and_step_back_by_the_overlap():
    pages = [ParsedPage(1, sentences(10, 5))]
    chunks = sentence_windows(pages, size=23, overlap=11)
    # Four 5-word sentences fit in 23 tokens; the next window repeats the last two (10 ≤ 11 tokens).
    assert [chunk.text for chunk in chunks] == [
        sentences(4, 5, 0),
        sentences(4, 5, 10),
        sentences(4, 5, 20),
        sentences(4, 5, 30),
    ]
    assert_chunks_fit(chunks, 23)
    assert_no_text_lost(pages, chunks)


def test_sentence_windows_overlap_never_exceeds_the_overlap_budget():
    pages = [ParsedPage(1, " ".join(words(length, 10 * i) + "." for i, length in enumerate([3, 7, 2, 6, 4, 5, 1, 8])))]
    for size, overlap in [(10, 0), (10, 3), (12, 6), (15, 9)]:
        chunks = sentence_windows(pages, size, overlap)
        assert_chunks_fit(chunks, size)
        assert_no_text_lost(pages, chunks)
        for previous, current in zip(chunks, chunks[1:], strict=False):
            repeated = [word for word in current.text.split() if word in previous.text.split()]
            assert len(repeated) <= overlap
            assert current.text.startswith(" ".join(repeated))
            assert all(chunk.text.endswith(".") for chunk in (previous, current))


def test_sentence_windows_stay_within_a_page():
    pages = [ParsedPage(1, sentences(3, 4)), ParsedPage(2, ""), ParsedPage(3, sentences(3, 4, 100))]
    chunks = sentence_windows(pages, size=10, overlap=4)
    for chunk in chunks:
        assert chunk.text in pages[0 if chunk.page == 1 else 2].text
    assert {chunk.page for chunk in chunks} == {1, 3}
    assert_no_text_lost(pages, chunks)
    assert_each_chunk_lies_on_its_page(pages, chunks)


def test_sentences_end_at_full_stops_but_not_after_abbreviations_or_initials():
    text = "Ask Dr. Smith, e.g. by mail. J. R. Doe agrees! Is it done? Yes.\n- item one\n- item two"
    chunks = sentence_windows([ParsedPage(1, text)], size=7, overlap=0)
    assert [chunk.text for chunk in chunks] == [
        "Ask Dr. Smith, e.g. by mail.",
        "J. R. Doe agrees! Is it done?",
        "Yes.\n- item one\n- item two",
    ]


def test_chinese_and_japanese_full_stops_end_sentences():
    class CharacterTokenizer:
        def token_spans(self, text: str) -> list[tuple[int, int]]:
            return [(index, index + 1) for index, char in enumerate(text) if not char.isspace()]

    text = "会议在星期一。午饭在十二点。休假二十五天。"
    chunks = list(sentence_window_chunks([ParsedPage(1, text)], CharacterTokenizer(), size=14, overlap=0))
    assert [chunk.text for chunk in chunks] == ["会议在星期一。午饭在十二点。", "休假二十五天。"]


# --- all strategies -------------------------------------------------------------------


def test_every_strategy_has_a_description_the_bot_settings_offer():
    from bots.models import Bot

    assert set(STRATEGIES) == set(Bot.Chunking.values)
    assert all(description.endswith(".") for description in STRATEGIES.values())


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_fits_the_size_and_keeps_every_word(strategy: str):
    chunks = list(chunk_pages(HANDBOOK, WordTokenizer(), strategy, size=12, overlap=0))
    assert_chunks_fit(chunks, 12)
    assert_no_text_lost(HANDBOOK, chunks)
    assert_each_chunk_lies_on_its_page(HANDBOOK, chunks)


def test_an_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="Unknown chunking strategy 'magic'"):
        chunk_pages(HANDBOOK, WordTokenizer(), "magic", size=10, overlap=0)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_impossible_sizes_are_refused(strategy: str, size: int, overlap: int):
    with pytest.raises(ValueError):
        list(chunk_pages([ParsedPage(1, "a b c")], WordTokenizer(), strategy, size=size, overlap=overlap))


# --- the real model's tokenizer -------------------------------------------------------


@pytest.fixture
def model(db):
    from retrieval.services import embedder

    return embedder()


def test_real_tokenizer_windows_fit_the_model_and_do_not_split_words(model):
    text = (FIXTURES / "onboarding.md").read_text() * 6
    chunks = list(fixed_token_chunks([ParsedPage(1, text)], model, size=40, overlap=8))
    assert len(chunks) > 3
    text_words = set(text.split())
    assert_chunks_fit(chunks, 40, model)
    for chunk in chunks:
        # First and last words are whole words of the source, not word-piece fragments.
        assert chunk.text.split()[0] in text_words
        assert chunk.text.split()[-1] in text_words


def test_real_tokenizer_structure_chunks_fit_and_keep_sections(model):
    pages = list(parsers.parse(FIXTURES / "handbook.docx", "handbook.docx")) + [
        ParsedPage(2, (FIXTURES / "onboarding.md").read_text() * 3)
    ]
    chunks = list(structure_chunks(pages, model, size=24, overlap=6))
    assert_chunks_fit(chunks, 24, model)
    assert_no_text_lost(pages, chunks)
    assert "Onboarding checklist › First week" in {chunk.heading_path for chunk in chunks}


def test_real_tokenizer_sentence_windows_fit_and_keep_every_word(model):
    pages = list(parsers.parse(FIXTURES / "handbook.pdf", "handbook.pdf"))
    pages.append(ParsedPage(5, "会议在星期一举行，请准时参加" * 40 + "。"))  # one long sentence: token windows
    chunks = list(sentence_window_chunks(pages, model, size=20, overlap=5))
    assert_chunks_fit(chunks, 20, model)
    assert_no_text_lost(pages[:4], [chunk for chunk in chunks if chunk.page <= 4])
    assert "".join(chunk.text for chunk in chunks if chunk.page == 5) == pages[4].text
    assert {chunk.page for chunk in chunks} == {1, 2, 3, 4, 5}
