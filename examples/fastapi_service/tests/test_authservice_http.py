"""The service over HTTP (httpx's ASGI transport), on a fresh database as the login role: each
test is what a client sees -- status, headers, body -- and, where it matters, what the database
kept."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from service_client import PASSWORD, DPoPKey, sign_up_and_in
from sqlalchemy import Engine, text

pytestmark = pytest.mark.asyncio


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def challenge(response: httpx.Response) -> str:
    return response.headers.get("WWW-Authenticate", "")


async def test_a_browser_signs_up_in_and_out_with_the_session_cookie(
    client: httpx.AsyncClient,
) -> None:
    await sign_up_and_in(client, "ada@example.com")
    cookie = client.cookies["session"]
    me = await client.get("/me")
    assert me.status_code == 200
    assert (me.json()["email"], me.json()["via"]) == ("ada@example.com", "cookie")

    assert (await client.post("/logout")).status_code == 204
    assert "session" not in client.cookies
    missing = await client.get("/me")
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    # no credential: both schemes offered, no error code (RFC 6750 section 3.1)
    assert challenge(missing).startswith('Bearer realm="authservice", DPoP realm=')
    assert "error=" not in challenge(missing)

    client.cookies.set("session", cookie)  # the old cookie, replayed
    revoked = await client.get("/me")
    assert revoked.status_code == 401
    assert 'error="invalid_token"' in challenge(revoked) and "revoked" in revoked.json()["detail"]


async def test_the_protected_route_sees_only_the_users_own_rows(client: httpx.AsyncClient) -> None:
    ada = await sign_up_and_in(client, "ada@example.com")
    await client.post("/login", json={"email": "ada@example.com", "password": PASSWORD})
    grace = await sign_up_and_in(client, "grace@example.com")
    client.cookies.clear()

    mine = (await client.get("/me", headers=bearer(ada["access_token"]))).json()
    theirs = (await client.get("/me", headers=bearer(grace["access_token"]))).json()
    # the route selects every active session with no WHERE on the user: RLS filters
    assert len(mine["sessions"]) == 2 and len(theirs["sessions"]) == 1
    assert not set(mine["sessions"]) & set(theirs["sessions"])
    assert mine["via"] == "Bearer"


async def test_refresh_rotation_and_a_reused_refresh_token_ending_the_sign_in(
    client: httpx.AsyncClient, authmodels_fresh_engine: Engine
) -> None:
    first = await sign_up_and_in(client, "ada@example.com")
    client.cookies.clear()
    grant = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    rotated = await client.post("/token", data=grant)
    assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
    second = rotated.json()
    assert second["token_type"] == "Bearer" and second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/me", headers=bearer(second["access_token"]))).status_code == 200

    # the successor is used in turn; then the first refresh token comes back: not a concurrent
    # refresh any more (its successor was exchanged), so it is theft and the sign-in ends
    third = await client.post("/token", data={**grant, "refresh_token": second["refresh_token"]})
    assert third.status_code == 200
    reused = await client.post("/token", data=grant)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    gone = await client.get("/me", headers=bearer(third.json()["access_token"]))
    assert gone.status_code == 401 and 'error="invalid_token"' in challenge(gone)
    with authmodels_fresh_engine.connect() as owner:  # kept although the request failed
        kinds = owner.execute(text("SELECT event_type FROM auth.security_events")).scalars()
        assert list(kinds) == ["refresh_token.reused"]

    bad = await client.post("/token", data={"grant_type": "password"})
    assert bad.status_code == 400 and bad.json()["error"] == "unsupported_grant_type"


async def test_a_dpop_bound_sign_in_and_token_endpoint(client: httpx.AsyncClient) -> None:
    key = DPoPKey()
    credentials = {"email": "ada@example.com", "password": PASSWORD}
    await client.post("/signup", json=credentials)

    # no nonce yet: the server asks for one (RFC 9449 section 8)
    asked = await client.post(
        "/login", json=credentials, headers={"DPoP": key.proof("POST", "/login")}
    )
    assert asked.status_code == 401 and asked.json()["error"] == "use_dpop_nonce"
    assert 'DPoP realm="authservice", error="use_dpop_nonce"' in challenge(asked)
    key.remember(asked)
    assert key.nonce

    signed_in = await client.post(
        "/login", json=credentials, headers={"DPoP": key.proof("POST", "/login")}
    )
    assert signed_in.status_code == 200 and signed_in.json()["token_type"] == "DPoP"
    assert "session" not in client.cookies  # a bound sign-in gets no cookie
    key.remember(signed_in)
    access, refresh = signed_in.json()["access_token"], signed_in.json()["refresh_token"]

    proof = key.proof("GET", "/me", access_token=access)
    me = await client.get("/me", headers={"Authorization": f"DPoP {access}", "DPoP": proof})
    assert me.status_code == 200 and me.json()["via"] == "DPoP"
    replayed = await client.get("/me", headers={"Authorization": f"DPoP {access}", "DPoP": proof})
    assert replayed.status_code == 401 and 'error="invalid_dpop_proof"' in challenge(replayed)
    stolen = await client.get("/me", headers=bearer(access))  # the token without its key
    assert stolen.status_code == 401 and 'error="invalid_token"' in challenge(stolen)

    grant = {"grant_type": "refresh_token", "refresh_token": refresh}
    unbound = await client.post("/token", data=grant)
    assert unbound.status_code == 400 and unbound.json()["error"] == "invalid_dpop_proof"
    other_key = DPoPKey()
    other_key.nonce = key.nonce
    wrong = await client.post(
        "/token", data=grant, headers={"DPoP": other_key.proof("POST", "/token")}
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_dpop_proof"
    rotated = await client.post("/token", data=grant, headers={"DPoP": key.proof("POST", "/token")})
    assert rotated.status_code == 200 and rotated.json()["token_type"] == "DPoP"
    assert rotated.headers["DPoP-Nonce"]


async def test_the_token_endpoint_asks_for_a_nonce_in_oauth_form(client: httpx.AsyncClient) -> None:
    key = DPoPKey()
    tokens = await sign_up_and_in(client, "ada@example.com")
    grant = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    asked = await client.post("/token", data=grant, headers={"DPoP": key.proof("POST", "/token")})
    assert asked.status_code == 400 and asked.json()["error"] == "use_dpop_nonce"
    assert asked.headers["DPoP-Nonce"] and "WWW-Authenticate" not in asked.headers


async def test_a_step_up_protected_admin_route(
    client: httpx.AsyncClient, promote: Callable[[str], None]
) -> None:
    ada = await sign_up_and_in(client, "ada@example.com")
    grace = await sign_up_and_in(client, "grace@example.com")
    client.cookies.clear()
    promote("grace@example.com")
    ada_id = (await client.get("/me", headers=bearer(ada["access_token"]))).json()["id"]
    grace_me = (await client.get("/me", headers=bearer(grace["access_token"]))).json()
    route = f"/admin/users/{ada_id}/role"

    not_admin = await client.post(
        route, json={"role": "admin"}, headers=bearer(ada["access_token"])
    )
    assert not_admin.status_code == 403 and not_admin.json()["error"] == "forbidden"

    as_grace = bearer(grace["access_token"])
    no_step_up = await client.post(route, json={"role": "admin"}, headers=as_grace)
    assert no_step_up.status_code == 401
    assert 'Bearer realm="authservice", error="insufficient_user_authentication"' in challenge(
        no_step_up
    )
    wrong = await client.post("/step-up", json={"password": "not it"}, headers=as_grace)
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_credentials", wrong.text
    stepped = await client.post("/step-up", json={"password": PASSWORD}, headers=as_grace)
    assert stepped.status_code == 200
    token = stepped.json()["step_up_token"]

    stale = await client.post(
        route,
        json={"role": "admin", "step_up_token": token, "expected_version": 99},
        headers=as_grace,
    )
    assert stale.status_code == 409 and stale.json()["error"] == "conflict"
    changed = await client.post(
        route, json={"role": "admin", "step_up_token": token}, headers=as_grace
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["role"] == "admin"
    spent = await client.post(
        route, json={"role": "user", "step_up_token": token}, headers=as_grace
    )
    assert spent.status_code == 401 and "insufficient_user_authentication" in challenge(spent)

    async def step_up() -> str:
        answer = await client.post("/step-up", json={"password": PASSWORD}, headers=as_grace)
        return str(answer.json()["step_up_token"])

    demoted = await client.post(
        route, json={"role": "user", "step_up_token": await step_up()}, headers=as_grace
    )
    assert demoted.status_code == 200 and demoted.json()["role"] == "user"
    last = await client.post(  # Grace is the last admin now: the database's guard refuses
        f"/admin/users/{grace_me['id']}/role",
        json={"role": "user", "step_up_token": await step_up()},
        headers=as_grace,
    )
    assert last.status_code == 409 and "last admin" in last.json()["detail"]


async def test_limits_answer_429_with_retry_after(client: httpx.AsyncClient) -> None:
    credentials = {"email": "ada@example.com", "password": PASSWORD}
    for _ in range(3):  # FlowSettings.request_limit_per_account: 3 an hour per address
        assert (await client.post("/signup", json=credentials)).status_code == 202
    limited = await client.post("/signup", json=credentials)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0

    wrong = {"email": "ada@example.com", "password": "wrong"}
    for _ in range(5):  # FlowSettings.max_failed_logins
        refused = await client.post("/login", json=wrong)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_credentials"
    locked = await client.post("/login", json=credentials)
    assert locked.status_code == 429 and locked.json()["error"] == "account_locked"
    assert 14 * 60 < int(locked.headers["Retry-After"]) <= 15 * 60


async def test_input_errors_answer_422_naming_the_problem(client: httpx.AsyncClient) -> None:
    short = await client.post("/signup", json={"email": "ada@example.com", "password": "short"})
    assert short.status_code == 422 and short.json()["error"] == "weak_password"
    bad = await client.post("/signup", json={"email": "not an address", "password": PASSWORD})
    assert bad.status_code == 422 and bad.json()["field"] == "email"
    scheme = await client.get("/me", headers={"Authorization": "Basic abc"})
    assert scheme.status_code == 401 and 'error="invalid_token"' in challenge(scheme)
