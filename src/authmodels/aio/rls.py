"""The async twin of :mod:`authmodels.rls` (see :mod:`authmodels.aio`): the current user of a
transaction and the service path, for an ``AsyncSession`` or an ``AsyncConnection``::

    async with db.begin():
        await rls.set_current_user(db, user.id)
        ...
    async with rls.service_role(db, "shop_service"):
        session = await sessions.validate_session(db, token)
"""

from __future__ import annotations

from authmodels import rls as _sync
from authmodels.aio._mirror import mirror_bind, mirror_context
from authmodels.rls import USER_SETTING

__all__ = [
    "USER_SETTING",
    "as_user",
    "current_user_id",
    "grant_app_role",
    "grant_service_role",
    "require_owner",
    "revoke_service_role",
    "service_role",
    "set_current_user",
]

as_user = mirror_context(_sync.as_user)
current_user_id = mirror_bind(_sync.current_user_id)
grant_app_role = mirror_bind(_sync.grant_app_role)
grant_service_role = mirror_bind(_sync.grant_service_role)
require_owner = mirror_bind(_sync.require_owner)
revoke_service_role = mirror_bind(_sync.revoke_service_role)
service_role = mirror_context(_sync.service_role)
set_current_user = mirror_bind(_sync.set_current_user)
