"""Strict I-JSON (RFC 7493) parsing and encoding.

Two parsers, one set of rules. The oracle is CPython's C scanner (``json``) fenced in by
checks that make it strict and bounded. The fast path is ``jiter`` (pydantic's Rust parser:
duplicate keys refused, NaN/Infinity refused, strict UTF-8, nothing after the value), for
all bytes: a small message that cheap whole-text tests clear (no number that could leave
int64 or overflow a double, no escaped surrogate, too few openers, colons and commas to
break a cap) is parsed once; anything else is checked value by value after the parse. The
oracle parses ``str`` input (and everything, with ``native=False``).
``tests/test_parser_differential.py`` proves the two take the same decisions and give the
same values.

Every rule below is a way a lenient parser has been exploited (SECURITY.md
rows SR-05 to SR-12):

* UTF-8 only, no byte order mark (RFC 8259 section 8.1; I-JSON 2.1). ``json.loads(bytes)``
  would silently auto-detect UTF-16/32 and skip a BOM.
* Nesting depth is measured by a linear scan *before* the recursive parser runs, so
  ``[`` x 1,000,000 costs a scan of its first 33 bytes, never a ``RecursionError``.
* No duplicate member names (I-JSON 2.3): ``{"scope":"a","scope":"admin"}`` is rejected,
  not read as "last wins" like every stock Python parser does.
* No ``NaN``/``Infinity`` and no number that overflows a double (RFC 8259 section 6).
* Integers fit in signed 64 bits: stops quadratic int conversion (CVE-2020-10735) and
  integer hash-collision floods (SR-10: Python does not randomise int hashes).
* No escaped lone surrogates (``"\\ud800"``): they decode to a ``str`` that crashes later on
  ``.encode()`` and have been used for key confusion (CVE-2022-31116).
* Caps on members per object and items per array; nothing but whitespace after the value.

Costly exact checks run only when a cheap whole-text test says they could fail, so a normal
request costs one ``str.count`` or two beyond the C parse itself.

Every violation raises ``JSONError``; no other exception type leaves ``loads``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from functools import partial
from json.encoder import encode_basestring  # the C implementation when built
from typing import Any, Final, NoReturn

import jiter

__all__ = ["JSONError", "StrictJSON", "dumps_strict", "error_bytes", "result_bytes"]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

_BOM: Final = b"\xef\xbb\xbf"

# For the depth scan: a JSON string literal, or a run of openers, or a run of closers. The
# string is matched possessively so an unterminated one consumes the rest of the text in
# one step (no backtracking, no quadratic rescans); ``"?`` lets that case match too, and the
# C parser rejects it later.
_SCAN = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[{]+|[\]}]+', re.DOTALL)
# Could some integer literal be 19+ digits (maybe outside int64), or some number carry an
# exponent (maybe overflow a double; 309+ plain digits are caught by the first test)?
# Strings can make this a false positive; that only selects the exact (slower) path. The
# test maps every byte to "1" (digit), "e" (e/E) or "0" in one C-speed translate, then
# looks for substrings: several times faster than a regular expression over large text.
_NUMBER_SHAPE: Final = bytes(
    ord("1") if 0x30 <= i <= 0x39 else ord("e") if i in (0x45, 0x65) else ord("0")
    for i in range(256)
)
_NINETEEN_DIGITS: Final = b"1" * 19
# Above this size jiter's result is checked value by value instead of by whole-text tests.
_LARGE: Final = 16 * 1024


def _risky_numbers(data: bytes) -> bool:
    shape = data.translate(_NUMBER_SHAPE)
    return b"1e" in shape or _NINETEEN_DIGITS in shape


# An escape that could encode a surrogate half (U+D800..U+DFFF).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


class JSONError(ValueError):
    """The input is not strict I-JSON within the limits. The text is for logs only."""


def _fail(reason: str) -> NoReturn:
    raise JSONError(reason)


class StrictJSON:
    """A strict parser configured with one set of limits.

    Args:
        max_depth: deepest nesting of arrays/objects allowed.
        max_object_members: most members per object.
        max_array_items: most items per array.
        native: use the jiter fast path where it is provably equivalent (False: the oracle
            alone, for the differential tests).
    """

    __slots__ = (
        "_exact",
        "_fast",
        "_lenient",
        "_native",
        "max_array_items",
        "max_depth",
        "max_object_members",
    )

    def __init__(
        self,
        *,
        max_depth: int,
        max_object_members: int,
        max_array_items: int,
        native: bool = True,
    ) -> None:
        self.max_depth = max_depth
        self.max_object_members = max_object_members
        self.max_array_items = max_array_items

        def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            if len(pairs) > max_object_members:
                _fail("too many object members")
            obj = dict(pairs)
            if len(obj) != len(pairs):
                _fail("duplicate member name")  # I-JSON section 2.3
            return obj

        def reject_constant(name: str) -> NoReturn:
            _fail("NaN/Infinity are not JSON")  # RFC 8259 section 6

        def checked_int(text: str) -> int:
            # 20 characters cover "-9223372036854775808"; anything longer is out of range
            # and is rejected before int() does any (possibly quadratic) work.
            if len(text) > 20:
                _fail("integer out of int64 range")
            value = int(text)
            if not INT64_MIN <= value <= INT64_MAX:
                _fail("integer out of int64 range")
            return value

        def checked_float(text: str) -> float:
            value = float(text)  # linear in len(text); underflow gives 0.0, which is fine
            if not math.isfinite(value):
                _fail("number overflows a double")
            return value

        # The fast decoder is used when the cheap whole-text test rules out risky numbers;
        # the exact one checks every number literal.
        self._fast = json.JSONDecoder(object_pairs_hook=pairs_hook, parse_constant=reject_constant)
        self._exact = json.JSONDecoder(
            object_pairs_hook=pairs_hook,
            parse_constant=reject_constant,
            parse_int=checked_int,
            parse_float=checked_float,
        )
        self._native: Callable[[bytes], Any] | None = None
        self._lenient: Callable[[bytes], Any] | None = None
        if native:
            self._native = partial(jiter.from_json, allow_inf_nan=False, catch_duplicate_keys=True)
            # Without the duplicate check, which costs ~40% of a batch's parse: used only
            # where the absence of duplicates is then proved by counting.
            self._lenient = partial(jiter.from_json, allow_inf_nan=False)

    def loads(self, data: bytes | str) -> Any:
        """Parse one strict I-JSON value.

        Raises:
            JSONError: for any input that is not strict I-JSON within the limits.
        """
        if isinstance(data, str):
            text = data
        else:
            if data.startswith(_BOM):
                _fail("byte order mark")  # RFC 8259 section 8.1: MUST NOT add a BOM
            if self._native is not None:
                return self._loads_native(data)
            try:
                text = data.decode("utf-8")  # strict: also rejects encoded surrogates
            except UnicodeDecodeError:
                _fail("not UTF-8")
        # Depth can only exceed the limit if there are more openers than the limit.
        if text.count("[") + text.count("{") > self.max_depth:
            self._check_depth(text)
        raw = data if isinstance(data, bytes) else text.encode("utf-8", "surrogatepass")
        decoder = self._exact if _risky_numbers(raw) else self._fast
        try:
            value = decoder.decode(text)
        except JSONError:
            raise
        except (ValueError, RecursionError, MemoryError, TypeError) as exc:
            # JSONDecodeError, int()'s 4300-digit ValueError; RecursionError cannot happen
            # after the depth scan but is mapped anyway rather than trusted away.
            raise JSONError("invalid JSON") from exc
        # No array can be longer than the limit unless there are that many commas.
        if text.count(",") >= self.max_array_items:
            self._check_arrays(value)
        if "\\u" in text and _SURROGATE_ESCAPE.search(text):
            _reject_lone_surrogates(value)
        return value

    def _native_ok(self, data: bytes) -> bool:
        """True when jiter decides exactly like the oracle: no number that could leave
        int64 or overflow a double (jiter would build a huge int or an inf), and no escape
        that could encode a surrogate half (jiter refuses lone ones itself; belt and braces).
        Nesting is safe too: jiter stops at 200 levels, above the hard cap of ``Limits``."""
        return not _risky_numbers(data) and not (
            b"\\u" in data and _SURROGATE_ESCAPE_BYTES.search(data)
        )

    def _may_break_caps(self, data: bytes) -> bool:
        """Counting is enough to rule out every cap: depth needs that many openers, an
        object's members that many colons, an array's items that many commas."""
        size = len(data)  # a text shorter than a cap cannot hold that many of anything
        return (
            (size > self.max_depth and data.count(b"[") + data.count(b"{") > self.max_depth)
            or (size > self.max_object_members and data.count(b":") > self.max_object_members)
            or (size >= self.max_array_items and data.count(b",") >= self.max_array_items)
        )

    def _loads_native(self, data: bytes) -> Any:
        # Small input whose text tests rule out every rule jiter leaves to us: one parse.
        # Otherwise (large input, where those tests cost more than checking the parsed
        # values; or a batch, whose openers outnumber the depth limit): parse without
        # jiter's duplicate check, check every value, and prove the absence of duplicate
        # names by counting (below); only if that fails, parse again with jiter's check.
        numbers_checked = len(data) <= _LARGE and self._native_ok(data)
        if numbers_checked and not self._may_break_caps(data):
            return self._parse_native(data, self._native)
        value = self._parse_native(data, self._lenient)
        members = self._check_values(value, not numbers_checked)
        # Every member of every object has exactly one ':' outside string literals, and a
        # duplicate name leaves one member fewer in the parsed dict. So if the parsed
        # objects hold as many members as the text holds colons (strings included), no
        # name was duplicated.
        if members != data.count(b":"):
            self._parse_native(data, self._native)  # JSONError for a duplicate name
        return value

    def _parse_native(self, data: bytes, parse: Callable[[bytes], Any] | None) -> Any:
        assert parse is not None
        try:
            return parse(data)
        except (ValueError, RecursionError, MemoryError) as exc:  # ValueError: jiter's own
            raise JSONError("invalid JSON") from exc

    def _check_values(self, value: Any, numbers: bool) -> int:
        """Check depth, members per object, items per array and (if ``numbers``) every
        number (int64, finite) of a parsed value; return how many members its objects hold.

        Level by level, linear in the number of values; nesting is already bounded by
        jiter's own limit (200 levels), integers by its 4,300 digits."""
        level: list[Any] = [value]
        depth = 0  # of the containers in ``level``
        members = 0
        while level:
            depth += 1
            inner: list[Any] = []
            containers = False
            for item in level:
                kind = type(item)
                if kind is list:
                    containers = True
                    if len(item) > self.max_array_items:
                        _fail("too many array items")
                    inner += item
                elif kind is dict:
                    containers = True
                    if len(item) > self.max_object_members:
                        _fail("too many object members")
                    members += len(item)
                    inner += item.values()
                elif not numbers:
                    continue
                elif kind is int:
                    if not INT64_MIN <= item <= INT64_MAX:
                        _fail("integer out of int64 range")
                elif kind is float and not math.isfinite(item):
                    _fail("number overflows a double")
            if containers and depth > self.max_depth:
                _fail("nesting too deep")
            level = inner
        return members

    def _check_depth(self, text: str) -> None:
        # One lazy pass over string literals and bracket runs: strings are skipped whole,
        # runs move the depth, and the scan stops at the first run past the limit. Nothing
        # proportional to the input is built (1 MiB of '[{"":' costs no extra memory).
        depth = 0
        limit = self.max_depth
        for match in _SCAN.finditer(text):
            run = match.group()
            first = run[0]
            if first == '"':
                continue
            if first in "[{":
                depth += len(run)
                if depth > limit:
                    _fail("nesting too deep")
            else:
                depth -= len(run)

    def _check_arrays(self, value: Any) -> None:
        # Iterative walk over containers only; depth is already bounded.
        stack = [value]
        limit = self.max_array_items
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                if len(item) > limit:
                    _fail("too many array items")
                stack.extend(x for x in item if isinstance(x, list | dict))
            elif isinstance(item, dict):
                stack.extend(x for x in item.values() if isinstance(x, list | dict))


