"""The built-in answerer quotes sentences that answer the question, refuses otherwise, and streams them one by one.

The texts are the documents where a first-time user saw it go wrong (Google's SRE book
chapter on monitoring, the pdf.js README), cut to the passages that matter.
"""

import pytest

from retrieval.answerers import ScoredChunk, extractive_answer, sentence_units, stream_extractive_answer


def chunk(chunk_id: int, text: str, heading_path: str = "") -> ScoredChunk:
    return ScoredChunk(
        chunk_id=chunk_id, document_id=1, document_name="doc.md", page=1, text=text, ordinal=chunk_id,
        heading_path=heading_path,
    )  # fmt: skip


@pytest.fixture(scope="module")
def ask():
    from retrieval.embedders import get_embedder

    encode = get_embedder().encode

    def ask(question: str, chunks: list[ScoredChunk], threshold: float = 0.25):
        return extractive_answer(encode([question])[0], chunks, encode, threshold, question=question)

    return ask


SRE = [
    chunk(1, "# Monitoring Distributed Systems\n\nIf a page merely merits a robotic response, it shouldn't be a page. "
          "If the employee is at home, a page interrupts their personal time, and perhaps even their sleep. "
          "If an employee is at work, a page interrupts their workflow.", "Monitoring Distributed Systems"),
    chunk(2, "# Definitions\n\nThere is no uniformly shared vocabulary for discussing monitoring.\n\n"
          "- Monitoring\n- Collecting, processing, aggregating, and displaying real-time quantitative data about a "
          "system, such as query counts and types, error counts and types, processing times, and server lifetimes.\n"
          "- White-box monitoring\n- Monitoring based on metrics exposed by the internals of the system, including "
          "logs, interfaces like the Java Virtual Machine Profiling Interface, or an HTTP handler that emits internal "
          "statistics.\n- Black-box monitoring\n- Testing externally visible behavior as a user would see it.",
          "Monitoring Distributed Systems › Definitions"),
    chunk(3, "# Black-Box Versus White-Box\n\nWe combine heavy use of white-box monitoring with modest but critical "
          "uses of black-box monitoring. The simplest way to think about black-box monitoring versus white-box "
          "monitoring is that black-box monitoring is symptom-oriented and represents active problems.",
          "Monitoring Distributed Systems › Black-Box Versus White-Box"),
]  # fmt: skip

PDFJS_TITLE = "PDF.js [![CI](https://github.com/mozilla/pdf.js/actions/workflows/ci.yml/badge.svg)](https://github.com/mozilla/pdf.js/actions)"
PDFJS = [
    chunk(1, f"# {PDFJS_TITLE}\n\nPDF.js is a Portable Document Format (PDF) viewer that is built with HTML5.\n\n"
          "PDF.js is community-driven and supported by Mozilla. Our goal is to\ncreate a general-purpose, web "
          "standards-based platform for parsing and\nrendering PDFs.", PDFJS_TITLE),
    chunk(2, "## Contributing\n\nPDF.js is an open source project and always looking for more contributors. To\n"
          "get involved, visit:", f"{PDFJS_TITLE} › Contributing"),
    chunk(3, "## Including via a CDN\n\nPDF.js is hosted on several free CDNs:\n - https://www.jsdelivr.com/package/"
          "npm/pdfjs-dist\n - https://unpkg.com/pdfjs-dist/", f"{PDFJS_TITLE} › Including via a CDN"),
    chunk(4, "## Questions\n\nCheck out our FAQs and get answers to common questions:\n\n+ https://github.com/mozilla/"
          "pdf.js/wiki/Frequently-Asked-Questions\n\nTalk to us on Matrix:\n\n+ https://chat.mozilla.org/#/room/"
          "#pdfjs:mozilla.org", f"{PDFJS_TITLE} › Questions"),
]  # fmt: skip


def test_a_question_sharing_only_a_word_with_the_documents_is_refused(ask):
    # The sentence about an employee at home is the most similar one (0.36), but says nothing about leave.
    answer = ask("How many weeks of paid parental leave does an employee get at home?", SRE)
    assert answer.refused
    assert answer.citations == []


