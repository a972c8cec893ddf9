"""A run's structure from its flags: the book (read, chapters chosen, composed),
the pauses and the word replacements. Book and replacement code is imported only
when a book or ``--replace`` is given."""
from __future__ import annotations

import dataclasses
import os
from types import SimpleNamespace
from typing import TYPE_CHECKING, Optional

from gflite.book_suffixes import is_book
from gflite.cli_shared import for_terminal
from gflite.errors import OutputError, UsageError
from gflite.pauses import BOOK_PAUSES, Pauses

if TYPE_CHECKING:
    from gflite import pipeline
    from gflite.replacements import Replacements

# Speaking rate for --list-chapters' estimates: characters of text per second
# of audio, measured with native flite on the benchmark book (kal 12.5, slt 13.1).
CHARS_PER_SECOND = 12.8


class Listed(Exception):
    """--list-chapters printed its listing: the run is done."""


def structure(
    args: SimpleNamespace, source: pipeline.Source, output: str
) -> tuple[Optional[pipeline.BookText], Pauses, Optional[Replacements]]:
    """The book, the pauses and the replacements for this run. A book's listing
    (--list-chapters) is printed here, and ends the run (raises :class:`Listed`)."""
    rules = None
    if args.replace is not None:
        from gflite import replacements

        rules = replacements.read(args.replace)
    is_structured = source.kind == "file" and is_book(source.value) and not args.ssml
    read_along = output.lower().endswith(".epub")
    if read_along:  # -o book.epub: a read-along EPUB 3 (gflite.readalong)
        from gflite.readalong import check_request

        check_request(source.value if source.kind == "file" else None, split=args.split is not None,
                      replace=args.replace is not None, ssml=args.ssml)
    if args.split is not None:
        _check_split(args, output, is_structured)
    if not is_structured:
        for flag, given in (("--list-chapters", args.list_chapters), ("--chapters", args.chapters is not None)):
            if given:
                raise UsageError(f"{flag} needs a book (.epub, .md, .html, .xhtml): plain text has no chapters")
    base = BOOK_PAUSES if is_structured else Pauses()
    s, p, c = args.silences
    pauses = Pauses(sentence=base.sentence if s is None else s, paragraph=base.paragraph if p is None else p,
                    chapter=base.chapter if c is None else c)
    if not is_structured:
        return None, pauses, rules
    return _book(args, source, rules, read_along), pauses, rules


def _check_split(args: SimpleNamespace, output: str, is_structured: bool) -> None:
    """--split chapters: a book, a format, and a folder to write into (made if missing)."""
    from gflite import pipeline
    from gflite.book_suffixes import AUDIOBOOK_FORMATS

    if args.split != "chapters":
        raise UsageError(f"--split takes 'chapters', not {args.split!r}")
    if args.split_format not in AUDIOBOOK_FORMATS:
        raise UsageError(f"--split-format takes {', '.join(AUDIOBOOK_FORMATS)}, not {args.split_format!r}")
    if not is_structured:
        raise UsageError("--split chapters needs a book (.epub, .md, .html, .xhtml): plain text has no chapters")
    if output in ("play", pipeline.STDOUT, pipeline.DISCARD):
        raise UsageError("--split chapters writes files: give -o DIR/")
    if not os.path.isdir(output):
        try:
            os.mkdir(output)
        except OSError as e:
            raise OutputError(f"cannot make the folder {for_terminal(output)}: {e.strerror or e}") from None


def _book(
    args: SimpleNamespace, source: pipeline.Source, rules: Optional[Replacements], read_along: bool
) -> pipeline.BookText:
    from gflite import pipeline
    from gflite.audiobook import Tags
    from gflite.books import ReadOptions, read_book
    from gflite.books.compose import compose
    from gflite.books.model import Chapter
    from gflite.books.selection import list_chapters, parse_chapters, select
    from gflite.cli import listings

    notes, toc, front, back, nonlinear = args.keep
    book = read_book(source.value, ReadOptions(keep_notes=notes, keep_toc=toc, keep_front_matter=front,
                                               keep_back_matter=back, keep_nonlinear=nonlinear), origins=read_along)
    if args.list_chapters:
        listings.chapters(list_chapters(book, CHARS_PER_SECOND))
        raise Listed
    if args.chapters is not None:
        book = select(book, parse_chapters(args.chapters, len(book.chapters)))
    replaced = 0
    if rules is not None:
        chapters = []
        for ch in book.chapters:
            text, n = rules.apply(ch.text)
            replaced += n
            chapters.append(Chapter(title=ch.title, text=text, source=ch.source))
        book = dataclasses.replace(book, chapters=tuple(chapters))
    composed = compose(book)
    subtitles, _, timings_json = args.read_along
    if (subtitles is not None or timings_json is not None) and rules is None:
        from gflite.books.compose import origins

        # Subtitles and timings in the book's own characters (see pipeline.Job.source_spans).
        composed = dataclasses.replace(composed, text=dataclasses.replace(composed.text,
                                                                          origins=origins(book, composed)))
    meta = book.metadata
    tags = Tags(title=meta.title or os.path.splitext(os.path.basename(source.value))[0], author=meta.author,
                language=meta.language, cover=meta.cover)
    anchors = None
    if read_along:
        from gflite.books.anchors import BookMap

        anchors = BookMap.of(book, composed)
    return pipeline.BookText(text=composed.text, chapters=tuple(zip(composed.starts, composed.titles)),
                             tags=tags, replaced_words=replaced, anchors=anchors)
