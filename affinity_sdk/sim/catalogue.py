"""The simulated shop's catalogue (products with category, brand, price band and popularity) and
the popularity-weighted product picks within groups of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["Catalogue"]

_CATEGORY_NAMES: Final = (
    "apparel",
    "shoes",
    "electronics",
    "home",
    "beauty",
    "sports",
    "toys",
    "books",
    "grocery",
    "garden",
    "jewelry",
    "pets",
    "automotive",
    "health",
    "music",
    "office",
    "baby",
    "outdoor",
    "kitchen",
    "games",
)
_BRAND_HEADS: Final = (
    "Nor",
    "Vel",
    "Kai",
    "Zen",
    "Aur",
    "Lum",
    "Ori",
    "Tes",
    "Mar",
    "Sol",
    "Bri",
    "Cor",
    "Dal",
    "Fen",
    "Hal",
    "Ivo",
)
_BRAND_TAILS: Final = ("a", "ix", "on", "era", "ico", "us", "wood", "line", "ora", "ex")


@dataclass(eq=False)
class Catalogue:
    """The shop's products, indexed by product code (``interners.products``).

    ``category`` and ``brand`` are codes in ``interners.categories`` / ``interners.brands``;
    ``price_band`` is 0 (low), 1 (mid) or 2 (premium): the product's price tertile within its
    category; ``popularity`` is the relative weight of the product in non-personal choices.
    """

    product_ids: list[str]
    category: NDArray[np.int32]
    brand: NDArray[np.int32]
    price: NDArray[np.float64]
    price_band: NDArray[np.int8]
    popularity: NDArray[np.float64]
    category_names: list[str]
    brand_names: list[str]

    def __len__(self) -> int:
        return len(self.product_ids)


class _Groups:
    """Products grouped by an integer key, for popularity-weighted picks within a group."""

    def __init__(self, keys: NDArray[np.int64], weight: NDArray[np.float64], n_keys: int) -> None:
        self.order = np.argsort(keys, kind="stable")
        self.cum = np.cumsum(weight[self.order])
        # group k is order[first[k]:first[k + 1]]; a table beats a binary search per pick
        self.first = np.searchsorted(keys[self.order], np.arange(n_keys + 1))

    def bounds(self, key: NDArray[np.int64]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        return self.first[key], self.first[key + 1]

    def pick(self, lo: NDArray[np.intp], hi: NDArray[np.intp], u: NDArray[np.float64]) -> NDArray[np.int64]:
        """A product from each non-empty group ``[lo, hi)``, weighted by popularity."""
        base = np.where(lo > 0, self.cum[np.maximum(lo - 1, 0)], 0.0)
        target = base + u * (self.cum[hi - 1] - base)
        idx = np.clip(np.searchsorted(self.cum, target, "right"), lo, hi - 1)
        return self.order[idx]


@dataclass(eq=False)
class _Shop:
    cat: Catalogue
    by_cat_band: _Groups
    by_cat_brand_band: _Groups
    by_cat_brand: _Groups
    by_cat: _Groups
    category_weight: NDArray[np.float64]


def _brand_names(n: int, rng: np.random.Generator) -> list[str]:
    combos = [h + t for h in _BRAND_HEADS for t in _BRAND_TAILS]
    order = rng.permutation(len(combos))
    names = [combos[i] for i in order[:n]]
    names += [f"{combos[i % len(combos)]}{i // len(combos) + 1}" for i in range(len(names), n)]
    return names


def _make_catalogue(rng: np.random.Generator, n_cat: int, n_brand: int, n_prod: int) -> Catalogue:
    cat_names = [_CATEGORY_NAMES[i] if i < len(_CATEGORY_NAMES) else f"category-{i}" for i in range(n_cat)]
    brand_names = _brand_names(n_brand, rng)
    cat_weight = rng.permutation(1.0 / np.arange(1, n_cat + 1) ** 0.7)
    # Every category gets >= 3 products so each price band exists; the rest follow popularity.
    category = np.concatenate(
        [
            np.repeat(np.arange(n_cat), 3),
            rng.choice(n_cat, n_prod - 3 * n_cat, p=cat_weight / cat_weight.sum()),
        ]
    ).astype(np.int32)
    # Brands have a home category and mostly sell there, so a favourite brand goes with a category.
    home = rng.permutation(np.arange(n_brand) % n_cat)
    home_order = np.argsort(home, kind="stable")
    lo = np.searchsorted(home[home_order], category, "left")
    hi = np.searchsorted(home[home_order], category, "right")
    has_home = (hi > lo) & (rng.random(n_prod) < 0.85)
    local = lo + np.floor(rng.random(n_prod) * np.maximum(hi - lo, 1)).astype(np.intp)
    brand = np.where(
        has_home, home_order[np.minimum(local, n_brand - 1)], rng.integers(0, n_brand, n_prod)
    ).astype(np.int32)
    base = np.exp(rng.uniform(np.log(8.0), np.log(400.0), n_cat))
    premium = np.exp(rng.normal(0.0, 0.35, n_brand))
    raw = base[category] * premium[brand] * rng.lognormal(0.0, 0.45, n_prod)
    price = np.round(np.clip(raw, 0.5, 1e5), 2).astype(np.float64)
    # Band = price tertile within the category (by rank, so all three bands are non-empty).
    order = np.lexsort((np.arange(n_prod), price, category))
    counts = np.bincount(category, minlength=n_cat)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n_prod, np.int64)
    rank[order] = np.arange(n_prod) - first[category[order]]
    band = ((3 * rank) // counts[category]).astype(np.int8)
    popularity = rng.lognormal(0.0, 1.0, n_prod)
    width = max(5, len(str(n_prod - 1)))
    return Catalogue(
        product_ids=[f"p{i:0{width}d}" for i in range(n_prod)],
        category=category,
        brand=brand,
        price=price,
        price_band=band,
        popularity=popularity,
        category_names=cat_names,
        brand_names=brand_names,
    )


def _shop(cat: Catalogue) -> _Shop:
    c = cat.category.astype(np.int64)
    b = cat.brand.astype(np.int64)
    nb = len(cat.brand_names)
    nc = len(cat.category_names)
    band = cat.price_band.astype(np.int64)
    weight = np.bincount(cat.category, weights=cat.popularity, minlength=len(cat.category_names))
    return _Shop(
        cat=cat,
        by_cat_band=_Groups(c * 3 + band, cat.popularity, nc * 3),
        by_cat_brand_band=_Groups((c * nb + b) * 3 + band, cat.popularity, nc * nb * 3),
        by_cat_brand=_Groups(c * nb + b, cat.popularity, nc * nb),
        by_cat=_Groups(c, cat.popularity, nc),
        category_weight=weight / weight.sum(),
    )
