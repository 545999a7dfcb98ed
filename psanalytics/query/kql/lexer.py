"""KQL lexer: text -> tokens with character spans.

Token kinds: ``IDENT`` (also keywords; ``quoted`` set for ``['x']``), ``STRING``,
``LONG``, ``REAL``, ``TIMESPAN`` (value in nanoseconds), ``DATETIME_RAW`` /
``TIMESPAN_RAW`` (the raw text inside ``datetime(...)`` / ``time(...)``), ``BANGOP``
(``!has``, ``!in~``, ...), ``OP`` (punctuation) and ``EOF``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from psanalytics._time import KQL_UNITS, UNITS_NS, number_unit_ns
from psanalytics.query.kql.errors import KqlSyntaxError

#: KQL timespan units (name -> ns): the KQL subset of the one unit table in ``_time``.
NS = {unit: UNITS_NS[unit] for unit in KQL_UNITS}

#: Hyphenated operator names lexed as one identifier.
HYPHENATED = (
    "project-away", "project-rename", "project-keep", "project-reorder",
    "mv-expand", "mv-apply", "make-series", "top-nested", "top-hitters",
    "parse-where", "parse-kv", "make_list_with_nulls", "sample-distinct",
)

_TWO_CHAR = ("==", "!=", "=~", "!~", "<=", ">=", "..", "<>", "=>")
_ONE_CHAR = "|,()[]{}.;=<>+-*/%:"
_IDENT_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_]*")
_NUM_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_UNIT_RE = re.compile(r"[A-Za-z]+")
_PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_HYPH_RE = re.compile("|".join(re.escape(h) for h in HYPHENATED) + r"(?![A-Za-z0-9_])")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    value: Any
    start: int
    end: int
    quoted: bool = False
    #: whitespace (or a comment) precedes this token
    spaced: bool = True


def _err(text: str, msg: str, start: int, end: int | None = None) -> KqlSyntaxError:
    return KqlSyntaxError(msg, query=text, span=(start, end if end is not None else start + 1))


_ESC = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


def _read_string(text: str, i: int) -> tuple[str, int]:
    """Read a quoted string starting at text[i] (a quote). Returns (value, end)."""
    q = text[i]
    j = i + 1
    out: list[str] = []
    n = len(text)
    while j < n:
        c = text[j]
        if c == "\\":
            if j + 1 >= n:
                break
            e = text[j + 1]
            if e in _ESC:
                out.append(_ESC[e])
                j += 2
                continue
            if e == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[j + 2:j + 6] or ""):
                out.append(chr(int(text[j + 2:j + 6], 16)))
                j += 6
                continue
            raise _err(text, f"unknown escape sequence '\\{e}' in string literal", j, j + 2)
        if c == q:
            return "".join(out), j + 1
        if c == "\n":
            break
        out.append(c)
        j += 1
    raise _err(text, "unterminated string literal", i, min(j, n))


def _read_verbatim(text: str, i: int) -> tuple[str, int]:
    """``@"..."``: backslash literal, doubled quote escapes the quote."""
    q = text[i]
    j = i + 1
    out: list[str] = []
    while j < len(text):
        c = text[j]
        if c == q:
            if j + 1 < len(text) and text[j + 1] == q:
                out.append(q)
                j += 2
                continue
            return "".join(out), j + 1
        if c == "\n":
            break
        out.append(c)
        j += 1
    raise _err(text, "unterminated verbatim string literal", i - 1, j)


def _raw_parens(text: str, i: int) -> tuple[str, int]:
    """Raw text between '(' at text[i] and the matching ')'."""
    j = text.find(")", i)
    if j < 0:
        raise _err(text, "missing ')' to close the literal", i)
    return text[i + 1:j], j + 1


def tokenize(text: str) -> list[Token]:
    """Split KQL text into tokens. Raises :class:`KqlSyntaxError` with a position."""
    # Long because: one scanning loop, one branch per token kind (comments, the string
    # literal forms, datetime()/time() raw bodies, numbers with units, names, operators)
    toks: list[Token] = []
    i, n = 0, len(text)
    spaced = True
    while i < n:
        c = text[i]
        if c in " \t\r\n\f\v\u00a0\ufeff":
            i += 1
            spaced = True
            continue
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            spaced = True
            continue
        start = i
        # strings -------------------------------------------------------------
        if text.startswith("```", i):
            j = text.find("```", i + 3)
            if j < 0:
                raise _err(text, "unterminated ``` multi-line string literal", i, i + 3)
            toks.append(Token("STRING", text[i + 3:j], start, j + 3, spaced=spaced))
            i = j + 3
        elif c in "\"'":
            val, i = _read_string(text, i)
            toks.append(Token("STRING", val, start, i, spaced=spaced))
        elif c == "@" and i + 1 < n and text[i + 1] in "\"'":
            val, i = _read_verbatim(text, i + 1)
            toks.append(Token("STRING", val, start, i, spaced=spaced))
        elif c in "hH" and i + 1 < n and text[i + 1] in "\"'":
            val, i = _read_string(text, i + 1)
            toks.append(Token("STRING", val, start, i, spaced=spaced))
        elif c in "hH" and text.startswith("@", i + 1) and i + 2 < n and text[i + 2] in "\"'":
            val, i = _read_verbatim(text, i + 2)
            toks.append(Token("STRING", val, start, i, spaced=spaced))
        # {{name}}: a filter-definition parameter (Profile Store), filled from params ---
        elif c == "{" and (pm := _PLACEHOLDER_RE.match(text, i)):
            toks.append(Token("IDENT", pm.group(1), start, pm.end(), quoted=True,
                              spaced=spaced))
            i = pm.end()
        # bracket-quoted identifiers ['x'] ["x"] ----------------------------------
        elif c == "[" and i + 1 < n and text[i + 1] in "\"'" and _is_bracket_ident(text, i):
            val, j = _read_string(text, i + 1)
            k = j
            while k < n and text[k] in " \t":
                k += 1
            if k < n and text[k] == "]":
                toks.append(Token("IDENT", val, start, k + 1, quoted=True, spaced=spaced))
                i = k + 1
            else:
                toks.append(Token("OP", "[", start, start + 1, spaced=spaced))
                i += 1
        # numbers / timespans ------------------------------------------------------
        elif ("0" <= c <= "9") or (c == "." and i + 1 < n and "0" <= text[i + 1] <= "9"
                             and not (toks and toks[-1].kind == "OP" and toks[-1].value == ".")):
            m = _NUM_RE.match(text, i)
            assert m is not None
            num = m.group(0)
            j = m.end()
            if num.endswith(".") and j < n and text[j] == ".":  # 1..5
                num = num[:-1]
                j -= 1
            um = _UNIT_RE.match(text, j)
            if um and not m.group(2):
                unit = um.group(0)
                if unit not in NS:
                    raise _err(text, f"unknown timespan unit '{unit}' in '{num}{unit}'"
                               " (use d, h, m, s, ms, microsecond or tick)", start, um.end())
                ns = number_unit_ns(num, NS[unit])
                toks.append(Token("TIMESPAN", ns, start, um.end(), spaced=spaced))
                i = um.end()
            elif um:
                raise _err(text, f"invalid number '{text[start:um.end()]}'", start, um.end())
            else:
                if m.group(2) or "." in num:
                    toks.append(Token("REAL", float(num), start, j,
                                      spaced=spaced))
                else:
                    if int(num) > 2**63 - 1:
                        raise _err(text, f"integer literal {num} is out of range for long "
                                   "(at most 9223372036854775807); write it as a real",
                                   start, j)
                    toks.append(Token("LONG", int(num), start, j, spaced=spaced))
                i = j
        # identifiers ----------------------------------------------------------------
        elif (c.isascii() and c.isalpha()) or c == "_" or c == "$":
            hm = _HYPH_RE.match(text, i)
            if hm:
                toks.append(Token("IDENT", hm.group(0), start, hm.end(), spaced=spaced))
                i = hm.end()
            else:
                m2 = _IDENT_RE.match(text, i)
                assert m2 is not None
                word = m2.group(0)
                j = m2.end()
                prev_dot = bool(toks) and toks[-1].kind == "OP" and toks[-1].value == "."
                if word == "in" and j < n and text[j] == "~":
                    toks.append(Token("IDENT", "in~", start, j + 1, spaced=spaced))
                    i = j + 1
                elif (word in ("datetime", "time", "timespan") and not prev_dot
                      and _next_nonspace(text, j) == "("):
                    k = text.index("(", j)
                    raw, i = _raw_parens(text, k)
                    kind = "DATETIME_RAW" if word == "datetime" else "TIMESPAN_RAW"
                    toks.append(Token(kind, raw, start, i, spaced=spaced))
                else:
                    toks.append(Token("IDENT", word, start, j, spaced=spaced))
                    i = j
        elif c == "!" and i + 1 < n and text[i + 1].isascii() and text[i + 1].isalpha():
            m2 = _IDENT_RE.match(text, i + 1)
            assert m2 is not None
            j = m2.end()
            word = m2.group(0)
            if word == "in" and j < n and text[j] == "~":
                word, j = "in~", j + 1
            toks.append(Token("BANGOP", "!" + word, start, j, spaced=spaced))
            i = j
        else:
            two = text[i:i + 2]
            if two in _TWO_CHAR:
                toks.append(Token("OP", two, start, i + 2, spaced=spaced))
                i += 2
            elif c in _ONE_CHAR:
                toks.append(Token("OP", c, start, i + 1, spaced=spaced))
                i += 1
            else:
                raise _err(text, f"unexpected character {c!r}", i)
        spaced = False
    toks.append(Token("EOF", None, n, n, spaced=spaced))
    return toks


def _is_bracket_ident(text: str, i: int) -> bool:
    """``['x']`` is an identifier unless it follows a value (then it is an index)."""
    return True


def _next_nonspace(text: str, j: int) -> str:
    while j < len(text) and text[j] in " \t\r\n":
        j += 1
    return text[j] if j < len(text) else ""

