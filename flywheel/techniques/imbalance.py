"""Class-imbalance resamplers: SMOTE over-sampling and random under-sampling (imbalanced-learn).

Both are estimators with ``fit_resample(x, y) -> (x_resampled, y_resampled)``
and work on tables (2-D) and images (N, H, W, C), which are flattened for
imbalanced-learn and reshaped back (SMOTE's synthetic pixels are rounded back
to the input dtype). ``transform(resample="smote"|"undersample")`` applies them
to the train split only; eval is never resampled.

* ``SMOTEOversampler`` (Chawla et al. 2002): a synthetic minority sample lies
  on the segment between a minority sample and one of its ``k_neighbors``
  nearest minority neighbours. With ``categorical_features`` (column names of
  a DataFrame) it uses SMOTE-NC, which votes categorical values instead of
  interpolating them.
* ``RandomUndersampler``: drops majority samples at random until the classes
  reach ``sampling_strategy``; ``sample_indices_`` says which rows were kept.
"""

from __future__ import annotations

import abc

from typing import Any

from flywheel.techniques._checks import TechniqueInputError, check_features_labels
from flywheel.techniques.base import Interval, Options, Technique

STRATEGIES = Options({"auto", "minority", "not minority", "not majority", "all"})
# A float strategy is the wanted minority/majority ratio after resampling (imbalanced-learn's rule).
RATIO = Interval(float, 0, 1, closed="right")


def _class_counts(y: Any) -> dict[str, int]:
    import numpy as np

    values, counts = np.unique(np.asarray(y), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}


