"""Escaping of model-derived text (class names, paths, node names, metadata) for every output.

A model's author controls its metadata, its node and tensor names and, often, its file name. Those
texts reach reviewers through Markdown (report.md, summary.md in a CI job summary), HTML, SARIF
(whose messages some viewers render) and the terminal. Each renderer calls the one function of its
format here, so that no format is escaped by hand in two places:

- ``one_line``: no control characters, no ANSI escape sequences, no bidirectional overrides, no
  line breaks (a newline in a class name must not start a heading or a table row);
- ``console``: ``one_line`` for terminal output and CI logs;
- ``markdown``: ``one_line`` with every ASCII punctuation character backslash-escaped, which
  CommonMark defines as a literal; no heading, emphasis, link, autolink, image, table cell break
  or raw HTML can start inside it;
- ``sarif_text``: ``one_line`` with brackets escaped, as SARIF 2.1.0 (3.11.6) requires of a plain
  text message that is not an embedded link;
- ``html``: ``html.escape`` of the text with control characters removed.
"""

from __future__ import annotations

import html as _html
import re
import string
from typing import Any

# CSI / OSC / other escape sequences first (so that their parameters go too), then single controls:
# C0 (tab and newlines become spaces), DEL, C1, and the Unicode bidirectional embeddings, overrides
# and isolates that can make a text display differently from what it is.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_BREAKS = re.compile(r"[\t\n\r\v\f\x85\u2028\u2029]+")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_MARKDOWN_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")
_SARIF_SPECIAL = re.compile(r"([\\\[\]])")


def one_line(value: Any, limit: int | None = None) -> str:
    """``value`` as a single line of printable text; longer than ``limit`` characters: cut, with '…'."""
    text = _ANSI.sub("", str(value))
    text = _BREAKS.sub(" ", text)
    text = _CONTROLS.sub("", text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text


def console(value: Any) -> str:
    """For the terminal and CI logs: nothing that moves the cursor, recolours or adds a line."""
    return one_line(value)


def markdown(value: Any, limit: int | None = None) -> str:
    """For Markdown (GitHub-flavoured included): renders as exactly the text, inline, in a table cell too."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", one_line(value, limit))


def sarif_text(value: Any) -> str:
    """For a SARIF plain-text message: one line, brackets and backslashes escaped."""
    return _SARIF_SPECIAL.sub(r"\\\1", one_line(value))


def html(value: Any, quote: bool = True) -> str:
    """For HTML text and attribute values; line breaks are kept (they are harmless there)."""
    text = _ANSI.sub("", str(value))
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", "", text)
    return _html.escape(text, quote=quote)
