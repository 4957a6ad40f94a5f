"""What a person or a script can read in a served HTML page, as opposed to its markup.

Readable: text nodes, attribute values, comments, and the string literals of inline scripts
and styles (a literal that holds markup is read the way the browser would build it, so the
``<circle>`` element of an icon is markup while its ``title`` would be text). Not readable:
tag and attribute names, and script code (keywords, identifiers, comments). The page is
parsed into a small element tree, so that a check can ask where a piece of text sits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
RAW_TEXT = {"script", "style"}
URL_ATTRIBUTES = {"src", "href", "action", "formaction", "srcset", "poster", "data", "cite"}


@dataclass(eq=False)
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None = None
    children: list[Element | Readable] = field(default_factory=list)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def ancestors(self) -> Iterator[Element]:
        node = self
        while node is not None:
            yield node
            node = node.parent

    def iter(self) -> Iterator[Element]:
        """This element and every element below it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()


@dataclass(eq=False)
class Readable:
    """One piece a reader gets: ``kind`` is "text", "comment", "script string" or
    "attribute <name>"; ``element`` is where it sits."""

    kind: str
    value: str
    element: Element


class _TreeBuilder(HTMLParser):
    def __init__(self, root: Element) -> None:
        super().__init__(convert_charrefs=True)
        self.stack = [root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs}, parent=self.stack[-1])
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        current = self.stack[-1]
        if current.tag in RAW_TEXT:
            for literal in code_strings(data):
                if re.search(r"<[A-Za-z!/]", literal):  # markup the script builds: read it as such
                    _parse_into(current, literal)
                elif literal.strip():
                    current.children.append(Readable("script string", literal, current))
        elif data.strip():
            current.children.append(Readable("text", data, current))

    def handle_comment(self, data: str) -> None:
        self.stack[-1].children.append(Readable("comment", data, self.stack[-1]))


def _parse_into(parent: Element, html: str) -> None:
    builder = _TreeBuilder(parent)
    builder.feed(html)
    builder.close()


def parse(html: str) -> Element:
    """The page as a tree under a ``#document`` element."""
    root = Element("#document", {})
    _parse_into(root, html)
    return root


def readable(root: Element) -> Iterator[Readable]:
    """Every readable piece under ``root``, element by element: its attribute values, then the
    text, comments and script strings directly inside it."""
    for element in root.iter():
        for name, value in element.attrs.items():
            if value.strip():
                yield Readable(f"attribute {name}", value, element)
        for child in element.children:
            if isinstance(child, Readable):
                yield child


def urls(root: Element, *, attributes: set[str] = URL_ATTRIBUTES) -> list[str]:
    """URLs the page names in ``attributes`` (``srcset`` split into its URLs), as written."""
    found = []
    for element in root.iter():
        for name, value in element.attrs.items():
            if name not in attributes or not value.strip():
                continue
            parts = [p.strip().split()[0] for p in value.split(",") if p.strip()] if name == "srcset" else [value]
            found += [p.strip() for p in parts]
    return found


_ESCAPE = re.compile(r"\\(u\{[0-9a-fA-F]+\}|u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)", re.S)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


def _unescape(body: str) -> str:
    def one(match: re.Match) -> str:
        code = match.group(1)
        if code.startswith("u{"):
            return chr(int(code[2:-1], 16))
        if code[0] in "ux" and len(code) > 1:
            return chr(int(code[1:], 16))
        return _SIMPLE_ESCAPES.get(code, code)

    return _ESCAPE.sub(one, body)


def code_strings(code: str) -> list[str]:
    """The string literals of JavaScript or CSS source ('…', "…", `…`), unescaped; comments
    are skipped, and so are regular-expression literals, which may hold quotes."""
    out, i, n = [], 0, len(code)
    last = ""  # the last significant character, to tell a regex literal from a division
    while i < n:
        ch = code[i]
        if code.startswith("//", i):
            i = code.find("\n", i)
            i = n if i < 0 else i
        elif code.startswith("/*", i):
            end = code.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch in "'\"`":
            j = i + 1
            while j < n and code[j] != ch:
                j += 2 if code[j] == "\\" else 1
            out.append(_unescape(code[i + 1 : j]))
            i, last = j + 1, ch
        elif ch == "/" and (not last or last in "(,=:[!&|?{};+-*%<>~^"):
            j, in_class = i + 1, False
            while j < n and code[j] != "\n" and (code[j] != "/" or in_class):
                in_class = (in_class or code[j] == "[") and code[j] != "]"
                j += 2 if code[j] == "\\" else 1
            i, last = j + 1, "/"
        else:
            if not ch.isspace():
                last = ch
            i += 1
    return out
