"""No raw token or code handed out by the flows is stored anywhere in schema ``auth``."""

from __future__ import annotations

from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.codes import normalize_user_code
from authmodels.models import User
from authmodels.security.dpop import sign_proof
from authmodels.services import device_flow, sessions, tokens
from tests.services.helpers import assert_no_raw_values


def test_no_raw_secret_is_stored_in_any_table_after_every_flow(db: Session, user: User) -> None:
    handed_out: list[str] = []
    key = ec.generate_private_key(ec.SECP256R1())
    proof = tokens.check_dpop_proof(
        db,
        sign_proof(key, htm="POST", htu="https://as.example/token"),
        htm="POST",
        htu="https://as.example/token",
    )

    issued = sessions.create_session(
        db,
        user,
        ttl=timedelta(hours=1),
        ip="198.51.100.7",
        user_agent="Mozilla/5.0 (X11)",
        dpop_jkt=proof.jkt,
    )
    handed_out += [issued.session_token, issued.refresh_token, "198.51.100.7", "Mozilla/5.0 (X11)"]
    pair = sessions.rotate_refresh_token(db, issued.refresh_token, dpop_jkt=proof.jkt)
    again = sessions.rotate_refresh_token(db, issued.refresh_token, dpop_jkt=proof.jkt)  # grace
    handed_out += [pair.access_token, pair.refresh_token, again.access_token]
    access = tokens.issue_access_token(db, user, client_id="cli", scope="read")
    handed_out.append(access.token)
    tokens.revoke_access_token(db, access.token)

    auth = device_flow.start(db, client_id="tv", scope="openid")
    handed_out += [auth.device_code, auth.user_code, normalize_user_code(auth.user_code)]
    device_flow.approve(db, auth.user_code, user)
    device = device_flow.poll(db, auth.device_code)
    handed_out += [device.access_token, device.refresh_token]
    sessions.revoke_all_sessions(db, user, reason="password_change")

    tables = db.execute(
        text(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'auth' AND table_type = 'BASE TABLE'"
        )
    ).scalars()
    assert_no_raw_values(db, handed_out, [t for t in tables if t != "audit_logs"])
