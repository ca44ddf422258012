"""Encrypted secrets: names in the clear, values sealed with AES-GCM under one 32-byte key.

The store only ever sees ciphertext (``put_secret``/``get_secret`` take and return bytes), so a copied
database file reveals secret names but no values. AES-GCM is authenticated: a wrong key or a changed byte
fails loudly with :class:`~taskloom.errors.SecretStoreError` instead of returning garbage. The secret's
name is bound to its ciphertext as associated data, so a ciphertext moved to another name (say, from
``TEST_API_KEY`` to ``PROD_API_KEY``) does not decrypt there either.

The key comes from ``TASKLOOM_SECRET_KEY`` (urlsafe base64 of 32 bytes) or, when that is unset, from
``secret.key`` in the taskloom home folder, created on first use readable by its owner only. Lose the
key and the stored secrets are gone: set them again.

Secret values never appear in a repr or an error message; names do, because they are what a user needs
to fix the problem. ``cryptography`` is imported only when a secret is sealed or opened, so
``import taskloom`` stays fast.
"""

from __future__ import annotations

import base64
import binascii
import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskloom.errors import SecretNotFoundError, SecretStoreError
from taskloom.settings import Settings

if TYPE_CHECKING:
    from taskloom.store.base import Store

__all__ = ["KEY_FILE_NAME", "SecretStore", "default_secret_store", "generate_key", "load_key"]

KEY_FILE_NAME = "secret.key"
KEY_SIZE = 32
MAX_NAME_LENGTH = 200

# Sealed layout: version byte | 12-byte nonce | ciphertext with its 16-byte tag. The version byte leaves
# room for a new format or key rotation without guessing what old rows hold.
_FORMAT_V1 = b"\x01"
_NONCE_SIZE = 12
_TAG_SIZE = 16
_AAD_PREFIX = b"taskloom-secret-v1\x00"
_GENERATE_HINT = (
    'generate one with: python -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"'
)


