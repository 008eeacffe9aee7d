"""Parameters of the simulated shop's process, shared by every customer, and the time and code
constants the simulator's modules use (the process itself: :mod:`affinity_sdk.sim.shop`).

Email fatigue: a customer's chance of unsubscribing from an email grows with the emails they
received in the 7 days before it (:func:`fatigue_multiplier`); some customers are on a
high-frequency list that gets extra emails on top of the weekly campaigns.

Examples
--------
>>> [fatigue_multiplier(n) for n in range(6)]
[1.0, 1.0, 1.0, 2.0, 3.0, 4.0]
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.capture import events as ev

__all__ = [
    "APP_INSTALL_AT_SIGNUP",
    "APP_INSTALL_RATE",
    "CONSENT_REVOKE_RATE",
    "COUPON_DISCOUNT",
    "COUPON_RATE",
    "EMAIL_SLOT_DAYS",
    "EXTRA_EMAIL_RATE",
    "EXTRA_EMAIL_SLOTS",
    "FATIGUE_FREE_EMAILS",
    "FATIGUE_SLOPE",
    "HIGH_FREQUENCY_EXTRA_RATE",
    "HIGH_FREQUENCY_SHARE",
    "PROMO_DISCOUNT",
    "PROMO_WEEK_RATE",
    "P_FAVOURITE_BRAND",
    "P_FAVOURITE_CATEGORY",
    "P_PREFERRED_BAND",
    "REFUND_RATE",
    "fatigue_multiplier",
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

#: Email send slots of a week, as days after Monday (all at 10:00 UTC): Mon, Tue, Wed, Thu, Fri,
#: Sat. The weekly campaigns use Tuesday (every week) and Thursday (weeks with two); the other
#: slots carry extra emails (:data:`EXTRA_EMAIL_SLOTS`).
EMAIL_SLOT_DAYS: Final = (0, 1, 2, 3, 4, 5)
EXTRA_EMAIL_SLOTS: Final = (0, 2, 4, 5)
#: Share of customers on the high-frequency list.
HIGH_FREQUENCY_SHARE: Final = 0.2
#: Chance per extra slot and week that a customer gets an extra email: on the high-frequency
#: list, and otherwise. Drawn afresh every week, so the number of emails varies week to week.
HIGH_FREQUENCY_EXTRA_RATE: Final = 0.6
EXTRA_EMAIL_RATE: Final = 0.03
#: Emails in the previous 7 days a customer takes without any fatigue, and the rise in the
#: unsubscribe probability per email beyond that (see :func:`fatigue_multiplier`).
FATIGUE_FREE_EMAILS: Final = 2
FATIGUE_SLOPE: Final = 1.0


def fatigue_multiplier(emails_7d: NDArray[np.int64] | int) -> NDArray[np.float64] | float:
    r"""The factor on a customer's per-email unsubscribe probability given the emails they received
    in the 7 days before this one (the UTC days ``D - 6 .. D`` of a send on day ``D``, the window
    :func:`~affinity_sdk.models.channels.may_message` counts for a ``"7d"`` cap):

    .. math::
        f(n_7) = 1 + k \max(0,\ n_7 - c), \qquad p = \min(1,\ p_\text{unsub} \, f(n_7))

    with :math:`c` = :data:`FATIGUE_FREE_EMAILS` and :math:`k` = :data:`FATIGUE_SLOPE`: up to
    two emails a week cost nothing; each email beyond adds the customer's base probability once
    more (the fifth email in a week is four times as likely to lose them as the first).

    Examples
    --------
    >>> fatigue_multiplier(4)
    3.0
    >>> fatigue_multiplier(np.array([0, 3])).tolist()
    [1.0, 2.0]
    """
    extra = np.maximum(np.asarray(emails_7d, dtype=np.float64) - FATIGUE_FREE_EMAILS, 0.0)
    factor = 1.0 + FATIGUE_SLOPE * extra
    return float(factor) if factor.ndim == 0 else factor