def _reject_lone_surrogates(value: Any) -> None:
    # Re-encoding the parsed value as UTF-8 fails exactly when some key or string holds a
    # lone surrogate; json.dumps + encode do that walk in C.
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        _fail("lone surrogate escape")


_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dumps_strict(value: Any) -> bytes:
    """Encode a JSON-compatible value as compact UTF-8 strict I-JSON.

    Raises:
        JSONError: if the value holds NaN/Infinity, a lone surrogate, an integer outside
            int64, or something that is not a JSON type.
    """
    try:
        text = _encoder.encode(value)
        out = text.encode("utf-8")  # strict: a lone surrogate raises
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError) as exc:
        raise JSONError("value cannot be encoded as strict JSON") from exc
    if _NINETEEN_DIGITS in out.translate(_NUMBER_SHAPE):
        _check_ints(value)
    return out


def _check_ints(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool):
            if not INT64_MIN <= item <= INT64_MAX:
                _fail("integer out of int64 range")
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())


def result_bytes(result: Any, id: Any) -> bytes | None:
    """``{"jsonrpc":"2.0","result":R,"id":I}`` for a scalar result and id, byte for byte what
    ``dumps_strict`` gives for that object, without walking a dict through the encoder and
    the output through the int check; None when either value needs the general encoder."""
    if type(result) is int and type(id) is int:  # the commonest answer, in one step
        if INT64_MIN <= result <= INT64_MAX and INT64_MIN <= id <= INT64_MAX:
            return b'{"jsonrpc":"2.0","result":%d,"id":%d}' % (result, id)
        return None
    r = _scalar(result)
    return None if r is None else _response("result", r, id)


def error_bytes(code: Any, message: Any, id: Any) -> bytes | None:
    """``{"jsonrpc":"2.0","error":{"code":C,"message":M},"id":I}`` (an error without data),
    byte for byte what ``dumps_strict`` gives; None when a value needs the general encoder."""
    c = _scalar(code)
    if c is None or type(message) is not str:
        return None
    return _response("error", f'{{"code":{c},"message":{encode_basestring(message)}}}', id)


def _response(member: str, value: str, id: Any) -> bytes | None:
    i = _scalar(id)
    if i is None:
        return None
    try:
        return f'{{"jsonrpc":"2.0","{member}":{value},"id":{i}}}'.encode()
    except UnicodeEncodeError:  # a lone surrogate: the general path reports it
        return None


def _scalar(value: Any) -> str | None:
    kind = type(value)
    if kind is int:
        return int.__repr__(value) if INT64_MIN <= value <= INT64_MAX else None
    if kind is str:
        return encode_basestring(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    return None
