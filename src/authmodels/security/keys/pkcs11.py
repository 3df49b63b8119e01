"""The ``pkcs11`` provider's key-encryption keys: AES keys inside a PKCS#11 token (an HSM, a cloud
HSM's PKCS#11 library, SoftHSM), used through ``python-pkcs11`` (the ``pkcs11`` extra).

``AUTHMODELS_KEY_PROVIDER`` is an RFC 7512 PKCS#11 URI::

    pkcs11:token=authmodels;object=kek?module-path=/usr/lib/softhsm/libsofthsm2.so

``token`` is the token's label, ``object`` the label of the current KEK (an AES secret key),
``module-path`` the vendor's PKCS#11 library; ``serial`` (the token's serial number) and
``type=secret-key`` may be given, ``pin-source=/path`` names a file that holds the user PIN (else
``AUTHMODELS_PKCS11_PIN``). A ``pin-value`` is refused: a URI is logged and shown, a PIN must not
be.

Data keys are wrapped and unwrapped inside the token with ``CKM_AES_KEY_WRAP_PAD`` (RFC 5649):
the KEK never leaves it (it is made ``CKA_SENSITIVE``, not ``CKA_EXTRACTABLE``, usable only to
wrap and unwrap). An unwrapped data key is a session object read once and destroyed: the data
keys are used by this process (HMAC, AES-GCM), so they exist in its memory, not the KEK.

A PKCS#11 login is per application and token, so this module runs one token operation at a time
in a process (a lock), each in a session of its own that logs in and out.
"""

from __future__ import annotations

import hmac
import logging
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from authmodels.config import KEY_ID_PATTERN, KEY_PROVIDER_VAR, PKCS11_PIN_VAR
from authmodels.errors import (
    KeyManagementError,
    KeyObjectNotFoundError,
    KeyProviderError,
    KeyProviderLoginError,
    KeyProviderUnavailableError,
    KeyUnwrapError,
)
from authmodels.security.keys.files import read_private_file
from authmodels.security.keys.provider import KeyEncryptionKey, WrappedKey

if TYPE_CHECKING:
    import pkcs11

__all__ = ["Pkcs11Kek", "Pkcs11Uri"]

log = logging.getLogger(__name__)

