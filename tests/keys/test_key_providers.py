"""Choosing a provider, and its typed errors: the ``env`` default unchanged, unsafe key files
refused, a wrong PIN, a missing token object, a tampered store; the rings unwrapped once per
process; no representation of a ring, a setting or a provider holds a key."""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from pathlib import Path

import pytest

from authmodels import config
from authmodels.config import KeyRing, Settings, format_key_ring
from authmodels.errors import (
    ConfigurationError,
    KeyFileError,
    KeyManagementError,
    KeyObjectNotFoundError,
    KeyProviderError,
    KeyProviderLoginError,
    KeyProviderUnavailableError,
    KeyUnwrapError,
    MissingKeyError,
)
from authmodels.security.keys import (
    Pkcs11Kek,
    Pkcs11Uri,
    WrappingKeyProvider,
    forget_loaded_keys,
    load_key_rings,
    provider_from_env,
)
from authmodels.services import FlowSettings
from authmodels.testing.softhsm import SoftHsm
from tests.keys.conftest import Cli, Provider, assert_no_key_material

HASH_KEY, ENC_KEY = secrets.token_bytes(32), secrets.token_bytes(32)
ENV_RINGS = {
    config.HASH_KEYS_VAR: format_key_ring({"h1": HASH_KEY}),
    config.ENCRYPTION_KEYS_VAR: format_key_ring({"e1": ENC_KEY}),
}


def test_the_env_provider_is_the_default_and_reads_the_rings_as_before() -> None:
    unset = Settings.from_env(ENV_RINGS)
    named = Settings.from_env({**ENV_RINGS, config.KEY_PROVIDER_VAR: " env "})
    assert unset == named
    assert unset.key_provider == "env"
    assert unset.require_hash_keys().keys == {"h1": HASH_KEY}
    assert unset.require_encryption_keys().current_key == ENC_KEY
    assert unset.require_privacy_keys() == unset.hash_keys  # the fallback, as before


def test_env_rings_beside_another_provider_are_refused(file_provider: Provider) -> None:
    with pytest.raises(ConfigurationError, match="AUTHMODELS_HASH_KEYS is set while"):
        Settings.from_env(
            {**file_provider.environ, config.HASH_KEYS_VAR: ENV_RINGS["AUTHMODELS_HASH_KEYS"]}
        )
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({**file_provider.environ, **ENV_RINGS})
    assert str(refused.value).startswith(
        "AUTHMODELS_HASH_KEYS, AUTHMODELS_ENCRYPTION_KEYS are set while AUTHMODELS_KEY_PROVIDER"
    )
    assert base64.b64encode(HASH_KEY).decode() not in str(refused.value)


def test_a_provider_that_is_none_of_the_three_is_refused() -> None:
    with pytest.raises(KeyProviderError, match="must be 'env', 'file:/path/to/kek' or a 'pkcs11:'"):
        Settings.from_env({config.KEY_PROVIDER_VAR: "vault:secret/kek"})


def test_a_wrapping_provider_needs_the_store_variable(tmp_path: Path) -> None:
    with pytest.raises(KeyProviderError, match="AUTHMODELS_WRAPPED_KEYS is not set"):
        Settings.from_env({config.KEY_PROVIDER_VAR: f"file:{tmp_path}/kek"})


def test_a_missing_store_says_how_to_make_one(file_provider: Provider, cli: Cli) -> None:
    cli.ok("keys", "kek", "create")
    with pytest.raises(KeyFileError, match=r"does not exist: `authmodels keys create hash`"):
        Settings.from_env(file_provider.environ)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o660])
def test_a_key_file_its_group_or_others_can_use_is_refused(
    file_provider: Provider, cli: Cli, mode: int
) -> None:
    cli.ok("keys", "kek", "create")
    cli.ok("keys", "create", "hash")
    kek_file = Path(file_provider.environ[config.KEY_PROVIDER_VAR].removeprefix("file:"))
    kek_file.chmod(mode)
    with pytest.raises(KeyFileError) as refused:
        Settings.from_env(file_provider.environ)
    assert f"the key file {kek_file} can be read or written by its group or others" in str(
        refused.value
    )
    assert f"`chmod 600 {kek_file}`" in str(refused.value)


