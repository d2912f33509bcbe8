"""Making a store's incarnation (see ``raftcore.storage.StoreIdentity``)."""

from __future__ import annotations

import secrets


def new_incarnation() -> str:
    """A fresh random id: 64 bits, so two stores never share one in practice."""
    return secrets.token_hex(8)
