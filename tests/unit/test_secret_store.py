"""The secret store: values encrypted at rest, names in the clear, keys from env or a 0600 key file."""

from __future__ import annotations

import base64
import os
import pickle
import sqlite3
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from taskloom.errors import SecretNotFoundError, SecretStoreError
from taskloom.secret_store import KEY_FILE_NAME, SecretStore, default_secret_store, generate_key, load_key
from taskloom.settings import Settings
from taskloom.store.sqlite import SQLiteStore

PLAINTEXT = "sk-live-4f9a0c1e-very-secret-value"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(str(tmp_path / "t.db"))
    yield store
    store.close()


@pytest.fixture
def key() -> bytes:
    return generate_key()


@pytest.fixture
def secrets(store: SQLiteStore, key: bytes) -> SecretStore:
    return SecretStore(store, key)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with no TASKLOOM_SECRET_KEY and a home of its own, whatever the environment says."""
    return Settings.from_env().replace(secret_key=None, home_dir=str(tmp_path / "home"))


def test_set_then_get_returns_the_value(secrets: SecretStore) -> None:
    secrets.set("API_KEY", PLAINTEXT)
    assert secrets.get("API_KEY") == PLAINTEXT


def test_set_replaces_the_previous_value(secrets: SecretStore) -> None:
    secrets.set("API_KEY", "old")
    secrets.set("API_KEY", "new")
    assert secrets.get("API_KEY") == "new"


def test_unicode_and_empty_values_round_trip(secrets: SecretStore) -> None:
    secrets.set("GREETING", "grüße, 世界 🔑")
    secrets.set("EMPTY", "")
    assert secrets.get("GREETING") == "grüße, 世界 🔑"
    assert secrets.get("EMPTY") == ""


def test_a_second_store_object_with_the_same_key_reads_the_secret(
    secrets: SecretStore, tmp_path: Path, key: bytes
) -> None:
    secrets.set("API_KEY", PLAINTEXT)
    other = SQLiteStore(str(tmp_path / "t.db"))
    try:
        assert SecretStore(other, key).get("API_KEY") == PLAINTEXT
    finally:
        other.close()


def test_list_returns_sorted_names_only(secrets: SecretStore) -> None:
    secrets.set("B_TOKEN", PLAINTEXT)
    secrets.set("A_KEY", "another-value")
    names = secrets.list()
    assert names == ["A_KEY", "B_TOKEN"]
    assert PLAINTEXT not in repr(names)


def test_remove_deletes_and_reports_whether_it_existed(secrets: SecretStore) -> None:
    secrets.set("API_KEY", PLAINTEXT)
    assert secrets.remove("API_KEY") is True
    assert secrets.remove("API_KEY") is False
    assert secrets.list() == []
    with pytest.raises(SecretNotFoundError):
        secrets.get("API_KEY")


def test_missing_secret_error_names_it_and_says_how_to_set_it(secrets: SecretStore) -> None:
    with pytest.raises(SecretNotFoundError) as caught:
        secrets.get("API_KEY")
    assert isinstance(caught.value, KeyError)
    assert "'API_KEY'" in str(caught.value)
    assert "taskloom secrets set API_KEY" in str(caught.value)


def test_database_file_does_not_contain_the_plaintext(store: SQLiteStore, secrets: SecretStore) -> None:
    secrets.set("API_KEY", PLAINTEXT)
    raw = b"".join(path.read_bytes() for path in store.path.parent.glob(store.path.name + "*"))
    assert b"API_KEY" in raw  # the write really reached the files we read
    assert PLAINTEXT.encode() not in raw


def test_two_sets_of_the_same_value_under_the_same_name_give_different_ciphertexts(
    store: SQLiteStore, secrets: SecretStore
) -> None:
    """A fresh nonce per seal: AES-GCM with a repeated nonce leaks the XOR of plaintexts and the auth key.

    The same name and value on purpose: under two names the associated data differs, so the ciphertexts
    would differ even with a constant nonce.
    """
    sealed = []
    for _ in range(3):
        secrets.set("API_KEY", PLAINTEXT)
        blob = store.get_secret("API_KEY")
        assert blob is not None
        sealed.append(blob)
    nonces = {blob[1:13] for blob in sealed}
    assert len(nonces) == 3, "every seal must use a new nonce"
    assert len(set(sealed)) == 3
    assert secrets.get("API_KEY") == PLAINTEXT


def test_wrong_key_raises_secret_store_error_without_the_value(store: SQLiteStore, secrets: SecretStore) -> None:
    secrets.set("API_KEY", PLAINTEXT)
    with pytest.raises(SecretStoreError, match="'API_KEY'") as caught:
        SecretStore(store, generate_key()).get("API_KEY")
    assert PLAINTEXT not in str(caught.value)
    assert "key" in str(caught.value)


def test_ciphertexts_swapped_between_names_do_not_decrypt(store: SQLiteStore, secrets: SecretStore) -> None:
    secrets.set("TEST_TOKEN", "test-value")
    secrets.set("PROD_TOKEN", PLAINTEXT)
    with sqlite3.connect(store.path) as db:
        rows = dict(db.execute("SELECT name, ciphertext FROM secrets").fetchall())
        db.execute("UPDATE secrets SET ciphertext = ? WHERE name = ?", (rows["PROD_TOKEN"], "TEST_TOKEN"))
        db.execute("UPDATE secrets SET ciphertext = ? WHERE name = ?", (rows["TEST_TOKEN"], "PROD_TOKEN"))
    db.close()
    for name in ("TEST_TOKEN", "PROD_TOKEN"):
        with pytest.raises(SecretStoreError, match="tampered") as caught:
            secrets.get(name)
        assert PLAINTEXT not in str(caught.value)
        assert "test-value" not in str(caught.value)


def test_a_flipped_byte_is_detected(store: SQLiteStore, secrets: SecretStore) -> None:
    secrets.set("API_KEY", PLAINTEXT)
    sealed = bytearray(store.get_secret("API_KEY") or b"")
    sealed[-1] ^= 0x01
    store.put_secret("API_KEY", bytes(sealed))
    with pytest.raises(SecretStoreError):
        secrets.get("API_KEY")


def test_truncated_data_is_reported_not_crashed_on(store: SQLiteStore, secrets: SecretStore) -> None:
    store.put_secret("API_KEY", b"\x01short")
    with pytest.raises(SecretStoreError, match="'API_KEY'"):
        secrets.get("API_KEY")


def test_resolve_returns_the_requested_values(secrets: SecretStore) -> None:
    secrets.set("API_KEY", PLAINTEXT)
    secrets.set("DB_PASSWORD", "hunter2")
    secrets.set("UNRELATED", "not-asked-for")
    assert secrets.resolve(["API_KEY", "DB_PASSWORD"], owner="charge") == {
        "API_KEY": PLAINTEXT,
        "DB_PASSWORD": "hunter2",
    }
    assert secrets.resolve([], owner="charge") == {}


def test_resolve_names_every_missing_secret_and_the_owner_but_no_value(secrets: SecretStore) -> None:
    secrets.set("API_KEY", PLAINTEXT)
    with pytest.raises(SecretNotFoundError) as caught:
        secrets.resolve(["API_KEY", "DB_PASSWORD", "SMTP_TOKEN"], owner="send_invoice")
    message = str(caught.value)
    assert "'DB_PASSWORD'" in message
    assert "'SMTP_TOKEN'" in message
    assert "send_invoice" in message
    assert "taskloom secrets set DB_PASSWORD" in message
    assert PLAINTEXT not in message
    assert "API_KEY" not in message
    assert caught.value.names == ("DB_PASSWORD", "SMTP_TOKEN")  # type: ignore[attr-defined]
    assert caught.value.owner == "send_invoice"  # type: ignore[attr-defined]


def test_missing_secret_error_survives_pickling(secrets: SecretStore) -> None:
    with pytest.raises(SecretNotFoundError) as caught:
        secrets.resolve(["API_KEY"], owner="charge")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert str(copy) == str(caught.value)
    assert copy.names == ("API_KEY",)


@pytest.mark.parametrize("name", ["", "has space", "tab\there", "new\nline", "nul\x00", "zero\u200bwidth", "x" * 201])
def test_invalid_names_raise_value_error_naming_them(secrets: SecretStore, name: str) -> None:
    with pytest.raises(ValueError, match="secret name") as caught:
        secrets.set(name, "value")
    if name and len(name) < 50:
        assert repr(name) in str(caught.value)


def test_a_name_of_200_characters_is_accepted(secrets: SecretStore) -> None:
    secrets.set("N" * 200, "value")
    assert secrets.get("N" * 200) == "value"


def test_resolve_with_an_invalid_name_names_the_owner(secrets: SecretStore) -> None:
    with pytest.raises(ValueError, match="charge") as caught:
        secrets.resolve(["BAD NAME"], owner="charge")
    assert "'BAD NAME'" in str(caught.value)


def test_values_must_be_strings(secrets: SecretStore) -> None:
    with pytest.raises(TypeError, match="'API_KEY'"):
        secrets.set("API_KEY", b"bytes")  # type: ignore[arg-type]


def test_repr_shows_neither_key_nor_values(secrets: SecretStore, key: bytes) -> None:
    secrets.set("API_KEY", PLAINTEXT)
    text = repr(secrets)
    assert "SecretStore" in text
    assert base64.urlsafe_b64encode(key).decode() not in text
    assert PLAINTEXT not in text


def test_a_secret_store_refuses_to_be_pickled(secrets: SecretStore) -> None:
    with pytest.raises(TypeError, match="key"):
        pickle.dumps(secrets)


def test_a_key_of_the_wrong_size_is_refused(store: SQLiteStore) -> None:
    with pytest.raises(SecretStoreError, match="32"):
        SecretStore(store, b"too short")


# -- the key ---------------------------------------------------------------------------------------
def test_key_file_is_created_with_mode_0600_and_reused(settings: Settings) -> None:
    key = load_key(settings)
    path = settings.home / KEY_FILE_NAME
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(settings) == key
    assert [p.name for p in settings.home.iterdir()] == [KEY_FILE_NAME]  # no temporary file left behind


def test_key_file_is_private_even_under_a_permissive_umask(settings: Settings) -> None:
    previous = os.umask(0)
    try:
        load_key(settings)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((settings.home / KEY_FILE_NAME).stat().st_mode) == 0o600


def test_secrets_stored_with_the_key_file_read_back_in_a_new_store(settings: Settings, store: SQLiteStore) -> None:
    SecretStore(store, load_key(settings)).set("API_KEY", PLAINTEXT)
    assert SecretStore(store, load_key(settings)).get("API_KEY") == PLAINTEXT


def test_env_key_wins_over_the_key_file(settings: Settings) -> None:
    key = generate_key()
    encoded = base64.urlsafe_b64encode(key).decode()
    assert load_key(settings.replace(secret_key=encoded)) == key
    assert load_key(settings.replace(secret_key=encoded.rstrip("="))) == key
    assert not (settings.home / KEY_FILE_NAME).exists()


@pytest.mark.parametrize("bad", ["not base64 !!", base64.urlsafe_b64encode(b"16 bytes only...").decode()])
def test_a_malformed_env_key_is_refused_without_echoing_it(settings: Settings, bad: str) -> None:
    with pytest.raises(SecretStoreError, match="TASKLOOM_SECRET_KEY") as caught:
        load_key(settings.replace(secret_key=bad))
    assert bad not in str(caught.value)


def test_a_malformed_key_file_is_refused_naming_the_file(settings: Settings) -> None:
    settings.home.mkdir()
    (settings.home / KEY_FILE_NAME).write_text("garbage")
    with pytest.raises(SecretStoreError, match=KEY_FILE_NAME):
        load_key(settings)


def test_load_key_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = generate_key()
    monkeypatch.setenv("TASKLOOM_SECRET_KEY", base64.urlsafe_b64encode(key).decode())
    monkeypatch.setenv("TASKLOOM_HOME", str(tmp_path / "home"))
    assert load_key() == key


def test_default_secret_store_uses_the_configured_database_and_key_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TASKLOOM_SECRET_KEY", raising=False)
    monkeypatch.setenv("TASKLOOM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TASKLOOM_DATABASE_URL", f"sqlite:///{tmp_path / 'default.db'}")
    default_secret_store().set("API_KEY", PLAINTEXT)
    assert default_secret_store().get("API_KEY") == PLAINTEXT
    assert (tmp_path / "home" / KEY_FILE_NAME).exists()
    assert (tmp_path / "default.db").exists()


def test_concurrent_first_use_agrees_on_one_key(settings: Settings) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = set(pool.map(lambda _: load_key(settings), range(32)))
    assert len(keys) == 1
    assert [p.name for p in settings.home.iterdir()] == [KEY_FILE_NAME]


# -- exact messages: what a user reads to fix the problem (mutation testing, issue 14) -------------------
def _message(error: pytest.ExceptionInfo[BaseException]) -> str:
    return str(error.value)


def test_missing_secrets_are_listed_exactly_once_or_many(secrets: SecretStore) -> None:
    with pytest.raises(SecretNotFoundError) as one:
        secrets.resolve(["DB_PASSWORD"], owner="task 'charge'")
    assert _message(one).strip("'\"") == (
        "task 'charge' requested secret 'DB_PASSWORD', which is not set; set it with: taskloom secrets set DB_PASSWORD"
    )
    with pytest.raises(SecretNotFoundError) as two:
        secrets.resolve(["DB_PASSWORD", "SMTP_TOKEN"], owner="task 'charge'")
    assert _message(two).strip("'\"") == (
        "task 'charge' requested secrets 'DB_PASSWORD', 'SMTP_TOKEN', which are not set; set them with: "
        "taskloom secrets set DB_PASSWORD; taskloom secrets set SMTP_TOKEN"
    )


def test_bad_names_and_values_are_refused_with_exact_messages(secrets: SecretStore) -> None:
    with pytest.raises(ValueError) as not_str:
        secrets.set(3, "v")  # type: ignore[arg-type]
    assert _message(not_str) == "a secret name must be a str, got int"
    with pytest.raises(ValueError) as empty:
        secrets.set("", "v")
    assert _message(empty) == "a secret name must not be empty"
    with pytest.raises(ValueError) as long:
        secrets.set("x" * 201, "v")
    assert _message(long) == f"secret name {'x' * 40!r}... is 201 characters; the limit is 200"
    with pytest.raises(TypeError) as value:
        secrets.set("API_KEY", 5)  # type: ignore[arg-type]
    assert _message(value) == "the value of secret 'API_KEY' must be a str, got int"


def test_a_wrong_key_says_what_to_check(store: SQLiteStore, secrets: SecretStore) -> None:
    secrets.set("API_KEY", PLAINTEXT)
    with pytest.raises(SecretStoreError) as caught:
        SecretStore(store, generate_key()).get("API_KEY")
    assert _message(caught) == (
        "cannot decrypt secret 'API_KEY': the secret key differs from the one it was stored with "
        "(check TASKLOOM_SECRET_KEY or the key file), or the stored data was tampered with"
    )


def test_a_key_of_the_wrong_size_or_type_is_refused_saying_what_it_got(store: SQLiteStore) -> None:
    with pytest.raises(SecretStoreError) as short:
        SecretStore(store, b"too short")
    assert _message(short) == "the secret key must be 32 raw bytes (AES-256), got 9 bytes"
    with pytest.raises(SecretStoreError) as text:
        SecretStore(store, "k" * 32)  # type: ignore[arg-type]
    assert _message(text) == "the secret key must be 32 raw bytes (AES-256), got a str"


def test_repr_names_the_store_by_its_url_or_else_its_type(store: SQLiteStore, key: bytes) -> None:
    assert repr(SecretStore(store, key)) == f"SecretStore(store={store.url!r})"

    class NoUrl:
        """A store without a url attribute: the repr falls back to the type's name."""

    assert repr(SecretStore(NoUrl(), key)) == "SecretStore(store='NoUrl')"  # type: ignore[arg-type]