def test_a_key_file_owned_by_another_user_is_refused(
    file_provider: Provider, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.ok("keys", "kek", "create")
    cli.ok("keys", "create", "hash")
    owner = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)  # this process as another user
    with pytest.raises(KeyFileError, match=rf"is owned by uid {owner}, not by the user") as refused:
        Settings.from_env(file_provider.environ)
    assert f"`chown {owner + 1} " in str(refused.value)


def test_a_store_others_can_write_is_refused(file_provider: Provider, cli: Cli) -> None:
    cli.ok("keys", "kek", "create")
    cli.ok("keys", "create", "hash")
    file_provider.store.chmod(0o666)
    with pytest.raises(KeyFileError, match=r"can be written by its group or others \(mode 0666\)"):
        Settings.from_env(file_provider.environ)
    file_provider.store.chmod(0o644)  # readable by all is fine: it holds no key in clear
    assert Settings.from_env(file_provider.environ).require_hash_keys().current


def _tamper(store: Path) -> None:
    document = json.loads(store.read_text())
    entry = document["rings"]["hash"]["keys"][0]
    wrapped = bytearray(base64.b64decode(entry["wrapped"]))
    wrapped[5] ^= 0x01
    entry["wrapped"] = base64.b64encode(bytes(wrapped)).decode()
    store.write_text(json.dumps(document))


@pytest.mark.parametrize("provider", ["file_provider", "hsm_provider"])
def test_an_altered_wrapped_key_does_not_unwrap(
    provider: str, cli: Cli, request: pytest.FixtureRequest
) -> None:
    chosen: Provider = request.getfixturevalue(provider)
    cli.ok("keys", "kek", "create")
    cli.ok("keys", "create", "hash", "--id", "h1")
    _tamper(chosen.store)
    with pytest.raises(KeyUnwrapError, match="a data key does not unwrap under KEK"):
        Settings.from_env(chosen.environ)


def test_a_wrong_pin_is_a_login_error_that_does_not_show_the_pin(
    hsm_provider: Provider, cli: Cli, authmodels_softhsm: SoftHsm
) -> None:
    cli.ok("keys", "kek", "create")
    cli.ok("keys", "create", "hash")
    wrong = "wrong-" + secrets.token_hex(4)
    hsm_provider.set(config.PKCS11_PIN_VAR, wrong)
    with pytest.raises(KeyProviderLoginError) as refused:
        Settings.from_env(hsm_provider.environ)
    message = str(refused.value)
    assert f"the PKCS#11 token {authmodels_softhsm.token!r} refused the PIN" in message
    assert "AUTHMODELS_PKCS11_PIN (PinIncorrect)" in message
    assert wrong not in message and authmodels_softhsm.pin not in message
    status, output = cli("keys", "create", "hash", "--id", "h2")
    assert status == 1 and "refused the PIN" in output and wrong not in output


def test_no_pin_at_all_says_where_to_put_one(hsm_provider: Provider) -> None:
    environ = dict(hsm_provider.environ)
    del environ[config.PKCS11_PIN_VAR]
    kek = provider_from_env(environ)
    assert isinstance(kek, WrappingKeyProvider)
    with pytest.raises(KeyProviderLoginError, match="set AUTHMODELS_PKCS11_PIN, or pin-source="):
        kek.kek.wrap([secrets.token_bytes(32)])


def test_a_pin_source_file_is_read_only_when_private(
    hsm_provider: Provider, cli: Cli, authmodels_softhsm: SoftHsm, tmp_path: Path
) -> None:
    cli.ok("keys", "kek", "create")
    cli.ok("keys", "create", "hash")
    pin_file = tmp_path / "pin"
    pin_file.write_text(authmodels_softhsm.pin + "\n")
    pin_file.chmod(0o600)
    uri = hsm_provider.environ[config.KEY_PROVIDER_VAR] + f"&pin-source={pin_file}"
    environ = {config.KEY_PROVIDER_VAR: uri,
               config.WRAPPED_KEYS_VAR: hsm_provider.environ[config.WRAPPED_KEYS_VAR]}  # fmt: skip
    assert Settings.from_env(environ).require_hash_keys().current
    pin_file.chmod(0o644)
    forget_loaded_keys()  # a restart
    with pytest.raises(KeyFileError, match=f"the PIN file {pin_file} can be read"):
        load_key_rings(environ)