class _Resampler(Technique, abc.ABC):
    """Shared ``fit_resample`` frame: validation, flattening, reshaping, bookkeeping."""

    @abc.abstractmethod
    def _sampler(self) -> Any:
        """The imbalanced-learn sampler configured from this estimator's parameters."""

    def fit_resample(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Resamples ``(x, y)``; returns arrays (or a DataFrame for SMOTE-NC input).

        Raises:
            ParameterError: a parameter breaks its rule.
            TechniqueInputError: the data is malformed (see ``_checks``), or a
                class is too small for the requested resampling.
        """
        import numpy as np

        self._validate_params()
        owner = type(self).__name__
        if getattr(self, "categorical_features", None):
            return self._fit_resample_frame(x, y)
        x, y = check_features_labels(owner, x, y)
        shape, dtype = x.shape[1:], x.dtype
        flat = x.reshape(len(x), -1)
        if isinstance(self.sampling_strategy, float):
            counts = _class_counts(y)
            if len(counts) != 2:
                raise TechniqueInputError(
                    f"{owner} takes a float sampling_strategy only for two classes; the labels have "
                    f"{len(counts)}. Use 'auto' or another string strategy."
                )
        self._check_classes(y)
        sampler = self._sampler()
        try:
            x_new, y_new = sampler.fit_resample(flat.astype("float64") if dtype.kind in "ui" else flat, y)
        except ValueError as exc:
            raise TechniqueInputError(f"{owner} cannot resample this data: {exc}") from exc
        if dtype.kind in "ui":
            info = np.iinfo(dtype)
            x_new = np.rint(x_new).clip(info.min, info.max)
        x_new = np.asarray(x_new).astype(dtype, copy=False).reshape((len(x_new), *shape))
        self._record(y, y_new, sampler)
        return x_new, np.asarray(y_new)

    def _fit_resample_frame(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Resampling of a frame with categorical columns (SMOTE-NC overrides this)."""
        raise TechniqueInputError(
            f"{type(self).__name__} does not resample frames with categorical features; "
            "encode them first or use SMOTEOversampler."
        )

    def _check_classes(self, y: Any) -> None:
        """Hook: refuse class sizes the method cannot handle."""

    def _record(self, y: Any, y_new: Any, sampler: Any) -> None:
        self.class_counts_before_ = _class_counts(y)
        self.class_counts_after_ = _class_counts(y_new)
        indices = getattr(sampler, "sample_indices_", None)
        self.sample_indices_ = None if indices is None else [int(i) for i in indices]


class SMOTEOversampler(_Resampler):
    """SMOTE (or SMOTE-NC with ``categorical_features``) over-sampling of minority classes.

    Args:
        k_neighbors: Nearest minority neighbours a synthetic sample may lie towards.
        sampling_strategy: imbalanced-learn's strategy: "auto" (= "not majority":
            every class up to the majority's size), "minority", "not minority",
            "not majority", "all", or a float in (0, 1] (minority/majority ratio,
            two classes only).
        categorical_features: Column names of a DataFrame ``x`` that hold
            categories (SMOTE-NC); None for all-numeric arrays.
        random_state: Seed of the neighbour choice and interpolation.

    Attributes:
        class_counts_before_, class_counts_after_: {class: count}.
        n_synthetic_: Number of samples created.
    """

    _parameter_constraints = {
        "k_neighbors": [Interval(int, 1, None)],
        "sampling_strategy": [STRATEGIES, RATIO],
        "categorical_features": [list, None],
        "random_state": ["random_state"],
    }

    def __init__(self, *, k_neighbors=5, sampling_strategy="auto", categorical_features=None, random_state=None):
        self.k_neighbors = k_neighbors
        self.sampling_strategy = sampling_strategy
        self.categorical_features = categorical_features
        self.random_state = random_state

    def _sampler(self) -> Any:
        from imblearn.over_sampling import SMOTE

        return SMOTE(k_neighbors=self.k_neighbors, sampling_strategy=self.sampling_strategy, random_state=self.random_state)

    def _check_classes(self, y: Any) -> None:
        counts = _class_counts(y)
        smallest = min(counts, key=counts.get)
        if counts[smallest] <= self.k_neighbors:
            raise TechniqueInputError(
                f"SMOTEOversampler needs more than k_neighbors={self.k_neighbors} samples in every class it "
                f"over-samples; class '{smallest}' has {counts[smallest]}. Lower k_neighbors or gather more samples."
            )

    def _record(self, y: Any, y_new: Any, sampler: Any) -> None:
        super()._record(y, y_new, sampler)
        self.n_synthetic_ = int(len(y_new) - len(y))

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        bad = [{"k_neighbors": 0}, {"sampling_strategy": 1.5}, {"categorical_features": "a"}]
        return _contract_case(cls, {"k_neighbors": 3}, bad)

    def _fit_resample_frame(self, x: Any, y: Any) -> tuple[Any, Any]:
        import numpy as np
        import pandas as pd
        from imblearn.over_sampling import SMOTENC

        if not isinstance(x, pd.DataFrame):
            raise TechniqueInputError(
                f"SMOTEOversampler with categorical_features needs a DataFrame with those columns; got {type(x).__name__}."
            )
        missing = [c for c in self.categorical_features if c not in x.columns]
        numeric = [c for c in x.columns if c not in self.categorical_features]
        if missing or not numeric:
            raise TechniqueInputError(
                f"SMOTEOversampler's categorical_features must be columns of x and leave at least one numeric "
                f"column; missing {missing}, numeric columns {numeric}."
            )
        check_features_labels("SMOTEOversampler", x[numeric].to_numpy(dtype="float64"), y)
        self._check_classes(np.asarray(y))
        frame = x.copy()
        for column in self.categorical_features:
            frame[column] = frame[column].astype(str)
        sampler = SMOTENC(
            categorical_features=list(self.categorical_features),
            k_neighbors=self.k_neighbors,
            sampling_strategy=self.sampling_strategy,
            random_state=self.random_state,
        )
        try:
            x_new, y_new = sampler.fit_resample(frame, np.asarray(y))
        except ValueError as exc:
            raise TechniqueInputError(f"SMOTEOversampler cannot resample this data: {exc}") from exc
        self._record(y, y_new, sampler)
        return x_new.reset_index(drop=True), np.asarray(y_new)


class RandomUndersampler(_Resampler):
    """Random under-sampling of the majority class(es), without replacement.

    Args:
        sampling_strategy: imbalanced-learn's strategy: "auto" (= "not minority":
            every class down to the minority's size), "majority", "not minority",
            "not majority", "all", or a float in (0, 1] (minority/majority
            ratio, two classes only).
        random_state: Seed of the choice of kept samples.

    Attributes:
        sample_indices_: Indices of the kept samples, in output order.
        class_counts_before_, class_counts_after_: {class: count}.
    """

    _parameter_constraints = {
        "sampling_strategy": [Options({"auto", "not minority", "not majority", "all", "majority"}), RATIO],
        "random_state": ["random_state"],
    }

    def __init__(self, *, sampling_strategy="auto", random_state=None):
        self.sampling_strategy = sampling_strategy
        self.random_state = random_state

    def _sampler(self) -> Any:
        from imblearn.under_sampling import RandomUnderSampler

        return RandomUnderSampler(sampling_strategy=self.sampling_strategy, random_state=self.random_state)

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        return _contract_case(cls, {"sampling_strategy": "auto"}, [{"sampling_strategy": "most"}, {"sampling_strategy": 0.0}])


def _contract_case(cls: type, params: dict[str, Any], bad: list[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    def data() -> tuple[Any, Any]:
        rng = np.random.RandomState(0)
        x = np.vstack([rng.normal(0, 1, (40, 3)), rng.normal(2, 1, (8, 3))])
        return x, np.array([0] * 40 + [1] * 8)

    def call(technique: Technique) -> list[Any]:
        x_new, y_new = technique.fit_resample(*data())
        return [x_new, y_new]

    def bad_input(technique: Technique) -> None:
        x, y = data()
        technique.fit_resample(x, y[:-1])

    return {
        "params": {**params, "random_state": 0},
        "bad_params": [*bad, {"random_state": -1}],
        "call": call,
        "bad_input": bad_input,
        "shapes": lambda result: result[0].shape[1:] == (3,) and len(result[0]) == len(result[1]),
    }

