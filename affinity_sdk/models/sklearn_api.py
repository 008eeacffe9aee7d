"""A scikit-learn-compatible face for the propensity model: :class:`PropensityClassifier`.

:class:`~affinity_sdk.models.propensity.PropensityModel` fits on a
:class:`~affinity_sdk.models.training.TrainingSet` and its ``predict_proba`` returns one
probability per row, shape ``(n,)``. :class:`PropensityClassifier` wraps the same fit (L2
logistic regression on standardised features, then Platt / isotonic calibration on held-out
rows) behind scikit-learn's estimator conventions: ``fit(X, y)`` on plain arrays,
``predict_proba`` of shape ``(n, 2)`` (columns ``P(classes_[0])``, ``P(classes_[1])``),
``predict``, ``decision_function``, ``score`` (accuracy), ``get_params`` / ``set_params``, so it
works with ``clone``, ``cross_val_score``, pipelines and grid searches.

scikit-learn is *not* needed to use it (nothing here imports it, except
``__sklearn_tags__``, which only scikit-learn itself calls).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 3))
>>> y = (X[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(int)
>>> clf = PropensityClassifier(l2=1.0, calibration="platt").fit(X, y)
>>> clf.predict_proba(X).shape, clf.classes_.tolist()
((400, 2), [0, 1])
>>> bool(np.allclose(clf.predict_proba(X)[:, 1], clf.model_.predict_proba(X)))
True
"""

from __future__ import annotations

import inspect
import sys
import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from affinity_sdk.errors import AffinityError
from affinity_sdk.models.propensity_features import FeatureSpec
from affinity_sdk.models.training import TrainingSet

if TYPE_CHECKING:
    from affinity_sdk.models.propensity import PropensityModel

__all__ = ["DataConversionWarning", "NotFittedError", "PropensityClassifier"]


class NotFittedError(ValueError, AttributeError):
    """Raised when a :class:`PropensityClassifier` is used before ``fit`` (a ``ValueError`` and
    an ``AttributeError``, like scikit-learn's)."""


class DataConversionWarning(UserWarning):
    """A column-vector ``y`` was flattened (named like scikit-learn's warning)."""


