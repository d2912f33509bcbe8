"""Bearer tokens for the HTTP API (``serve --api-token-file``).

The token file holds one token per line, optionally followed by its scope:
``rw`` (the default: reads, writes, membership, snapshots, transfers) or
``ro`` (``GET`` and ``HEAD`` only). Blank lines and ``#`` comments are
ignored. A request without a known token is answered ``401``; a read-only
token on anything else ``403``. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac

import attrs

from raftcore.adapters.kv.http import Request, Response, error_response

#: Shorter tokens are refused when the file is loaded (they can be guessed).
MIN_TOKEN_LENGTH = 16
_READ_METHODS = frozenset({"GET", "HEAD"})


@attrs.frozen
class ApiTokens:
    """The tokens a node accepts: ``(token, read_write)`` pairs."""

    tokens: tuple[tuple[str, bool], ...]

    @classmethod
    def load(cls, path: str) -> ApiTokens:
        """Read a token file; ``ValueError`` (one line naming the file and
        line) if it cannot be used."""
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--api-token-file: cannot read {path}: {e}") from None
        tokens: list[tuple[str, bool]] = []
        for number, line in enumerate(lines, 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            where = f"--api-token-file: {path}, line {number}"
            if len(words) > 2 or (len(words) == 2 and words[1] not in ("rw", "ro")):
                raise ValueError(f"{where}: expected 'TOKEN' or 'TOKEN rw|ro'")
            if len(words[0]) < MIN_TOKEN_LENGTH:
                raise ValueError(f"{where}: a token needs at least {MIN_TOKEN_LENGTH} characters")
            tokens.append((words[0], len(words) == 1 or words[1] == "rw"))
        if not tokens:
            raise ValueError(f"--api-token-file: {path} holds no token")
        return cls(tuple(tokens))

    def refusal(self, request: Request) -> Response | None:
        """``None`` if ``request`` carries a token allowed to make it; else
        the ``401``/``403`` answer."""
        header = request.header("authorization") or ""
        scheme, _, given = header.partition(" ")
        read_write: bool | None = None
        if scheme.lower() == "bearer" and given:
            for token, rw in self.tokens:
                if hmac.compare_digest(token.encode(), given.strip().encode()):
                    read_write = rw
        if read_write is None:
            return error_response(
                401,
                "unauthorized",
                (("www-authenticate", 'Bearer realm="raftcore-kv"'),),
                detail="send 'Authorization: Bearer TOKEN' with a token from --api-token-file",
            )
        if not read_write and request.method not in _READ_METHODS:
            return error_response(403, "forbidden", detail="this token is read-only")
        return None
