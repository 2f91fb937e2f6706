"""The data key file: outside the database, mode 0600, generated on first use like the logins' passwords.

    lookup:<secret>     the keyed hash of values looked up by their plaintext (never rotated)
    k2:<secret>         the current key: seals every value written
    k1:<secret>         older keys: only read, until a rotation leaves no row under them

Secrets are 32 random bytes, URL-safe base64 (`secrets.token_urlsafe(32)`).
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import data_key_path
from pipeline.errors import ConfigError

LINE = re.compile(r"^(lookup|k[0-9]+):([A-Za-z0-9_-]{32,})$")
HEADER = "# Nibble data keys (docs/security.md §8): the first kN line seals, the others only unseal.\n"


@dataclass(frozen=True)
class Keyring:
    lookup: str
    keys: tuple[tuple[str, str], ...]  # (key id, secret), the current key first

    @property
    def current(self) -> str:
        return self.keys[0][0]

    @property
    def setting(self) -> str:
        """The session setting `nibble.data_keys` (migration 0023 reads it)."""
        return " ".join(f"{key_id}:{secret}" for key_id, secret in (("lookup", self.lookup), *self.keys))

    def rotated(self, secret: str) -> Keyring:
        """A new current key (the next id) before the others."""
        number = max(int(key_id[1:]) for key_id, _ in self.keys) + 1
        return Keyring(self.lookup, ((f"k{number}", secret), *self.keys))

    def only(self, key_ids: set[str]) -> Keyring:
        return Keyring(self.lookup, tuple(key for key in self.keys if key[0] in key_ids))


def parse(text: str, source: str) -> Keyring:
    """A key file's text; a bad one is a one-line ConfigError naming `source`."""
    found: dict[str, str] = {}
    order: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = LINE.match(line)
        if match is None:
            raise ConfigError(f"{source}, line {number}: not `lookup:SECRET` or `kN:SECRET` (32+ URL-safe characters)")
        key_id, secret = match.groups()
        if key_id in found:
            raise ConfigError(f"{source}, line {number}: {key_id} given twice")
        found[key_id] = secret
        order.append(key_id)
    if "lookup" not in found or len(found) < 2:
        raise ConfigError(f"{source}: needs a `lookup:` line and at least one `kN:` line")
    return Keyring(found["lookup"], tuple((key_id, found[key_id]) for key_id in order if key_id != "lookup"))


def render(ring: Keyring) -> str:
    return HEADER + "".join(f"{key_id}:{secret}\n" for key_id, secret in (("lookup", ring.lookup), *ring.keys))


def new_keyring() -> Keyring:
    return Keyring(secrets.token_urlsafe(32), (("k1", secrets.token_urlsafe(32)),))


def load(path: Path | None = None) -> Keyring:
    """The key file: `path`, else NIBBLE_DATA_KEY_FILE (which must exist), else the local stack's, generated on
    first use."""
    if path is None:
        path = data_key_path()
        if "NIBBLE_DATA_KEY_FILE" not in os.environ:
            _generate_once(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"NIBBLE_DATA_KEY_FILE: cannot read {path}: {exc.strerror}") from None
    return parse(text, str(path))


def _generate_once(path: Path) -> None:
    """A new key file of mode 0600 (never readable by others even for a moment), whole or not at all: written
    aside, then linked into place, so a concurrent first use finds the winner's complete file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        return
    staged = _write_aside(path, new_keyring())
    try:
        os.link(staged, path)
    except FileExistsError:
        pass
    finally:
        staged.unlink()


def _write_aside(path: Path, ring: Keyring) -> Path:
    staged = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(render(ring))
        out.flush()
        os.fsync(out.fileno())
    return staged


def save(path: Path, ring: Keyring) -> None:
    """Replace the key file at once (a crash leaves the old or the new file, never half of one)."""
    _write_aside(path, ring).replace(path)
