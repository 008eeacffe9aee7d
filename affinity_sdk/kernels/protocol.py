"""The kernel interfaces every backend implements, as :class:`typing.Protocol` classes.

A backend is a *module* (or the compiled extension's module object) whose functions have these
names and signatures; the dispatch functions return one typed as its protocol, so mypy checks
that the reference and Numba modules provide every kernel with the same signature. The compiled
extension (``affinity_sdk._native``) has no stubs, so mypy cannot look inside it: the parity tests
hold it (and the Numba twins) to the numbers of the reference modules.

Which modules implement which protocol (reference, the oracle / numba / cpp):

- :class:`Kernels`: ``kernels._reference`` / ``kernels._numba`` / ``_native``
- :class:`AffinityKernels`: ``kernels._affinity_reference`` / ``kernels._affinity_numba`` /
  ``_native.affinity``
- :class:`WindowKernels`: ``kernels._dedupe_reference`` / ``kernels._dedupe_numba`` /
  ``_native`` (``csrc/dedupe.hpp``)
- :class:`PropensityKernels`: ``kernels._propensity_reference`` / ``kernels._propensity_numba`` /
  no C++ twin
- :class:`BGNBDKernels`: ``kernels._bgnbd_reference`` / ``kernels._bgnbd_numba`` / no C++ twin

Arrays are written into outputs the caller passes in; return values are counts and scalars (and
``quantile_cutoffs``' few cut-offs). The reference modules document what each kernel computes.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = ["AffinityKernels", "BGNBDKernels", "Kernels", "PropensityKernels", "WindowKernels"]


class Kernels(Protocol):
    """Forward-decay state, scores, tiers and top-k (:mod:`affinity_sdk.kernels`)."""

    def accumulate(
        self,
        acc: NDArray[np.float64],
        records: NDArray[np.void],
        users: NDArray[np.int64],
        signals: NDArray[np.int64],
        ts_ms: NDArray[np.int64],
        values: NDArray[np.float64],
        landmark_ms: int,
        lam_per_ms: NDArray[np.float64],
    ) -> None: ...

    def rebase(self, acc: NDArray[np.float64], factors: NDArray[np.float64]) -> None: ...

    def merge(
        self,
        into_acc: NDArray[np.float64],
        into: NDArray[np.void],
        other_acc: NDArray[np.float64],
        other: NDArray[np.void],
    ) -> None: ...

    def decayed(
        self, acc: NDArray[np.float64], factors: NDArray[np.float64], out: NDArray[np.float64]
    ) -> None: ...

    def raw_scores(
        self, acc: NDArray[np.float64], coefs: NDArray[np.float64], out: NDArray[np.float64], threads: int
    ) -> None: ...

    def scores_100(self, raw: NDArray[np.float64], half_point: float, out: NDArray[np.float64]) -> None: ...

    def quantile_cutoffs(
        self, values: NDArray[np.float64], fractions: NDArray[np.float64]
    ) -> NDArray[np.float64]: ...

    def assign_tiers(
        self,
        values: NDArray[np.float64],
        cut_up: NDArray[np.float64],
        cut_down: NDArray[np.float64],
        previous: NDArray[np.int8],
        out: NDArray[np.int8],
    ) -> None: ...

    def score_tiers(
        self,
        raw: NDArray[np.float64],
        half_point: float,
        fractions: NDArray[np.float64],
        margins: NDArray[np.float64],
        previous: NDArray[np.int8] | None,
        out_score: NDArray[np.float64],
        out_tier: NDArray[np.int8],
        out_cut: NDArray[np.float64],
        threads: int,
    ) -> None: ...

    def topk_rows(
        self,
        matrix: NDArray[np.float64],
        k: int,
        out_index: NDArray[np.int64],
        out_value: NDArray[np.float64],
    ) -> None: ...

    def topk_csr(
        self,
        indptr: NDArray[np.int64],
        indices: NDArray[np.int64],
        data: NDArray[np.float64],
        k: int,
        out_index: NDArray[np.int64],
        out_value: NDArray[np.float64],
    ) -> None: ...


class AffinityKernels(Protocol):
    """The sparse (profile × dimension value) affinity tables (:mod:`affinity_sdk.models.affinity`)."""

    def group_sum(
        self,
        keys: NDArray[np.int64],
        contrib: NDArray[np.float64],
        out_keys: NDArray[np.int64],
        out_acc: NDArray[np.float64],
    ) -> int: ...

    def merge_runs(
        self,
        a_keys: NDArray[np.int64],
        a_acc: NDArray[np.float64],
        b_keys: NDArray[np.int64],
        b_acc: NDArray[np.float64],
        out_keys: NDArray[np.int64],
        out_acc: NDArray[np.float64],
    ) -> int: ...

    def lift_scores(
        self,
        indptr: NDArray[np.int64],
        cols: NDArray[np.int64],
        acc: NDArray[np.float64],
        factors: NDArray[np.float64],
        kappa: float,
        value_totals: NDArray[np.float64],
        out_decayed: NDArray[np.float64],
        out_lift: NDArray[np.float64],
    ) -> None: ...

    def topk_segments(
        self,
        indptr: NDArray[np.int64],
        cols: NDArray[np.int64],
        vals: NDArray[np.float64],
        k: int,
        out_index: NDArray[np.int64],
        out_value: NDArray[np.float64],
    ) -> None: ...

    def transpose_index(
        self, cols: NDArray[np.int64], out_ptr: NDArray[np.int64], out_order: NDArray[np.int64]
    ) -> None: ...

    def csr_dot(
        self,
        indptr: NDArray[np.int64],
        cols: NDArray[np.int64],
        vals: NDArray[np.float64],
        dense: NDArray[np.float64],
        out_dot: NDArray[np.float64],
        out_sqnorm: NDArray[np.float64],
    ) -> None: ...


class WindowKernels(Protocol):
    """The event-id window's open-addressing probe (:class:`affinity_sdk.ingest.dedupe.EventIdWindow`)."""

    def probe_insert(
        self,
        cur: NDArray[np.uint64],
        old: NDArray[np.uint64],
        keys: NDArray[np.uint64],
        dup: NDArray[np.bool_],
        start: int,
        room: int,
        shift: int,
    ) -> tuple[int, int]: ...


class PropensityKernels(Protocol):
    """Scoring a fitted logistic model
    (:meth:`affinity_sdk.models.propensity.PropensityModel.predict_proba`)."""

    def logistic_scores(
        self,
        X: NDArray[np.float64],
        weight: NDArray[np.float64],
        bias: float,
        platt_a: float,
        platt_b: float,
        out: NDArray[np.float64],
    ) -> None: ...


class BGNBDKernels(Protocol):
    """The BG/NBD likelihood and its gradient (:meth:`affinity_sdk.models.bgnbd.BGNBD.fit`)."""

    def neg_ll_grad(
        self,
        log_params: NDArray[np.float64],
        x: NDArray[np.int64],
        tx: NDArray[np.float64],
        big_t: NDArray[np.float64],
        weight: NDArray[np.float64],
        grad: NDArray[np.float64],
    ) -> float: ...
