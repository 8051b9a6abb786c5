"""AMQP header values read as the types our publishers send.

pamqp types a header table's values as the union of every AMQP field type (``FieldValue``); ours
are text and integers. These reads say which one a caller expects, and fail like ``str``/``int``
would on anything else.
"""

from __future__ import annotations

from decimal import Decimal

from pamqp.common import FieldValue


def text(value: FieldValue) -> str | None:
    """A text header: ``None`` when absent, bytes decoded as UTF-8, any other value as ``str()``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def integer(value: FieldValue) -> int:
    """An integer header (an int, or its digits); ``TypeError`` or ``ValueError`` otherwise, as ``int()`` raises."""
    if isinstance(value, int | float | str | bytes | bytearray | Decimal):
        return int(value)
    raise TypeError(f"an integer header cannot be {type(value).__name__}")