def test_a_missing_kek_object_names_its_label(
    hsm_provider: Provider, cli: Cli, kek_label: str
) -> None:
    cli.ok("keys", "kek", "create")
    cli.ok("keys", "create", "hash")
    uri = hsm_provider.environ[config.KEY_PROVIDER_VAR]
    hsm_provider.set(config.KEY_PROVIDER_VAR, uri.replace(kek_label, "no-such-kek"))
    with pytest.raises(KeyObjectNotFoundError, match="no secret key labelled 'no-such-kek'"):
        provider_from_env(hsm_provider.environ).kek.wrap([secrets.token_bytes(32)])  # type: ignore[attr-defined]
    # the store names the KEK that wrapped each key: it still unwraps
    assert Settings.from_env(hsm_provider.environ).require_hash_keys().current
    store = json.loads(hsm_provider.store.read_text())
    store["rings"]["hash"]["keys"][0]["kek"] = "gone"
    hsm_provider.store.write_text(json.dumps(store))
    with pytest.raises(KeyObjectNotFoundError, match="no secret key labelled 'gone'"):
        Settings.from_env(hsm_provider.environ)


def test_a_missing_token_or_module_is_unavailable(
    authmodels_softhsm: SoftHsm, tmp_path: Path
) -> None:
    def kek(uri: str) -> Pkcs11Kek:
        return Pkcs11Kek(Pkcs11Uri.parse(uri), {config.PKCS11_PIN_VAR: authmodels_softhsm.pin})

    no_token = authmodels_softhsm.uri("kek").replace(
        f"token={authmodels_softhsm.token}", "token=elsewhere"
    )
    with pytest.raises(KeyProviderUnavailableError, match="has no token labelled 'elsewhere'"):
        kek(no_token).wrap([secrets.token_bytes(32)])
    no_module = f"pkcs11:token=t;object=kek?module-path={tmp_path}/libvendor.so"
    with pytest.raises(KeyProviderUnavailableError, match=r"libvendor\.so cannot be loaded"):
        kek(no_module).wrap([secrets.token_bytes(32)])


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pkcs11:object=kek?module-path=/m.so", "needs token"),
        ("pkcs11:token=t?module-path=/m.so", "needs object"),
        ("pkcs11:token=t;object=kek", "needs module-path"),
        ("pkcs11:token=t;object=kek;id=%01?module-path=/m.so", "'id' is not an attribute"),
        ("pkcs11:token=t;object=kek;token=u?module-path=/m.so", "'token' is given twice"),
        ("pkcs11:token=t;object=kek;type=private?module-path=/m.so", "is a secret-key object"),
        ("pkcs11:token=t;object=a%20kek?module-path=/m.so", "must be 1-32 characters"),
    ],
)
def test_a_malformed_pkcs11_uri_is_refused(uri: str, message: str) -> None:
    with pytest.raises(KeyProviderError, match=message):
        Pkcs11Uri.parse(uri)


def test_a_pin_in_the_uri_is_refused_without_being_repeated() -> None:
    pin = secrets.token_hex(6)
    uri = f"pkcs11:token=t;object=k?module-path=/m.so&pin-value={pin}"
    with pytest.raises(KeyProviderError) as refused:
        Settings.from_env({config.KEY_PROVIDER_VAR: uri, config.WRAPPED_KEYS_VAR: "/none.json"})
    assert "carries a pin-value" in str(refused.value) and pin not in str(refused.value)