class SecretStore:
    """Set, get, list and remove secrets in a :class:`~taskloom.store.Store`, encrypted with ``key``.

    ``key`` is the raw 32-byte AES-256 key (see :func:`load_key`). The object holds no plaintext;
    every call goes to the store, so several processes sharing one database see the same secrets.
    """

    __slots__ = ("_cipher", "_key", "store")

    def __init__(self, store: Store, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            size = f"{len(key)} bytes" if isinstance(key, bytes) else f"a {type(key).__name__}"
            raise SecretStoreError(f"the secret key must be {KEY_SIZE} raw bytes (AES-256), got {size}")
        self.store = store
        self._key = key
        self._cipher: Any = None

    def __repr__(self) -> str:
        return f"SecretStore(store={getattr(self.store, 'url', type(self.store).__name__)!r})"

    def __reduce__(self) -> Any:
        # Pickling would copy the key into whatever the pickle is written to; refuse instead.
        raise TypeError("a SecretStore cannot be pickled: it holds the secret key")

    # -- public API --------------------------------------------------------------------------------
    def set(self, name: str, value: str) -> None:
        """Encrypt ``value`` and store it under ``name``, replacing any previous value."""
        _check_name(name)
        if not isinstance(value, str):
            raise TypeError(f"the value of secret {name!r} must be a str, got {type(value).__name__}")
        self.store.put_secret(name, self._seal(name, value))

    def get(self, name: str) -> str:
        """The value of ``name``; :class:`SecretNotFoundError` (a ``KeyError``) says how to set it."""
        _check_name(name)
        sealed = self.store.get_secret(name)
        if sealed is None:
            raise SecretNotFoundError(f"secret {name!r} is not set; set it with: taskloom secrets set {name}")
        return self._open(name, sealed)

    def list(self) -> list[str]:
        """The names of all stored secrets, sorted; never their values."""
        return sorted(self.store.list_secret_names())

    def remove(self, name: str) -> bool:
        """Delete ``name``; True if it existed."""
        _check_name(name)
        return self.store.delete_secret(name)

    def resolve(self, names: Sequence[str], owner: str) -> dict[str, str]:
        """The values of ``names`` for ``owner`` (the task or workflow that declared ``secret_requests``).

        Every missing secret is reported at once, so a user fixes them in one go. The error names the
        missing secrets and ``owner`` and carries them as ``.names`` and ``.owner``; it never contains a
        value, not even of the secrets that were found.
        """
        wanted = list(dict.fromkeys(names))
        for name in wanted:
            try:
                _check_name(name)
            except ValueError as error:
                raise ValueError(f"{owner} requested an invalid secret name: {error}") from None
        sealed = {name: self.store.get_secret(name) for name in wanted}
        missing = [name for name, blob in sealed.items() if blob is None]
        if missing:
            listed = ", ".join(repr(name) for name in missing)
            how = "; ".join(f"taskloom secrets set {name}" for name in missing)
            if len(missing) == 1:
                message = f"{owner} requested secret {listed}, which is not set; set it with: {how}"
            else:
                message = f"{owner} requested secrets {listed}, which are not set; set them with: {how}"
            not_found = SecretNotFoundError(message)
            not_found.names = tuple(missing)  # type: ignore[attr-defined]
            not_found.owner = owner  # type: ignore[attr-defined]
            raise not_found
        return {name: self._open(name, blob) for name, blob in sealed.items() if blob is not None}

    # -- sealing -----------------------------------------------------------------------------------
    def _aesgcm(self) -> Any:
        if self._cipher is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._cipher = AESGCM(self._key)
        return self._cipher

    def _seal(self, name: str, value: str) -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        sealed: bytes = self._aesgcm().encrypt(nonce, value.encode("utf-8"), _associated_data(name))
        return _FORMAT_V1 + nonce + sealed

    def _open(self, name: str, blob: bytes) -> str:
        from cryptography.exceptions import InvalidTag

        if len(blob) < 1 + _NONCE_SIZE + _TAG_SIZE or blob[:1] != _FORMAT_V1:
            raise SecretStoreError(
                f"secret {name!r} is not in a format this taskloom can read (corrupted or written by a "
                f"newer version); set it again with: taskloom secrets set {name}"
            )
        nonce, sealed = blob[1 : 1 + _NONCE_SIZE], blob[1 + _NONCE_SIZE :]
        try:
            plain: bytes = self._aesgcm().decrypt(nonce, sealed, _associated_data(name))
        except InvalidTag:
            raise SecretStoreError(
                f"cannot decrypt secret {name!r}: the secret key differs from the one it was stored with "
                "(check TASKLOOM_SECRET_KEY or the key file), or the stored data was tampered with"
            ) from None
        return plain.decode("utf-8")


def _associated_data(name: str) -> bytes:
    return _AAD_PREFIX + name.encode("utf-8")


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise ValueError(f"a secret name must be a str, got {type(name).__name__}")
    if not name:
        raise ValueError("a secret name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"secret name {name[:40]!r}... is {len(name)} characters; the limit is {MAX_NAME_LENGTH}")
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in name):
        raise ValueError(
            f"secret name {name!r} contains whitespace or control characters; use letters, digits and _ . -"
        )


# -- the key ---------------------------------------------------------------------------------------
def generate_key() -> bytes:
    """A fresh random 32-byte key."""
    return os.urandom(KEY_SIZE)


def encode_key(key: bytes) -> str:
    """``key`` as the urlsafe base64 text that ``TASKLOOM_SECRET_KEY`` and the key file hold."""
    return base64.urlsafe_b64encode(key).decode("ascii")


def decode_key(text: str, *, source: str) -> bytes:
    """Parse urlsafe base64 of 32 bytes; ``source`` names where it came from. Never echoes the key."""
    cleaned = text.strip()
    try:
        key = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise SecretStoreError(f"{source} is not urlsafe base64; {_GENERATE_HINT}") from None
    if len(key) != KEY_SIZE:
        raise SecretStoreError(f"{source} must encode {KEY_SIZE} bytes, it encodes {len(key)}; {_GENERATE_HINT}")
    return key


def load_key(settings: Settings | None = None) -> bytes:
    """The secret key: ``TASKLOOM_SECRET_KEY`` if set, else ``<home>/secret.key``, created on first use.

    The key file is created with mode 0600 in one ``open`` call (``O_CREAT | O_EXCL``), so it is never
    readable by others, not even for an instant; it is written under a temporary name and linked into
    place, so a concurrent first use in another process reads a whole key, never a half-written one.
    """
    settings = settings or Settings.from_env()
    if settings.secret_key:
        return decode_key(settings.secret_key, source="TASKLOOM_SECRET_KEY")
    path = settings.home / KEY_FILE_NAME
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        return _create_key_file(path)


def _read_key_file(path: Path) -> bytes:
    """The key in ``path``. FileNotFoundError when there is none (the caller then creates it); any other
    failure to read it, a non-ASCII file included, is a SecretStoreError naming the file."""
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as error:
        raise SecretStoreError(f"cannot read the key file {str(path)!r}: {error}") from None
    return decode_key(text, source=f"the key file {str(path)!r}")


def _create_key_file(path: Path) -> bytes:
    key = generate_key()
    data = (encode_key(key) + "\n").encode("ascii")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        _write_private(temporary, data)
        try:
            os.link(temporary, path)  # fails if another process won the race; then use its key
        except FileExistsError:
            return _read_key_file(path)
        except OSError:
            # A filesystem without hard links: create the real file exclusively instead.
            try:
                _write_private(path, data)
            except FileExistsError:
                return _read_key_file(path)
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as error:
        raise SecretStoreError(
            f"cannot create the key file {str(path)!r}: {error}; set TASKLOOM_SECRET_KEY instead"
        ) from None
    return key


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def default_secret_store() -> SecretStore:
    """The secret store on :func:`taskloom.store.default_store`, with the key from :func:`load_key`."""
    from taskloom.store import default_store

    return SecretStore(default_store(), load_key())
