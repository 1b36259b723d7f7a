"""How an answer's text is rendered: escaped, citation markers linked, Markdown links of quoted passages followed."""

from types import SimpleNamespace

from bots.templatetags.docent import with_citations

CITATION = {"n": 1, "document_name": "README.md", "page": None, "location": "Comma Survey"}


def rendered(text: str) -> str:
    return str(with_citations(SimpleNamespace(pk=7, text=text, citations=[CITATION])))


def test_a_quoted_markdown_link_becomes_a_link_and_the_citation_stays_one():
    html = rendered("The data behind [the story](https://fivethirtyeight.com/oxford-comma/?a=1&b=2). [1]")
    assert html == (
        'The data behind <a href="https://fivethirtyeight.com/oxford-comma/?a=1&amp;b=2"'
        ' target="_blank" rel="noopener noreferrer nofollow">the story</a>.'
        ' <a class="cite" href="#cite-7-1" title="README.md, Comma Survey">[1]</a>'
    )


def test_only_web_addresses_become_links_and_everything_stays_escaped():
    html = rendered("[run](javascript:alert(1)) <b>bold</b> [2]")
    assert "<a" not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "[2]" in html  # [2] has no citation: left as written
    # A quote in the address stays a character of it: it can't end the attribute.
    html = rendered('[x](https://a.org/"onmouseover=alert)')
    assert html.startswith('<a href="https://a.org/&quot;onmouseover=alert" target=')


def test_an_image_shows_its_alt_text_and_is_not_fetched():
    html = rendered("PDF.js ![build status](https://ci.example.org/badge.svg) is a PDF viewer. [1]")
    assert html.startswith("PDF.js build status is a PDF viewer.")
    assert "<img" not in html and "badge.svg" not in html