def _column_names(X: Any) -> NDArray[np.object_] | None:
    """The column names of a data frame whose columns are all strings, else ``None``."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "shape"):
        return None
    names = np.asarray([c for c in columns], dtype=object)
    if names.size == 0 or not all(isinstance(c, str) for c in names):
        return None
    return names


def _as_rows(X: Any) -> NDArray[np.float64]:
    """``X`` as a finite, non-empty, 2-D float64 array, or a ``ValueError``."""
    if hasattr(X, "tocsr") or hasattr(X, "toarray"):
        raise TypeError("sparse input is not supported; pass a dense array")
    raw = np.asarray(X)
    if np.iscomplexobj(raw):
        raise ValueError("Complex data not supported")
    rows = np.asarray(raw, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {rows.ndim}D array instead. Reshape your data with "
            "X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a single sample."
        )
    if rows.shape[0] == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={rows.shape}) while a minimum of 1 is required."
        )
    if rows.shape[1] == 0:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={rows.shape}) while a minimum of 1 is required."
        )
    if not np.isfinite(rows).all():
        raise ValueError("Input X contains NaN or infinity.")
    return np.ascontiguousarray(rows)


def _as_labels(y: Any, n: int) -> NDArray[Any]:
    """``y`` as a 1-D array of ``n`` labels (a column vector is flattened, with a warning)."""
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        # scikit-learn's own DataConversionWarning when the caller has scikit-learn loaded.
        sk = sys.modules.get("sklearn.exceptions")
        category: type[Warning] = getattr(sk, "DataConversionWarning", DataConversionWarning)
        warnings.warn(
            category(
                "A column-vector y was passed when a 1d array was expected. Please change the "
                "shape of y to (n_samples,), for example using ravel()."
            ),
            stacklevel=3,
        )
        labels = labels.ravel()
    if labels.ndim != 1:
        raise ValueError(f"y should be a 1d array, got an array of shape {labels.shape} instead.")
    if labels.shape[0] != n:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: [{n}, {labels.shape[0]}]"
        )
    if labels.dtype.kind in "fc":
        if not np.isfinite(labels).all():
            raise ValueError("Input y contains NaN or infinity.")
        if np.any(labels != np.round(labels)):
            raise ValueError("Unknown label type: continuous. Only binary class labels are supported.")
    return labels


class PropensityClassifier:
    """Binary classifier over plain feature arrays: :class:`PropensityModel`'s fit, with
    scikit-learn's estimator API.

    Parameters (stored unchanged; see :meth:`PropensityModel.fit`)
    ----------------------------------------------------------------
    l2 : L2 penalty on the standardised coefficients.
    calibration : ``"auto"`` (Platt or isotonic, lower held-out Brier score), ``"platt"``,
        ``"isotonic"`` or ``"none"``.
    calibration_fraction : share of the rows held out to fit the calibration (each row is its
        own profile here; with ``calibration="none"`` every row fits the regression).
    seed : seed of the fit / calibration split (and of the ``"auto"`` folds).
    backend : scoring kernel (``"auto"``, ``"numba"``, ``"reference"``; see
        :meth:`PropensityModel.predict_proba`).

    Fitted attributes: ``model_`` (the fitted :class:`PropensityModel`; its ``predict_proba``
    gives ``predict_proba(X)[:, 1]`` of this estimator, shape ``(n,)``), ``classes_`` (the two
    sorted labels: ``array([0, 1])`` for 0/1 targets; the second is the positive class),
    ``n_features_in_`` and, when ``X`` is a data frame with string columns,
    ``feature_names_in_``.
    """

    def __init__(
        self,
        l2: float = 1.0,
        calibration: Literal["auto", "platt", "isotonic", "none"] = "auto",
        calibration_fraction: float = 0.25,
        seed: int = 0,
        backend: str | None = "auto",
    ) -> None:
        self.l2 = l2
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.seed = seed
        self.backend = backend

    # -- scikit-learn's parameter protocol ---------------------------------------------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        params = inspect.signature(cls.__init__).parameters
        return sorted(name for name in params if name != "self")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments, as given (``deep`` has nothing nested to expand)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> PropensityClassifier:
        """Set constructor arguments by name; returns ``self``."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid!r}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = type(self)().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k]]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags: a binary classifier on dense, finite 2-D input."""
        from sklearn.utils import (  # type: ignore[import-untyped, unused-ignore]
            ClassifierTags,
            InputTags,
            Tags,
            TargetTags,
        )

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(multi_class=False),
            input_tags=InputTags(),
        )

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike) -> PropensityClassifier:
        """Fit on feature rows ``X`` (n, f) and two-class labels ``y`` (n,); returns ``self``."""
        names = _column_names(X)
        rows = _as_rows(X)
        labels = _as_labels(y, rows.shape[0])
        classes = np.unique(labels)
        if classes.shape[0] > 2:
            raise ValueError(
                "Only binary classification is supported. The type of the target is multiclass "
                f"({classes.shape[0]} classes)."
            )
        if classes.shape[0] < 2:
            raise ValueError("PropensityClassifier needs 2 classes in y; got 1 class (one class present)")
        n = rows.shape[0]
        columns = names.tolist() if names is not None else [f"x{i}" for i in range(rows.shape[1])]
        data = TrainingSet(
            X=rows,
            y=labels == classes[1],
            user=np.arange(n, dtype=np.int64),  # every row its own profile in the calibration split
            cutoff_ms=np.zeros(n, dtype=np.int64),
            feature_names=tuple(columns),
            outcome="purchase",
            horizon_ms=0,
            spec=FeatureSpec(),
        )
        # Imported here: propensity re-exports this module's class (either may be imported first).
        from affinity_sdk.models.propensity import PropensityModel

        try:
            model = PropensityModel.fit(
                data,
                l2=float(self.l2),
                calibration=self.calibration,
                calibration_fraction=float(self.calibration_fraction),
                seed=int(self.seed),
            )
        except AffinityError as exc:
            if isinstance(exc, ValueError):
                raise
            raise ValueError(str(exc)) from exc
        self.model_: PropensityModel = model
        self.classes_ = classes
        self.n_features_in_ = rows.shape[1]
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

    # -- scoring ---------------------------------------------------------------------------
    def _check_rows(self, X: ArrayLike) -> NDArray[np.float64]:
        if not hasattr(self, "model_"):
            # scikit-learn's own NotFittedError when the caller has scikit-learn loaded.
            sk = sys.modules.get("sklearn.exceptions")
            error: type[Exception] = getattr(sk, "NotFittedError", NotFittedError)
            raise error(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )
        names = _column_names(X)
        fitted = getattr(self, "feature_names_in_", None)
        if fitted is not None and names is None:
            warnings.warn(
                f"X does not have valid feature names, but {type(self).__name__} was fitted with "
                "feature names",
                UserWarning,
                stacklevel=3,
            )
        elif fitted is None and names is not None:
            warnings.warn(
                f"X has feature names, but {type(self).__name__} was fitted without feature names",
                UserWarning,
                stacklevel=3,
            )
        elif (
            fitted is not None
            and names is not None
            and (len(names) != len(fitted) or bool(np.any(names != fitted)))
        ):
            raise ValueError(
                "The feature names should match those that were passed during fit "
                f"(fit: {list(fitted)}, now: {list(names)})."
            )
        rows = _as_rows(X)
        if rows.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {rows.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return rows

    def _positive(self, X: ArrayLike) -> NDArray[np.float64]:
        rows = self._check_rows(X)
        return self.model_.predict_proba(rows, backend=self.backend)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated class probabilities, shape ``(n, 2)``: ``[P(classes_[0]), P(classes_[1])]``.
        (:meth:`PropensityModel.predict_proba` gives the second column alone, shape ``(n,)``.)"""
        p = self._positive(X)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        """``classes_[1]`` where the calibrated probability is above 0.5, else ``classes_[0]``."""
        positive = self._positive(X) > 0.5
        result: NDArray[Any] = self.classes_[positive.astype(np.intp)]
        return result

    def decision_function(self, X: ArrayLike) -> NDArray[np.float64]:
        """Log-odds of the calibrated probability, shape ``(n,)``: positive means ``classes_[1]``,
        the same ranking as ``predict_proba(X)[:, 1]`` (probabilities clipped to
        ``[1e-15, 1 - 1e-15]``, so isotonic 0 / 1 stay finite)."""
        p = np.clip(self._positive(X), 1e-15, 1.0 - 1e-15)
        result: NDArray[np.float64] = np.log(p) - np.log1p(-p)
        return result

    def score(self, X: ArrayLike, y: ArrayLike) -> float:
        """Mean accuracy of :meth:`predict` on ``(X, y)`` (scikit-learn's classifier default;
        use ``scoring="roc_auc"`` in model selection for the ranking quality)."""
        labels = _as_labels(y, np.shape(X)[0])
        return float(np.mean(self.predict(X) == labels))
