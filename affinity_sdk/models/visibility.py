"""Who may appear in propensity outputs and feed population fits: consent, and a caller's mask or store.

:func:`visible_users` flags, per user of an event batch, whether the user may get a training row
(:func:`~affinity_sdk.models.training.build_training_set`) or a probability
(:meth:`~affinity_sdk.models.propensity.PropensityModel.score_batch`), and whether their orders
enter population-fitted features (BG/NBD). Re-exported by :mod:`affinity_sdk.models.propensity`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from affinity_sdk.ingest.batch import TOMBSTONE, EventBatch
from affinity_sdk.profile.flags import opted_out_users

if TYPE_CHECKING:
    from affinity_sdk.profile.store import ProfileStore
    from affinity_sdk.score.scorer import Scorer

__all__ = ["Visibility", "visible_users"]

#: Who may appear in outputs and feed population fits, besides the batch's consent decisions:
#: a mask per user code of the batch, a callable taking the batch's user ids and returning such a
#: mask, or a :class:`~affinity_sdk.profile.store.ProfileStore` / :class:`~affinity_sdk.score.scorer.Scorer`.
Visibility: TypeAlias = "NDArray[np.bool_] | Callable[[list[str]], ArrayLike] | ProfileStore | Scorer | None"


def visible_users(
    batch: EventBatch, visible: Visibility = None, *, future: EventBatch | None = None
) -> NDArray[np.bool_]:
    """Per user code of ``batch.interners``: may the user appear in outputs (and their data feed
    population fits)? Not when their latest consent decision in ``batch`` (and ``future``) is a
    revocation (:func:`~affinity_sdk.profile.flags.opted_out_users`), nor when ``visible`` hides them:

    - a boolean mask per user code of the batch;
    - a callable taking the batch's user ids (a list of str) and returning such a mask;
    - a :class:`~affinity_sdk.profile.store.ProfileStore` (or a
      :class:`~affinity_sdk.score.scorer.Scorer`): a user the store knows must be visible there
      (not opted out, e.g. by :meth:`~affinity_sdk.profile.store.ProfileStore.opt_out`), and an id
      the store forgot (it holds a forget suppression entry for it) is hidden, whatever its batch
      events; ids new to the store are left to the batch's own consent decisions.

    Examples
    --------
    >>> lines = [b'{"type":"app_opened","user_id":"a","timestamp":1}',
    ...          b'{"type":"consent_changed","user_id":"b","timestamp":2,"granted":false}',
    ...          b'{"type":"app_opened","user_id":"c","timestamp":3}']
    >>> batch = EventBatch.from_ndjson(b"\\n".join(lines))
    >>> visible_users(batch).tolist(), visible_users(batch, lambda ids: [i != "c" for i in ids]).tolist()
    ([True, False, True], [True, False, False])
    """
    names = list(batch.interners.users.names)
    n = len(names)
    batches = [batch] if future is None else [batch, future]
    allowed: NDArray[np.bool_] = ~opted_out_users(*batches)[:n]
    allowed &= np.array([name != TOMBSTONE for name in names], dtype=np.bool_)
    if visible is None:
        return allowed
    store = getattr(visible, "store", visible)
    from affinity_sdk.profile.store import ProfileStore

    if isinstance(store, ProfileStore):
        mask = _visible_in_store(store, names)
    elif callable(visible):
        mask = np.asarray(visible(names), dtype=np.bool_)
    else:
        mask = np.asarray(visible, dtype=np.bool_)
    if mask.shape != (n,):
        raise ValueError(f"visible must give one flag per user of the batch ({n}), got shape {mask.shape}")
    return allowed & mask


def _visible_in_store(store: ProfileStore, names: list[str]) -> NDArray[np.bool_]:
    from affinity_sdk.profile.suppression import NOT_SUPPRESSED

    with store.lock:
        shown = store.visible()
        lookup = store.interners.users.lookup
        codes = np.array([-1 if (c := lookup(name)) is None else c for name in names], dtype=np.int64)
        known = codes >= 0
        mask = np.ones(len(names), dtype=np.bool_)
        mask[known] = shown[codes[known]]
        unknown = np.flatnonzero(~known)
        if unknown.shape[0] and len(store.suppression):
            forget_ms = store.suppression.forget_ms_of([names[i] for i in unknown.tolist()])
            mask[unknown] = forget_ms == NOT_SUPPRESSED
    return mask
