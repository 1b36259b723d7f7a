"""The quoted sentences are marked in the passage shown under a citation."""

from bots.templatetags.docent import highlight


def test_a_quote_is_marked_across_the_passages_wrapped_lines_and_the_passage_stays_escaped():
    passage = "Vacation and <leave>\nUp to 5 unused vacation\ndays can be carried over. Requests need approval."
    html = highlight(passage, ["Up to 5 unused vacation days can be carried over."])
    assert "<mark>Up to 5 unused vacation\ndays can be carried over.</mark>" in html
    assert "&lt;leave&gt;" in html and "<leave>" not in html
    assert html.count("<mark>") == 1