def test_pickling_is_refused_saying_why(secrets: SecretStore) -> None:
    with pytest.raises(TypeError) as caught:
        pickle.dumps(secrets)
    assert _message(caught) == "a SecretStore cannot be pickled: it holds the secret key"


# -- the key from the environment and the key file ------------------------------------------------------
def test_a_malformed_env_key_is_refused_with_an_exact_message(settings: Settings) -> None:
    with pytest.raises(SecretStoreError) as short:
        load_key(settings.replace(secret_key=base64.urlsafe_b64encode(b"16 bytes only...").decode()))
    assert _message(short).startswith("TASKLOOM_SECRET_KEY must encode 32 bytes, it encodes 16; generate one with")
    with pytest.raises(SecretStoreError) as junk:
        load_key(settings.replace(secret_key="not base64 !!"))
    assert _message(junk).startswith("TASKLOOM_SECRET_KEY is not urlsafe base64; generate one with")


def test_a_key_with_stray_characters_is_refused_not_silently_cleaned(settings: Settings) -> None:
    encoded = base64.urlsafe_b64encode(generate_key()).decode()
    with pytest.raises(SecretStoreError, match="not urlsafe base64"):
        load_key(settings.replace(secret_key=encoded[:10] + "!" + encoded[10:]))


def test_a_key_file_that_cannot_be_read_is_reported_naming_it(settings: Settings) -> None:
    path = settings.home / KEY_FILE_NAME
    path.mkdir(parents=True)  # a folder where the key file should be
    with pytest.raises(SecretStoreError) as folder:
        load_key(settings)
    assert _message(folder).startswith(f"cannot read the key file {str(path)!r}: ")
    path.rmdir()
    path.write_bytes("clé".encode())  # not ASCII: not a key, and not something to decode as one
    with pytest.raises(SecretStoreError) as text:
        load_key(settings)
    assert _message(text).startswith(f"cannot read the key file {str(path)!r}: ")


