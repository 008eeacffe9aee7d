"""Price bands: per-category catalogue price cut points and the band (low / mid / premium) of a line.

Per category, the cut points are the ``price_quantiles`` (default 1/3, 2/3) of the catalogue's
product prices, each product counted once; a line is ``low`` up to the first cut, ``premium``
from the second on (``mid`` between), so "premium" is relative to the category. Cut points are
kept per category code as rows of an ``(n_categories, 2)`` array, NaN where not fitted yet. The
affinity view (:mod:`affinity_sdk.profile.affinity_view`) fits a category's cuts the first time
it sees it and then keeps them, so the band of a folded event never changes.

Examples
--------
>>> cuts = catalogue_price_cuts(np.array([0, 0, 0, 0]), np.array([1.0, 2.0, 3.0, 4.0]), 1, (0.5, 0.5))
>>> [PRICE_BANDS[b] for b in band_codes(cuts, np.array([0, 0, 0]), np.array([1.0, 2.5, 9.0]))]
['low', 'mid', 'premium']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from affinity_sdk.ingest.batch import EventBatch

__all__ = [
    "PRICE_BANDS",
    "band_codes",
    "catalogue_price_cuts",
    "merge_price_cuts",
    "overlay_price_cuts",
    "price_cuts_of",
    "update_price_cuts",
    "valid_price_cuts",
]

#: Price band names by code (0, 1, 2).
PRICE_BANDS: Final[tuple[str, ...]] = ("low", "mid", "premium")


def band_codes(
    cuts: NDArray[np.float64], category: NDArray[np.int64], price: NDArray[np.float64]
) -> NDArray[np.int64]:
    """Price band code (0 low, 1 mid, 2 premium; -1 unknown) of lines by category and price."""
    bands = np.full(category.shape[0], -1, dtype=np.int64)
    ok = (category >= 0) & (category < cuts.shape[0]) & np.isfinite(price)
    line_cuts = cuts[category[ok]]
    p = price[ok]
    with np.errstate(invalid="ignore"):
        # ">" then ">=": a category whose products share one price is all "mid"
        band = (p > line_cuts[:, 0]).astype(np.int64) + (p >= line_cuts[:, 1])
    bands[ok] = np.where(np.isnan(line_cuts[:, 0]), -1, band)
    return bands


def update_price_cuts(
    current: NDArray[np.float64], cuts: NDArray[np.float64], *, refit: bool = True
) -> NDArray[np.float64]:
    """``current`` with the fitted (non-NaN) rows of ``cuts``; with ``refit=False`` only for
    categories without cut points yet.

    Examples
    --------
    >>> update_price_cuts(np.array([[1.0, 2.0]]), np.array([[3.0, 4.0], [5.0, 6.0]]), refit=False).tolist()
    [[1.0, 2.0], [5.0, 6.0]]
    """
    n = max(cuts.shape[0], current.shape[0])
    merged = np.full((n, 2), np.nan)
    merged[: current.shape[0]] = current
    fitted = ~np.isnan(cuts[:, 0])
    if not refit:
        fitted &= np.isnan(merged[: cuts.shape[0], 0])
    merged[: cuts.shape[0]][fitted] = cuts[fitted]
    return merged


def merge_price_cuts(
    ours: NDArray[np.float64], theirs: NDArray[np.float64], category_map: NDArray[np.int64] | None
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Cut points after merging in another view's: ``theirs`` (rows by their category codes;
    ``category_map`` gives our code of each, None: the same codes) are taken for categories
    ``ours`` has none for. Also returns ``theirs`` in our codes (None when it has no fitted row).

    Examples
    --------
    >>> merged, mapped = merge_price_cuts(np.array([[1.0, 2.0]]), np.array([[3.0, 4.0], [5.0, 6.0]]), None)
    >>> merged.tolist(), mapped.tolist()
    ([[1.0, 2.0], [5.0, 6.0]], [[3.0, 4.0], [5.0, 6.0]])
    """
    fitted = np.flatnonzero(~np.isnan(theirs[:, 0]))
    if category_map is not None:
        fitted = fitted[fitted < category_map.shape[0]]
    if fitted.shape[0] == 0:
        return ours, None
    codes = fitted if category_map is None else category_map[fitted]
    mapped = np.full((int(codes.max()) + 1, 2), np.nan)
    mapped[codes] = theirs[fitted]
    cuts = np.full((max(ours.shape[0], int(codes.max()) + 1), 2), np.nan)
    cuts[: ours.shape[0]] = ours
    missing = np.isnan(cuts[codes, 0])  # ours are kept where we have them
    cuts[codes[missing]] = theirs[fitted[missing]]
    return cuts, mapped