def test_a_glossary_term_is_context_and_its_definition_is_the_answer(ask):
    answer = ask("What is black-box monitoring?", SRE)
    assert not answer.refused
    assert answer.text.startswith("- Testing externally visible behavior as a user would see it. [1]")
    assert "- Black-box monitoring [" not in answer.text


def test_a_faq_question_line_is_never_quoted_the_sentence_under_it_is():
    faq = "Alerting FAQ\n\nWhat is black-box monitoring?\nIt tests externally visible behavior as a user would see it."
    units = sentence_units(faq, "Alerting FAQ")
    assert [unit.text for unit in units] == ["It tests externally visible behavior as a user would see it."]
    assert units[0].context == "Alerting FAQ › What is black-box monitoring?"
    assert units[0].leads


def test_a_question_mark_inside_a_markdown_link_does_not_cut_the_sentence(ask):
    readme = (
        "# Comma Survey\n\nThis folder contains the data behind the story [Elitist, Superfluous, Or Popular? "
        "We Polled Americans on the Oxford Comma](https://fivethirtyeight.com/features/oxford-comma/). "
        "The survey asked 1,129 people which sentence they preferred."
    )  # as in fivethirtyeight's data README
    units = sentence_units(readme, "Comma Survey")
    assert [unit.text for unit in units][0].startswith("This folder contains the data behind the story [Elitist")
    assert [unit.text for unit in units][0].endswith("oxford-comma/).")
    assert not any(unit.label.startswith("Elitist") for unit in units)  # not taken for a FAQ's question
    answer = ask("What story is the comma survey data behind?", [chunk(1, readme, "Comma Survey")])
    assert "This folder contains the data behind the story [Elitist, Superfluous, Or Popular? We" in answer.text


def test_the_section_answering_the_question_beats_sentences_that_only_name_the_topic(ask):
    for question in ["Where can I ask questions about PDF.js?", "Can I ask questions about PDF.js?"]:
        answer = ask(question, PDFJS)
        assert answer.text.startswith("Check out our FAQs and get answers to common questions: [1]"), question
        assert answer.citations[0].chunk.chunk_id == 4


def test_a_long_pasted_question_is_not_answered_with_an_unrelated_sentence(ask):
    story = (
        "Last spring our team moved offices and the move took far longer than anyone planned, because the new "
        "building had no working lifts for the first month and everything had to be carried up the stairs by hand. "
    )
    question = (story * 12)[:2400] + " Given all that, who should pay for the broken desk lamp?"
    assert len(question) > 2400
    answer = ask(question, SRE)
    assert answer.refused


def test_the_answer_streams_one_chosen_sentence_at_a_time(ask):
    from retrieval.embedders import get_embedder

    encode = get_embedder().encode
    rules = [chunk(1, "Passwords must be at least 14 characters long. Report a lost laptop within one hour.")]
    question = "How long must a password be?"
    stream = stream_extractive_answer(encode([question])[0], rules, encode, 0.25, max_sentences=3, question=question)
    pieces = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as finished:
            answer = finished.value
            break
    assert pieces[0] == "Passwords must be at least 14 characters long. [1]"
    assert "".join(pieces) == answer.text
    assert all(piece.rstrip().endswith("]") for piece in pieces)  # each piece is a whole cited sentence


@pytest.mark.django_db
def test_chat_streams_the_extractive_answer_sentence_by_sentence(bot, index_texts):
    from retrieval import services

    index_texts(bot, {"monitoring.md": SRE[2].text, "glossary.md": SRE[1].text})
    events = list(services.answer_stream(bot, "What is black-box monitoring?"))
    tokens = [event.text for event in events if event.kind == "token"]
    done = events[-1]
    assert done.kind == "done"
    assert "".join(tokens) == done.answer.text
    assert tokens[0].startswith("- Testing externally visible behavior") and tokens[0].endswith("]")
    assert "first_token" in done.trace.timings_ms
