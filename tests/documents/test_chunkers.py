import re

import pytest

from documents.chunkers import fixed_token_chunks
from documents.parsers import ParsedPage
from tests.conftest import FIXTURES


class WordTokenizer:
    """Splits on white space: one token per word, enough to test the windowing."""

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [match.span() for match in re.finditer(r"\S+", text)]


def words(n: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, start + n))


def test_windows_never_exceed_the_size_and_overlap_as_asked():
    page = ParsedPage(number=1, text=words(100))
    chunks = list(fixed_token_chunks([page], WordTokenizer(), size=30, overlap=10))
    assert all(chunk.token_count <= 30 for chunk in chunks)
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


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_impossible_sizes_are_refused(size: int, overlap: int):
    with pytest.raises(ValueError):
        list(fixed_token_chunks([ParsedPage(1, "a b c")], WordTokenizer(), size=size, overlap=overlap))


def test_real_tokenizer_windows_fit_the_model_and_do_not_split_words():
    from retrieval.services import embedder

    model = embedder()
    text = (FIXTURES / "onboarding.md").read_text() * 6
    chunks = list(fixed_token_chunks([ParsedPage(1, text)], model, size=40, overlap=8))
    assert len(chunks) > 3
    text_words = set(text.split())
    for chunk in chunks:
        assert len(model.token_spans(chunk.text)) <= 40
        # First and last words are whole words of the source, not word-piece fragments.
        assert chunk.text.split()[0] in text_words
        assert chunk.text.split()[-1] in text_words