def overlay_price_cuts(cuts: NDArray[np.float64], over: NDArray[np.float64]) -> NDArray[np.float64]:
    """``cuts`` with the fitted rows of ``over`` on top."""
    out = np.full((max(cuts.shape[0], over.shape[0]), 2), np.nan)
    out[: cuts.shape[0]] = cuts
    fitted = np.flatnonzero(~np.isnan(over[:, 0]))
    out[fitted] = over[fitted]
    return out


def valid_price_cuts(cuts: NDArray[np.float64]) -> bool:
    """Is every row either unfitted (all NaN) or two finite, ordered cut points?"""
    unfitted = np.isnan(cuts).all(axis=1)
    fitted = cuts[~unfitted]
    return bool(np.all(np.isfinite(fitted)) and np.all(fitted[:, 0] <= fitted[:, 1]))


def price_cuts_of(batch: EventBatch, quantiles: tuple[float, float]) -> NDArray[np.float64]:
    """Per category code of ``batch.interners``: price quantiles over the distinct products of
    its item table (each at its first listed price).

    Examples
    --------
    >>> from affinity_sdk.capture.events import Product, ProductViewed
    >>> from affinity_sdk.ingest.batch import EventBatch
    >>> events = [ProductViewed(user_id="u", timestamp=0, product=Product(
    ...     product_id=f"p{i}", category="c", brand="b", price=float(i))) for i in range(4)]
    >>> price_cuts_of(EventBatch.from_events(events), (0.5, 0.5)).tolist()
    [[1.5, 1.5]]
    """
    n_categories = len(batch.interners.categories)
    cuts = np.full((n_categories, 2), np.nan)
    ok = np.flatnonzero(
        (batch.item_product >= 0) & (batch.item_category >= 0) & np.isfinite(batch.item_price)
    )
    if ok.shape[0] == 0:
        return cuts
    product = batch.item_product[ok].astype(np.int64)
    # one row per product, so best-sellers do not skew the bands (O(n), no sort of the lines)
    first = np.full(int(product.max()) + 1, ok.shape[0], dtype=np.int64)
    np.minimum.at(first, product, np.arange(ok.shape[0]))
    first = ok[first[first < ok.shape[0]]]
    return catalogue_price_cuts(batch.item_category[first], batch.item_price[first], n_categories, quantiles)


def catalogue_price_cuts(
    categories: NDArray[np.integer[Any]],
    prices: NDArray[np.float64],
    n_categories: int,
    quantiles: tuple[float, float] = (1.0 / 3.0, 2.0 / 3.0),
) -> NDArray[np.float64]:
    """Per category code: the ``quantiles`` of a catalogue given as one (category code, finite
    price) pair per product; NaN for categories without products. What
    :meth:`~affinity_sdk.models.affinity.AffinityModel.fit_price_bands` fits, for a catalogue
    gathered elsewhere (e.g. reduced across the partitions of an event lake).

    Examples
    --------
    >>> catalogue_price_cuts(np.array([0, 0, 0, 0]), np.array([4.0, 1.0, 3.0, 2.0]), 2).round(2).tolist()
    [[2.0, 3.0], [nan, nan]]
    """
    cuts = np.full((n_categories, 2), np.nan)
    if categories.shape[0] == 0:
        return cuts
    cat = np.asarray(categories, dtype=np.int64)
    price = np.asarray(prices, dtype=np.float64)
    order = np.lexsort((price, cat))
    cat, price = cat[order], price[order]
    start = np.flatnonzero(np.r_[True, cat[1:] != cat[:-1]])
    count = np.diff(np.r_[start, cat.shape[0]])
    for column, q in enumerate(quantiles):
        pos = q * (count - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, count - 1)
        frac = pos - lo
        cuts[cat[start], column] = price[start + lo] * (1 - frac) + price[start + hi] * frac
    return cuts
