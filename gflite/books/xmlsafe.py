"""XML from a book, parsed by defusedxml: no entity declarations, no external
references, nothing fetched. Every failure is a one-line BookError."""
from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import fromstring

from gflite.errors import BookError, BookProblem


def parse(data: bytes, *, name: str) -> Element:
    try:
        # A DOCTYPE alone is harmless (expat reads no external DTD); entity
        # declarations and external references are what defusedxml refuses.
        return fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except (EntitiesForbidden, ExternalReferenceForbidden, DTDForbidden) as e:
        raise BookError(f"{name} declares XML entities (refused: {type(e).__name__})", BookProblem.ENTITIES) from None
    except DefusedXmlException as e:
        raise BookError(f"{name}: refused XML ({type(e).__name__})", BookProblem.ENTITIES) from None
    except LookupError as e:  # expat meets an encoding declaration it does not know
        raise BookError(f"{name}: {e}", BookProblem.ENCODING) from None
    except ParseError as e:
        raise BookError(f"{name} is not well-formed XML: {e}", BookProblem.MALFORMED) from None


def local(tag: object) -> str:
    """An element's name without its namespace (``{ns}title`` -> ``title``)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def children(el: Element, name: str) -> list[Element]:
    return [c for c in el if local(c.tag) == name]


def descendants(el: Element, name: str) -> list[Element]:
    return [c for c in el.iter() if local(c.tag) == name]


def attr(el: Element, name: str) -> str:
    """An attribute by local name, whatever its namespace (``opf:role`` or ``role``)."""
    if name in el.attrib:
        return el.attrib[name]
    for k, v in el.attrib.items():
        if local(k) == name:
            return v
    return ""


def text(el: Element | None) -> str:
    return " ".join("".join(el.itertext()).split()) if el is not None else ""
