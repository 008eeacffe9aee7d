"""Parameters of the simulated shop's process, shared by every customer, and the time and code
constants the simulator's modules use (the process itself: :mod:`affinity_sdk.sim.shop`)."""

from __future__ import annotations

from typing import Final

from affinity_sdk.capture import events as ev

__all__ = [
    "APP_INSTALL_AT_SIGNUP",
    "APP_INSTALL_RATE",
    "CONSENT_REVOKE_RATE",
    "COUPON_DISCOUNT",
    "COUPON_RATE",
    "PROMO_DISCOUNT",
    "PROMO_WEEK_RATE",
    "P_FAVOURITE_BRAND",
    "P_FAVOURITE_CATEGORY",
    "P_PREFERRED_BAND",
    "REFUND_RATE",
]

_MIN_MS: Final = 60_000
_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 86_400_000
_WEEK_MS: Final = 7 * _DAY_MS

_WEB: Final = ev.CHANNELS.index("web")
_APP: Final = ev.CHANNELS.index("app")
_EMAIL: Final = ev.CHANNELS.index("email")
_SMS: Final = ev.CHANNELS.index("sms")
_PUSH: Final = ev.CHANNELS.index("push")
_T = ev.EVENT_TYPE_CODES

#: Parameters of the process shared by every customer (see :mod:`affinity_sdk.sim.shop`).
COUPON_RATE: Final = 0.15
REFUND_RATE: Final = 0.03
PROMO_WEEK_RATE: Final = 0.25
PROMO_DISCOUNT: Final = 0.20
COUPON_DISCOUNT: Final = 0.10
CONSENT_REVOKE_RATE: Final = 0.001
APP_INSTALL_AT_SIGNUP: Final = 0.6
APP_INSTALL_RATE: Final = 0.02
#: Share of product choices made in the favourite category; of those, share on the favourite brand.
P_FAVOURITE_CATEGORY: Final = 0.5
P_FAVOURITE_BRAND: Final = 0.6
#: Share of product choices made in the preferred price band (the rest: any band).
P_PREFERRED_BAND: Final = 0.75
