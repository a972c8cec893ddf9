"""Sentence ids in a chapter document: spans inserted as text, inline elements
split at a sentence boundary, a holder's id where a span cannot go, existing ids
kept, and the result always well-formed."""
from __future__ import annotations

import re
from xml.etree import ElementTree

from gflite.books import sentencemarks, xhtml
from gflite.books.anchors import Place

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>T</title></head><body>')
TAIL = "</body></html>"


def marked(body: str, sentences: list[str], **kw) -> tuple[str, dict[int, str]]:  # type: ignore[no-untyped-def]
    """Mark each of ``sentences`` (found in order in the document's text) and
    return the document and its ids."""
    source = HEAD + body + TAIL
    doc = xhtml.parse(source, name="t", origins=True)
    text = "\n\n".join(b.text for b in doc.blocks)
    places, at = {}, 0
    for n, s in enumerate(sentences):
        i = text.index(s, at)
        at = i + len(s)
        block = max((k for k, b in enumerate(doc.blocks) if text.find(b.text) <= i), default=0)
        start = text.find(doc.blocks[block].text)
        origins = doc.blocks[block].origins
        places[n] = Place("t", origins[i - start], origins[at - 1 - start])
    result = sentencemarks.mark(source, doc.tags, places, name="t", **kw)
    return result.text, result.ids


def element_texts(document: str, ids: dict[int, str]) -> list[str]:
    root = ElementTree.fromstring(document.encode())
    by_id = {el.get("id"): el for el in root.iter() if el.get("id")}
    return [" ".join("".join(by_id[ids[n]].itertext()).split()) for n in sorted(ids)]


def test_a_sentence_across_an_inline_element_splits_it() -> None:
    doc, ids = marked("<p>He said <em class='x' id='e'>hi. Then</em> he left.</p>", ["He said hi.", "Then he left."])
    assert element_texts(doc, ids) == ["He said hi.", "Then he left."]
    # The id stays on the first part; the second part is the same element without it.
    assert "<em class='x' id='e'>hi.</em>" in doc and "<em class='x'>Then</em>" in doc


def test_nested_inline_elements_and_character_references() -> None:
    doc, ids = marked("<p><b>One &amp; <i>two. Three</i></b> four&#46; Five.</p>",
                      ["One & two.", "Three four.", "Five."])
    assert element_texts(doc, ids) == ["One & two.", "Three four.", "Five."]


def test_a_sentence_inside_one_element_is_wrapped_there() -> None:
    doc, ids = marked("<p><i>All.</i> <i>Of it.</i></p>", ["All.", "Of it."])
    assert "<i><span id=\"gfs0\">All.</span></i>" in doc
    assert element_texts(doc, ids) == ["All.", "Of it."]


def test_existing_ids_are_kept_and_ours_avoid_them() -> None:
    doc, ids = marked('<p id="gfs1">Rain fell. It stopped.</p>', ["Rain fell.", "It stopped."])
    assert 'id="gfs1"' in doc and set(ids.values()) == {"gfsx0", "gfsx1"}
    all_ids = re.findall(r'\sid="([^"]*)"', doc)
    assert len(all_ids) == len(set(all_ids))


def test_across_table_cells_the_row_holds_the_sentence() -> None:
    # A span cannot go between cells: the row gets an id instead.
    doc, ids = marked("<table><tr><td>Left half</td><td>right half.</td></tr></table>",
                      ["Left half right half."])
    assert '<tr id="gfs0">' in doc and ids == {0: "gfs0"}
    ElementTree.fromstring(doc.encode())


def test_stylesheet_linked_in_the_head_and_declaration_kept() -> None:
    doc, _ = marked("<p>Hi.</p>", ["Hi."], stylesheet="gflite/read-along.css")
    assert '<link rel="stylesheet" type="text/css" href="gflite/read-along.css"/></head>' in doc
    assert doc.startswith('<?xml version="1.0" encoding="UTF-8"?>')


def test_a_document_declared_in_another_encoding_says_utf_8() -> None:
    assert sentencemarks.declare_utf8('<?xml version="1.0" encoding="ISO-8859-1"?><a/>') == \
        '<?xml version="1.0" encoding="utf-8"?><a/>'


def _paragraph(rng, depth: int = 0) -> str:  # type: ignore[no-untyped-def]
    """Random words and sentence ends, some of them inside nested inline elements."""
    parts = []
    for _ in range(rng.randint(1, 6)):
        if depth < 3 and rng.random() < 0.35:
            tag = rng.choice(["em", "b", "i", "span", "a"])
            attrs = rng.choice(["", ' class="k"', ' id="own%d"' % rng.randint(0, 10**6), ' href="#x"'])
            if tag != "a" and "href" in attrs:
                attrs = ""
            parts.append(f"<{tag}{attrs}>{_paragraph(rng, depth + 1)}</{tag}>")
        else:
            vocabulary = ["one", "two", "three", "&amp;", "caf\u00e9"]
            words = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 3)))
            parts.append(words + rng.choice(["", "", ". ", "."]))
    return rng.choice(["", " "]).join(parts)


def test_random_inline_structures_keep_text_and_give_each_sentence_its_element() -> None:
    import random

    rng = random.Random(14)
    checked = 0
    for _ in range(300):
        body = f"<p>{_paragraph(rng)}.</p>"
        source = HEAD + body + TAIL
        doc = xhtml.parse(source, name="t", origins=True)
        if not doc.blocks:
            continue
        block = doc.blocks[0]
        sentences = [m for m in re.finditer(r"[^ .][^.]*\.+", block.text)]
        places = {n: Place("t", block.origins[m.start()], block.origins[m.end() - 1])
                  for n, m in enumerate(sentences)}
        result = sentencemarks.mark(source, doc.tags, places, name="t")
        root = ElementTree.fromstring(result.text.encode())
        before = ElementTree.fromstring(source.encode())
        assert "".join(root.itertext()) == "".join(before.itertext()), body
        ids = [el.get("id") for el in root.iter() if el.get("id")]
        assert len(ids) == len(set(ids)), body
        by_id = {el.get("id"): el for el in root.iter()}
        for n, m in enumerate(sentences):
            assert " ".join("".join(by_id[result.ids[n]].itertext()).split()) == " ".join(m.group().split()), body
            checked += 1
    assert checked > 300