def test_the_rings_are_unwrapped_once_per_process_and_again_when_the_store_changes(
    hsm_provider: Provider, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.ok("keys", "kek", "create")
    cli.ok("keys", "create", "hash", "--id", "h1")
    unwraps: list[int] = []
    original = Pkcs11Kek.unwrap
    monkeypatch.setattr(
        Pkcs11Kek,
        "unwrap",
        lambda self, wrapped: unwraps.append(len(wrapped)) or original(self, wrapped),
    )
    first = [Settings.from_env(hsm_provider.environ) for _ in range(5)]
    flows = FlowSettings.from_env()  # the environment: the same provider
    assert unwraps == [1]
    assert {s.require_hash_keys().current for s in first} == {flows.hash_keys.current} == {"h1"}
    cli.ok("keys", "create", "hash", "--id", "h2")
    assert Settings.from_env(hsm_provider.environ).require_hash_keys().keys.keys() == {"h1", "h2"}
    assert unwraps == [1, 2]


def test_an_empty_ring_of_a_store_names_the_command_that_fills_it(
    file_provider: Provider, cli: Cli
) -> None:
    cli.ok("keys", "kek", "create")
    cli.ok("keys", "create", "hash")
    settings = Settings.from_env(file_provider.environ)
    assert settings.require_privacy_keys() == settings.hash_keys
    with pytest.raises(MissingKeyError, match="`authmodels keys create encryption` makes one"):
        settings.require_encryption_keys()


def test_key_management_refusals_change_nothing(file_provider: Provider, cli: Cli) -> None:
    cli.ok("keys", "kek", "create", "--id", "k1")
    cli.ok("keys", "create", "hash", "--id", "h1")
    before = file_provider.store.read_bytes()
    for argv, message in [
        (("keys", "create", "hash", "--id", "h1"), "the hash ring already has a key 'h1'"),
        (("keys", "rotate", "hash"), "'h1' is already the current hash key"),
        (("keys", "retire", "hash", "h1"), "'h1' is the current hash key: rotate"),
        (("keys", "retire", "hash", "h9"), "the hash ring has no key 'h9'"),
        (("keys", "rotate", "encryption"), "the encryption ring is empty"),
        (("keys", "kek", "retire", "k1"), "1 data key(s) of"),
        (("keys", "import",), "there is no ring to import"),
        (("keys", "create", "hash", "--id", "bad id"), "key id 'bad id' is invalid"),
    ]:  # fmt: skip
        status, output = cli(*argv)
        assert (status, message in output) == (1, True), output
    assert file_provider.store.read_bytes() == before
    file_provider.set(config.KEY_PROVIDER_VAR, "env")
    status, output = cli("keys", "create", "hash")
    assert status == 1 and "there is no wrapped key to manage" in output
    assert issubclass(KeyManagementError, Exception)


def test_no_representation_of_rings_settings_or_providers_holds_a_key(
    hsm_provider: Provider, cli: Cli
) -> None:
    cli.ok("keys", "kek", "create")
    for ring in ("hash", "encryption", "privacy"):
        cli.ok("keys", "create", ring)
    rings = load_key_rings(hsm_provider.environ)
    settings = Settings.from_env(hsm_provider.environ)
    flows = FlowSettings.from_env()
    provider = provider_from_env(hsm_provider.environ)
    assert isinstance(provider, WrappingKeyProvider)
    keys = [k for name in ("hash", "encryption", "privacy") for k in rings.ring(name).keys.values()]  # type: ignore[union-attr]
    shown = [repr(rings), str(rings), repr(settings), repr(flows), repr(provider),
             repr(provider.kek), repr(provider.store().keys), repr(flows.hasher),
             repr(flows.cipher), repr(flows.privacy), repr(KeyRing({"k": keys[0]}, "k")),
             str(settings), str(provider.store().keys[0])]  # fmt: skip
    assert "key_ids=[" in repr(settings.hash_keys)
    assert assert_no_key_material(keys, shown) > 1000


def test_keys_list_under_the_env_provider_shows_ids_and_never_a_key(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV_RINGS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(config.KEY_PROVIDER_VAR, raising=False)
    listed = cli.ok("keys", "list")
    assert "hash        h1" in listed and "encryption  e1" in listed
    assert "(in clear, env)" in listed and "key provider: env" in listed
    as_json = [json.loads(line) for line in cli.ok("keys", "list", "--json").splitlines()]
    assert {(row["ring"], row["id"], row["current"]) for row in as_json} == {
        ("hash", "h1", True),
        ("encryption", "e1", True),
    }
    assert assert_no_key_material([HASH_KEY, ENC_KEY], cli.printed) > 100


def test_without_python_pkcs11_the_provider_says_what_to_install(
    authmodels_softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pkcs11", None)  # as if the extra were not installed
    kek = Pkcs11Kek(
        Pkcs11Uri.parse(authmodels_softhsm.uri("kek")),
        {config.PKCS11_PIN_VAR: authmodels_softhsm.pin},
    )
    with pytest.raises(KeyProviderUnavailableError, match=r"pip install 'authmodels\[pkcs11\]'"):
        kek.wrap([secrets.token_bytes(32)])
