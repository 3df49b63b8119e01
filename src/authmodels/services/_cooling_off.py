"""The cooling-off after an account recovery: its credentials cannot change for a while.

One home for the rule the credential-changing flows share (a password change, an e-mail change,
a second factor enrolled or removed, a passkey registered, a device trusted, an API key
created): for ``FlowSettings.recovery_cooling_off`` after an account recovery completed
(:mod:`authmodels.services.recovery`), they refuse with
:class:`~authmodels.errors.RecoveryCoolingOffError`. Someone who recovered an account they do
not own cannot lock its owner out at once, and the owner, notified of the recovery, has that
long to answer. The refusal is a ``medium`` security event (``recovery.cooling_off_refused``),
committed on its own.

The rule reads ``account_recovery`` (a user reads their own requests, revision 0010): it works
as the signed-in user and on the service path alike.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.errors import RecoveryCoolingOffError
from authmodels.models.enums import SecurityEventSeverity
from authmodels.services import security_events
from authmodels.services.settings import settings_for

# the rule: no credential changes until the cooling-off of the last completed recovery ended
_UNTIL = text(
    """
    SELECT max(completed_at) + :cooling_off FROM auth.account_recovery
     WHERE user_id = :user_id AND status = 'completed' AND completed_at > now() - :cooling_off
    """
)


def refuse_during_cooling_off(db: Session, user_id: uuid.UUID, change: str) -> None:
    """Raise if ``user_id``'s account is cooling off after a recovery; ``change`` names what
    was refused (``"the password"``) in the message and the event.

    Raises:
        RecoveryCoolingOffError: a recovery of the account completed less than
            ``FlowSettings.recovery_cooling_off`` ago (the event is committed first).
    """
    cooling_off = settings_for(db).recovery_cooling_off
    if cooling_off <= timedelta(0):
        return
    until = db.execute(_UNTIL, {"user_id": user_id, "cooling_off": cooling_off}).scalar()
    if until is None:
        return
    security_events.report(
        db, "recovery.cooling_off_refused", SecurityEventSeverity.MEDIUM, user_id=user_id,
        details={"change": change, "until": until.isoformat()},
    )  # fmt: skip
    raise RecoveryCoolingOffError(
        f"this account was recovered recently: {change} cannot change until "
        f"{until:%Y-%m-%d %H:%M} UTC. If the recovery was not yours, reset the password now.",
        until=until,
    )