def test_the_key_file_is_created_under_missing_parent_folders(settings: Settings) -> None:
    nested = settings.replace(home_dir=str(settings.home / "a" / "b"))
    key = load_key(nested)
    assert load_key(nested) == key
    assert (settings.home / "a" / "b" / KEY_FILE_NAME).exists()


def test_a_key_file_that_cannot_be_created_is_reported_saying_what_to_do(settings: Settings) -> None:
    """A key file that is a dangling link (to an unmounted volume, say): nothing to read, nowhere to write."""
    settings.home.mkdir()
    path = settings.home / KEY_FILE_NAME
    path.symlink_to(settings.home / "unmounted" / "secret.key")
    with pytest.raises(SecretStoreError) as caught:
        load_key(settings)
    assert _message(caught).startswith(f"cannot create the key file {str(path)!r}: ")
    assert _message(caught).endswith("; set TASKLOOM_SECRET_KEY instead")


def test_creating_a_key_file_that_another_process_just_created_uses_its_key(settings: Settings) -> None:
    """The race load_key loses when another process links its key file first: the winner's key is used."""
    from taskloom.secret_store import _create_key_file

    winner = load_key(settings)
    path = settings.home / KEY_FILE_NAME
    assert _create_key_file(path) == winner
    assert [p.name for p in settings.home.iterdir()] == [KEY_FILE_NAME]  # the loser's temporary file is gone
    path.write_text("garbage")
    with pytest.raises(SecretStoreError) as caught:
        _create_key_file(path)
    assert _message(caught).startswith(f"the key file {str(path)!r} must encode 32 bytes, it encodes 5")
    path.write_bytes("clé".encode())
    with pytest.raises(SecretStoreError) as unreadable:
        _create_key_file(path)
    assert _message(unreadable).startswith(f"cannot read the key file {str(path)!r}: ")


def test_private_files_are_created_exclusively(tmp_path: Path) -> None:
    """Never opened over an existing file: that file's owner or mode could make it readable by others."""
    from taskloom.secret_store import _write_private

    path = tmp_path / "private"
    _write_private(path, b"first")
    with pytest.raises(FileExistsError):
        _write_private(path, b"second")
    assert path.read_bytes() == b"first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