_PATH_ATTRIBUTES = frozenset({"token", "object", "serial", "type"})
_QUERY_ATTRIBUTES = frozenset({"module-path", "pin-source"})
_lock = threading.RLock()


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of a PKCS#11 URI (RFC 7512) the provider uses.

    Attributes:
        token: the token's label.
        object: the label of the current KEK.
        module_path: the PKCS#11 library to load.
        serial: the token's serial number, when given.
        pin_source: the file holding the user PIN, when given.
    """

    token: str
    object: str
    module_path: Path
    serial: str | None = None
    pin_source: Path | None = None

    @classmethod
    def parse(cls, uri: str) -> Pkcs11Uri:
        """Parse ``pkcs11:path-attributes?query-attributes``.

        Raises:
            KeyProviderError: it is not such a URI, an attribute is missing, repeated or not
                one this provider knows, or it carries a ``pin-value``.
        """
        if not uri.startswith("pkcs11:"):
            raise KeyProviderError(f"{KEY_PROVIDER_VAR}: a PKCS#11 URI starts with 'pkcs11:'")
        path, _, query = uri[len("pkcs11:") :].partition("?")
        values: dict[str, str] = {}
        for part, separator, known in (
            (path, ";", _PATH_ATTRIBUTES),
            (query, "&", _QUERY_ATTRIBUTES),
        ):
            for attribute in filter(None, part.split(separator)):
                name, equals, raw = attribute.partition("=")
                if name == "pin-value":
                    raise KeyProviderError(
                        f"{KEY_PROVIDER_VAR}: the URI carries a pin-value, which would be logged "
                        f"with it: set {PKCS11_PIN_VAR}, or pin-source=/path/to/a/pin/file"
                    )
                if not equals or name not in known:
                    raise KeyProviderError(
                        f"{KEY_PROVIDER_VAR}: {name!r} is not an attribute this provider reads "
                        f"(it reads {', '.join(sorted(_PATH_ATTRIBUTES))} before '?', "
                        f"{', '.join(sorted(_QUERY_ATTRIBUTES))} after it)"
                    )
                if name in values:
                    raise KeyProviderError(f"{KEY_PROVIDER_VAR}: {name!r} is given twice")
                values[name] = urllib.parse.unquote(raw)
        missing = [name for name in ("token", "object", "module-path") if not values.get(name)]
        if missing:
            raise KeyProviderError(
                f"{KEY_PROVIDER_VAR}: the PKCS#11 URI needs {', '.join(missing)} (e.g. "
                "pkcs11:token=authmodels;object=kek?module-path=/usr/lib/softhsm/libsofthsm2.so)"
            )
        if values.get("type", "secret-key") != "secret-key":
            raise KeyProviderError(f"{KEY_PROVIDER_VAR}: the KEK is a secret-key object")
        if not KEY_ID_PATTERN.fullmatch(values["object"]):
            raise KeyProviderError(
                f"{KEY_PROVIDER_VAR}: the object label {values['object']!r} must be 1-32 "
                "characters from A-Z a-z 0-9 _ - . (the wrapped-key store names KEKs by it)"
            )
        pin_source = values.get("pin-source")
        if pin_source is not None and pin_source.startswith("file:"):
            pin_source = urllib.parse.urlparse(pin_source).path
        return cls(
            token=values["token"],
            object=values["object"],
            module_path=Path(values["module-path"]),
            serial=values.get("serial"),
            pin_source=Path(pin_source) if pin_source else None,
        )

    def describe(self) -> str:
        """The URI without its PIN source: token, object and module."""
        return f"pkcs11:token={self.token};object={self.object}?module-path={self.module_path}"


def _library(path: Path) -> Any:
    try:
        import pkcs11
    except ImportError:
        raise KeyProviderUnavailableError(
            "the pkcs11 key provider needs python-pkcs11: pip install 'authmodels[pkcs11]'"
        ) from None
    try:
        return pkcs11.lib(str(path))
    except pkcs11.PKCS11Error as exc:
        raise KeyProviderUnavailableError(
            f"the PKCS#11 module {path} cannot be loaded ({exc}): check module-path in "
            f"{KEY_PROVIDER_VAR} (the HSM vendor's library)"
        ) from None


class Pkcs11Kek(KeyEncryptionKey):
    """The KEKs of a PKCS#11 token.

    Args:
        uri: the parsed provider URI.
        environ: where ``AUTHMODELS_PKCS11_PIN`` is read when the URI has no ``pin-source``.
    """

    kind = "pkcs11"

    def __init__(self, uri: Pkcs11Uri, environ: Mapping[str, str]) -> None:
        self.uri = uri
        self._pin_from_env = (environ.get(PKCS11_PIN_VAR) or "").strip() or None

    def __repr__(self) -> str:
        return f"<Pkcs11Kek {self.describe()}>"

    @property
    def current(self) -> str:
        """The URI's ``object``."""
        return self.uri.object

    def describe(self) -> str:
        """The URI without a PIN."""
        return self.uri.describe()

    def _pin(self) -> str:
        if self.uri.pin_source is not None:
            data = read_private_file(
                self.uri.pin_source, what="the PIN file", fix="create it with the user PIN"
            )
            return data.decode("utf-8", errors="strict").strip()
        if self._pin_from_env is None:
            raise KeyProviderLoginError(
                f"no PIN for the PKCS#11 token {self.uri.token!r}: set {PKCS11_PIN_VAR}, or "
                f"pin-source=/path/to/a/pin/file in {KEY_PROVIDER_VAR}"
            )
        return self._pin_from_env

    @contextmanager
    def _session(self, *, rw: bool = False) -> Iterator[pkcs11.Session]:
        lib = _library(self.uri.module_path)  # first: it says how to install python-pkcs11
        import pkcs11
        from pkcs11 import exceptions as ck

        with _lock:
            try:
                found: dict[str, str | bytes] = {"token_label": self.uri.token}
                if self.uri.serial:
                    found["token_serial"] = self.uri.serial.encode()
                token = lib.get_token(**found)
            except (ck.NoSuchToken, ck.MultipleTokensReturned) as exc:
                several = isinstance(exc, ck.MultipleTokensReturned)
                raise KeyProviderUnavailableError(
                    f"the PKCS#11 module {self.uri.module_path} has "
                    f"{'several tokens' if several else 'no token'} labelled {self.uri.token!r}"
                    f"{' (give serial= in the URI)' if several else ''}: check token= in "
                    f"{KEY_PROVIDER_VAR} and the token's initialisation"
                ) from None
            pin = self._pin()
            try:
                session = token.open(user_pin=pin, rw=rw)
            except ck.UserAlreadyLoggedIn:  # this application logged in elsewhere: share it
                session = token.open(rw=rw)
            except (
                ck.PinIncorrect, ck.PinInvalid, ck.PinLenRange, ck.PinLocked, ck.PinExpired
            ) as exc:  # fmt: skip
                source = self.uri.pin_source or PKCS11_PIN_VAR
                raise KeyProviderLoginError(
                    f"the PKCS#11 token {self.uri.token!r} refused the PIN from {source} "
                    f"({type(exc).__name__}): check the PIN (a locked PIN needs the token's "
                    "security officer)"
                ) from None
            finally:
                del pin
            try:
                yield session
            except pkcs11.PKCS11Error as exc:
                raise KeyProviderError(
                    f"the PKCS#11 token {self.uri.token!r} refused an operation "
                    f"({type(exc).__name__})"
                ) from None
            finally:
                session.close()

    def _kek(self, session: pkcs11.Session, label: str) -> Any:
        from pkcs11 import ObjectClass
        from pkcs11 import exceptions as ck

        try:
            return session.get_key(object_class=ObjectClass.SECRET_KEY, label=label)
        except ck.NoSuchKey:
            raise KeyObjectNotFoundError(
                f"the PKCS#11 token {self.uri.token!r} has no secret key labelled {label!r}: "
                f"check object= in {KEY_PROVIDER_VAR}, or create it with "
                "`authmodels keys kek create`"
            ) from None
        except ck.MultipleObjectsReturned:
            raise KeyObjectNotFoundError(
                f"the PKCS#11 token {self.uri.token!r} has several secret keys labelled "
                f"{label!r}: give each KEK a label of its own"
            ) from None

    def wrap(self, keys: Sequence[bytes]) -> list[WrappedKey]:
        """Wrap each key inside the token with ``CKM_AES_KEY_WRAP_PAD`` under the current KEK.

        Each data key enters the token as a session object (extractable, so it can be wrapped),
        destroyed after. Each wrapped key is unwrapped again in the token and compared with the
        key: a token whose mechanism is not RFC 5649 for that key size is refused, not trusted
        with the only copy (SoftHSM 2.6 pads keys to 8 bytes first; 32-byte keys are exact).

        Raises:
            KeyProviderError: the token does not give the key back.
        """
        wrapped = []
        with self._session() as session:
            from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

            kek = self._kek(session, self.current)
            for key in keys:
                data_key = session.create_object(
                    {
                        Attribute.CLASS: ObjectClass.SECRET_KEY,
                        Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                        Attribute.TOKEN: False,
                        Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: False,
                        Attribute.EXTRACTABLE: True,
                        Attribute.VALUE: key,
                    }
                )
                try:
                    blob = bytes(kek.wrap_key(data_key, mechanism=Mechanism.AES_KEY_WRAP_PAD))
                finally:
                    data_key.destroy()
                if not hmac.compare_digest(self._unwrap_one(kek, blob), key):
                    raise KeyProviderError(
                        f"the PKCS#11 token {self.uri.token!r} does not give back a "
                        f"{len(key)}-byte key it wrapped with CKM_AES_KEY_WRAP_PAD (SoftHSM 2.6 "
                        "pads a key to a multiple of 8 bytes before RFC 5649): use keys of 32 "
                        "bytes, as `authmodels keys create` makes them; nothing was stored"
                    )
                wrapped.append(WrappedKey(self.current, blob))
        log.info("wrapped %d data key(s) under %s", len(keys), self.describe())
        return wrapped

    def unwrap(self, wrapped: Sequence[WrappedKey]) -> list[bytes]:
        """Unwrap each key inside the token with ``CKM_AES_KEY_WRAP_PAD`` under the KEK it
        names, read it, and destroy the session object."""
        keys = []
        with self._session() as session:
            keks: dict[str, Any] = {}
            for item in wrapped:
                if item.kek not in keks:
                    keks[item.kek] = self._kek(session, item.kek)
                keys.append(self._unwrap_one(keks[item.kek], item.wrapped, kek_id=item.kek))
        return keys

    def _unwrap_one(self, kek: Any, blob: bytes, *, kek_id: str | None = None) -> bytes:
        import pkcs11
        from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

        try:
            data_key = kek.unwrap_key(
                ObjectClass.SECRET_KEY,
                KeyType.GENERIC_SECRET,
                blob,
                mechanism=Mechanism.AES_KEY_WRAP_PAD,
                template={
                    Attribute.TOKEN: False,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: False,
                    Attribute.EXTRACTABLE: True,
                },
            )
        except pkcs11.PKCS11Error as exc:
            raise KeyUnwrapError(
                f"a data key does not unwrap under KEK {kek_id or self.current!r} of the PKCS#11 "
                f"token {self.uri.token!r} ({type(exc).__name__}): the store was altered, or "
                "this KEK is not the one that wrapped it"
            ) from None
        try:
            return bytes(data_key[Attribute.VALUE])
        finally:
            data_key.destroy()

    def create(self, kek_id: str) -> None:
        """Generate an AES-256 KEK in the token: a token object, sensitive, not extractable,
        able to wrap and unwrap only."""
        with self._session(rw=True) as session:
            from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass

            if list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                         Attribute.LABEL: kek_id})):  # fmt: skip
                raise KeyManagementError(
                    f"the PKCS#11 token {self.uri.token!r} already has a secret key labelled "
                    f"{kek_id!r}"
                )
            session.generate_key(
                KeyType.AES,
                256,
                label=kek_id,
                store=True,
                capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP,
                template={
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.MODIFIABLE: False,
                },
            )
        log.info("created KEK %r in the PKCS#11 token %r", kek_id, self.uri.token)

    def destroy(self, kek_id: str) -> None:
        """Destroy the token object of the KEK ``kek_id``."""
        with self._session(rw=True) as session:
            self._kek(session, kek_id).destroy()
        log.info("destroyed KEK %r of the PKCS#11 token %r", kek_id, self.uri.token)
