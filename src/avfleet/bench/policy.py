"""What a bench agent may read: models and bundles under configured prefixes, never more than a cap.

A job request names a model and a bundle by URI; the agent fetches them. Left
open, that is a fetch-anything service (any fsspec scheme, chained URIs such as
`simplecache::http://...`, `/dev/zero`, `../../etc/passwd`). `ReadPolicy`
closes it:

- a URI must be under one of the prefixes the agent was started with
  (`--allow`), after normalisation: no `..` segments, no chained protocols,
  local paths resolved through symlinks; anything else is `Forbidden` (403) with
  one message that says nothing about what exists;
- local files must be regular files (not devices or FIFOs), and every read stops
  at a size cap, checked before reading where the store knows the size;
- a file that is missing or unreadable gets the same `Unreadable` message either
  way (422), so a caller learns nothing about the filesystem from the answer.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re

from avfleet.core import storage
from avfleet.core.errors import AvfleetError, PermanentError, TransientError

MiB = 1024 * 1024


class Forbidden(PermanentError):
    """The URI is outside what this bench reads (403)."""


class Unreadable(PermanentError):
    """The URI is allowed but does not name a readable file under the cap (422)."""


_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://")


@dataclasses.dataclass(frozen=True)
class ReadPolicy:
    prefixes: tuple[str, ...]
    """URI prefixes the agent reads from (file paths, file:// or s3://bucket/path)."""
    max_model_bytes: int = 512 * MiB
    max_bundle_bytes: int = 64 * MiB
    max_bundle_unpacked_bytes: int = 512 * MiB
    """Bytes a bundle's arrays may take once decompressed (a zip bomb stops here)."""

    def __post_init__(self) -> None:
        if not self.prefixes:
            raise ValueError("a bench agent needs at least one prefix it may read from")
        for prefix in self.prefixes:
            _normalised(prefix)  # raises on a malformed prefix

    def check(self, field: str, uri: str) -> str:
        """The normalised URI when it is under an allowed prefix; Forbidden otherwise."""
        denied = Forbidden(f"{field} is not under a location this bench reads from")
        try:
            normal = _normalised(uri)
        except ValueError:
            raise denied from None
        for prefix in self.prefixes:
            root = _normalised(prefix).rstrip("/")
            if normal.startswith(root + "/"):
                return normal
        raise denied

    def read(self, field: str, uri: str, max_bytes: int, config: storage.StorageConfig) -> bytes:
        """The bytes of an allowed URI, at most `max_bytes` (Unreadable beyond)."""
        normal = self.check(field, uri)
        unreadable = Unreadable(f"{field} is missing, unreadable or over {max_bytes} bytes")
        if storage.is_local(normal) and not os.path.isfile(storage.strip_protocol(normal)):
            raise unreadable  # devices, FIFOs, folders
        try:
            fs = storage.filesystem(normal, config)
            path = storage.strip_protocol(normal)
            with storage.translate_errors(normal):
                size = fs.size(path)
                if size is not None and size > max_bytes:
                    raise unreadable
                with fs.open(path, "rb") as f:
                    data = f.read(max_bytes + 1)
        except TransientError:
            raise  # the store is down: the caller may retry
        except AvfleetError:
            raise unreadable from None
        if len(data) > max_bytes:
            raise unreadable
        return data


def _normalised(uri: str) -> str:
    """A canonical form of `uri` to compare prefixes on; ValueError for anything ambiguous."""
    if not uri or "::" in uri or any(ord(c) < 0x20 or c == "\x7f" for c in uri):
        raise ValueError("chained, empty or control characters")
    match = _SCHEME.match(uri)
    if match is None:
        if "://" in uri or ":" in uri.split("/", 1)[0]:
            raise ValueError("malformed scheme")
        return "file://" + os.path.realpath(uri)
    scheme = match.group(1)
    rest = uri[match.end() :]
    if scheme == "file":
        return "file://" + os.path.realpath(rest)
    if scheme != "s3":
        raise ValueError("only local files and s3 are read")
    parts = rest.split("/")
    if not parts[0] or any(p in ("..", ".") for p in parts) or "" in parts[1:-1]:
        raise ValueError("dot segments or empty segments")
    return "s3://" + posixpath.join(*parts)
