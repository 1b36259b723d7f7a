import pytest

from retrieval.answerers import NOT_COVERED, ScoredChunk, extractive_answer, split_sentences


def chunk(chunk_id: int, text: str, page: int = 1, document_id: int = 1) -> ScoredChunk:
    return ScoredChunk(
        chunk_id=chunk_id, document_id=document_id, document_name=f"doc{document_id}.pdf", page=page,
        text=text, ordinal=chunk_id,
    )  # fmt: skip


@pytest.fixture(scope="module")
def encode():
    from retrieval.embedders import get_embedder

    return get_embedder().encode


CHUNKS = [
    chunk(1, "Vacation and leave\nFull-time employees receive 25 days of paid vacation per calendar year. "
          "Parental leave is 16 weeks at full pay.", page=2),
    chunk(2, "Passwords must be at least 14 characters long. Report a lost laptop within one hour.", page=4),
]  # fmt: skip


def test_sentences_rejoin_wrapped_lines_and_skip_headings():
    text = (
        "Vacation and leave\nEmployees receive 25 days of paid\nvacation per year. Ask HR first.\n\n- bring your badge"
    )
    assert split_sentences(text) == [
        "Employees receive 25 days of paid vacation per year.",
        "Ask HR first.",
        "- bring your badge",
    ]


def test_on_topic_question_is_answered_with_cited_sentences(encode):
    question = encode(["How many vacation days do full-time employees get?"])[0]
    answer = extractive_answer(question, CHUNKS, encode, threshold=0.4)
    assert not answer.refused
    assert "25 days of paid vacation" in answer.text
    assert "[1]" in answer.text
    assert answer.citations[0].chunk.page == 2
    assert "Vacation and leave" not in answer.text


def test_off_topic_question_is_refused_without_citations(encode):
    question = encode(["What is the boiling point of mercury?"])[0]
    answer = extractive_answer(question, CHUNKS, encode, threshold=0.4)
    assert answer.refused
    assert answer.text == NOT_COVERED
    assert answer.citations == []


def test_citation_numbers_follow_the_order_of_the_text(encode):
    # Sentences stream best first as they are chosen, so [1] is the first cited in the text, not in the document.
    question = encode(["What are the rules for passwords and vacation days?"])[0]
    answer = extractive_answer(question, CHUNKS, encode, threshold=0.2, max_sentences=4)
    numbers = [citation.n for citation in answer.citations]
    assert numbers == sorted(numbers)
    assert {citation.chunk.chunk_id for citation in answer.citations} == {1, 2}
    assert [answer.text.index(f"[{n}]") for n in numbers] == sorted(answer.text.index(f"[{n}]") for n in numbers)


def test_no_chunks_means_no_answer(encode):
    assert extractive_answer(encode(["anything"])[0], [], encode, threshold=0.4).refused


def test_the_same_sentence_in_two_documents_is_quoted_once(encode):
    same = "Full-time employees receive 25 days of paid vacation per calendar year."
    chunks = [chunk(1, same, page=2, document_id=1), chunk(2, same, page=1, document_id=2)]
    answer = extractive_answer(encode(["How many vacation days?"])[0], chunks, encode, threshold=0.2)
    assert answer.text.count(same) == 1
    assert len(answer.citations) == 1


def test_sentences_do_not_end_at_initials_or_titles_before_a_name():
    text = (
        "The plan was approved by superintendent William H. Maxwell of New York. "
        "It was intercepted by safety T. J. Ward in the end zone. Ask Dr. Smith about it. The U.S. Navy agreed."
    )
    assert split_sentences(text) == [
        "The plan was approved by superintendent William H. Maxwell of New York.",
        "It was intercepted by safety T. J. Ward in the end zone.",
        "Ask Dr. Smith about it.",
        "The U.S. Navy agreed.",
    ]


def test_a_question_naming_one_code_among_many_alike_quotes_that_codes_sentence(encode):
    # Codes that share their first characters are different things: cut to a stem, they all
    # matched the question, no sentence held anything specific, and the answer was a refusal.
    sections = [
        chunk(10 + n, f"The password policy {verb} in section PAS-02571{n:02d}. It covers laptops.", document_id=n)
        for n, verb in enumerate(["limits interns", "explains customers", "protects teams", "allows visitors"])
    ]
    question = "What does the password policy in section PAS-0257102 say?"
    answer = extractive_answer(encode([question])[0], sections, encode, threshold=0.25, question=question)
    assert not answer.refused
    assert answer.text.startswith("The password policy protects teams in section PAS-0257102.")
