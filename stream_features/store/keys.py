"""Redis key names. The layout (keys, fields, bytes) is specified once, in the README ("Redis
key layout"); ``tests/test_store_contract.py`` pins its bytes and ``native/store.rs`` builds the
same names.

Escaping: ``%``, ``{`` and ``}`` in the id become ``%25``, ``%7B``, ``%7D``, so the ``{...}`` hash
tag can never be cut short and two ids never map to one key; every other byte is kept as is.
"""

from __future__ import annotations

from typing import Final

DEFAULT_PREFIX: Final = "sf"
# The events topic: customers' bookkeeping records offsets per "<topic>:<partition>".
DEFAULT_TOPIC: Final = "customer-events"
_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})


def escape_customer_id(customer_id: str) -> str:
    """Make an id safe inside the ``{...}`` hash tag, injectively.

    >>> escape_customer_id("a{b}%")
    'a%7Bb%7D%25'
    """
    return customer_id.translate(_ESCAPES)


def tiles_key(customer_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The customer's tiles hash.

    >>> tiles_key("c:1")
    'sf:{c:1}'
    """
    return f"{prefix}:{{{escape_customer_id(customer_id)}}}"


def aux_key(customer_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{tiles_key(customer_id, prefix)}:x"


TILE_FIELD_PREFIX: Final = "t:"
ATTRIBUTE_FIELD_PREFIX: Final = "a:"
