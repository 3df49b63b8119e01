"""A restarted service, as a process of its own: it unwraps the rings through the configured key
provider (nothing is shared with the test's process), then signs in with what the test stored
and prints what it saw as JSON. Run by ``test_key_lifecycle.py``:
``python tests/keys/restart_check.py '<json>'``."""

from __future__ import annotations

import json
import logging
import sys

from sqlalchemy.orm import sessionmaker

from authmodels.db import create_db_engine
from authmodels.services import FlowSettings, mfa, passwords, sessions
from authmodels.services.settings import SETTINGS_KEY
from authmodels.testing.factories import TEST_PASSWORD_HASHER


def main(given: dict[str, str]) -> dict[str, object]:
    logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    settings = FlowSettings.from_env().replace(password_hasher=TEST_PASSWORD_HASHER)
    engine = create_db_engine(given["url"])
    factory = sessionmaker(engine, expire_on_commit=False, info={SETTINGS_KEY: settings})
    try:
        with factory() as db:
            session = sessions.validate_session(db, given["session_token"])
            step = mfa.verify(db, session.user_id, given["totp_code"], now=int(given["totp_at"]))
            user = passwords.authenticate(
                db, given["email"], given["password"], ip=given["ip"], user_agent=given["ua"]
            )
            db.commit()
    finally:
        engine.dispose()
    return {
        "user": str(user.id),
        "session_user": str(session.user_id),
        "totp_step": step,
        "current": {"hash": settings.hash_keys.current, "encryption": settings.cipher.current},
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
