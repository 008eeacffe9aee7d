"""Columnar score results and their exports (CSV, JSON lines, Arrow, Parquet, pandas, polars).

Examples
--------
>>> import numpy as np
>>> result = ScoreResult(
...     user_ids=["a", "b"], raw_score=np.array([3.0, 0.0]), score=np.array([23.1, 0.0]),
...     tier_code=np.array([2, 0], dtype=np.int8), signal_names=("order_completed",),
...     decayed=np.array([[0.3], [0.0]]), now_ms=0, config_version="v1", config_fingerprint="f" * 16,
... )
>>> result.tier.tolist(), len(result)
(['high', 'low'], 2)
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

__all__ = ["TIER_LABELS", "ScoreResult"]

#: Tier labels by code (0 low, 1 medium, 2 high).
TIER_LABELS: Final = np.array(["low", "medium", "high"])


@dataclass(eq=False)
class ScoreResult:
    """One row per (consenting) user: ``user_id, raw_score, score, tier`` and a decayed value per
    signal. Columns are numpy arrays; exports keep them columnar (no per-row Python objects where
    the target format allows it)."""

    user_ids: list[str]
    raw_score: NDArray[np.float64]
    score: NDArray[np.float64]
    tier_code: NDArray[np.int8]
    signal_names: tuple[str, ...]
    decayed: NDArray[np.float64]
    now_ms: int
    config_version: str
    config_fingerprint: str
    backend: str = "reference"

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def tier(self) -> NDArray[np.str_]:
        """Tier labels (``"high"``, ``"medium"``, ``"low"``)."""
        labels: NDArray[np.str_] = TIER_LABELS[self.tier_code]
        return labels

    def tier_counts(self) -> dict[str, int]:
        """Users per tier, e.g. ``{"high": 10, "medium": 30, "low": 60}``."""
        counts = np.bincount(self.tier_code, minlength=3)
        return {"high": int(counts[2]), "medium": int(counts[1]), "low": int(counts[0])}

    @property
    def metadata(self) -> dict[str, str]:
        """Provenance stored with every export."""
        return {
            "config_version": self.config_version,
            "config_fingerprint": self.config_fingerprint,
            "now_ms": str(self.now_ms),
            "backend": self.backend,
        }

    def columns(self) -> dict[str, Any]:
        """Column name → array (or list for ``user_id``), in export order."""
        cols: dict[str, Any] = {
            "user_id": self.user_ids,
            "raw_score": self.raw_score,
            "score": self.score,
            "tier": self.tier,
        }
        for i, name in enumerate(self.signal_names):
            cols[name] = self.decayed[:, i]
        return cols

    # --- exports ---------------------------------------------------------------------------
    def to_csv(self, path: str | Path | io.TextIOBase) -> None:
        """Write CSV with a header row; floats with full (repr) precision."""
        cols = self.columns()
        names = list(cols)
        rows = zip(*(c.tolist() if isinstance(c, np.ndarray) else c for c in cols.values()), strict=True)
        if isinstance(path, io.TextIOBase):
            writer = csv.writer(path)
            writer.writerow(names)
            writer.writerows(rows)
            return
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(names)
            writer.writerows(rows)

    def to_jsonl(self, path: str | Path) -> None:
        """Write JSON lines, one object per user."""
        cols = self.columns()
        lists = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in cols.items()}
        encoder = msgspec.json.Encoder()
        with open(path, "wb") as fh:
            for i in range(len(self)):
                fh.write(encoder.encode({k: v[i] for k, v in lists.items()}))
                fh.write(b"\n")

    def to_arrow(self) -> Any:
        """A ``pyarrow.Table`` (numeric columns without copies) with provenance in its metadata."""
        pa = _pyarrow()
        cols = self.columns()
        arrays = {k: pa.array(v) for k, v in cols.items()}
        table = pa.table(arrays)
        return table.replace_schema_metadata({k.encode(): v.encode() for k, v in self.metadata.items()})

    def to_parquet(self, path: str | Path) -> None:
        """Write Parquet (needs the ``[arrow]`` extra); provenance goes in the file metadata."""
        pa_parquet = _pyarrow_parquet()
        pa_parquet.write_table(self.to_arrow(), str(path))

    def to_pandas(self) -> Any:
        """A pandas DataFrame (pandas must be installed)."""
        import pandas as pd

        return pd.DataFrame(self.columns())

    def to_polars(self) -> Any:
        """A polars DataFrame (polars must be installed)."""
        import polars as pl

        return pl.DataFrame(
            {k: (v if isinstance(v, np.ndarray) else list(v)) for k, v in self.columns().items()}
        )

    def save(self, path: str | Path) -> Path:
        """Write by extension: ``.csv``, ``.jsonl`` / ``.ndjson`` or ``.parquet``."""
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix == ".csv":
            self.to_csv(p)
        elif suffix in (".jsonl", ".ndjson"):
            self.to_jsonl(p)
        elif suffix == ".parquet":
            self.to_parquet(p)
        else:
            raise ValueError(f"unsupported output format {suffix!r}: use .csv, .jsonl or .parquet")
        return p


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("Arrow / Parquet export needs pyarrow: pip install 'affinity_sdk[arrow]'") from exc
    return pyarrow


def _pyarrow_parquet() -> Any:
    _pyarrow()
    import pyarrow.parquet

    return pyarrow.parquet
