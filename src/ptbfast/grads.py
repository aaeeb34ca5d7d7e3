"""The gradient types the model makes and the SGD step applies (ptbfast.sgd)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ptbfast import ops


class IndexedSlices(NamedTuple):
    """The embedding's gradient as the lookup's backward pass makes it and TF's optimizer sees it
    (``tf.IndexedSlices``): row ``values[k]`` belongs to row ``indices[k]`` of a ``dense_shape``
    tensor; indices repeat, one entry per token."""

    indices: np.ndarray
    values: np.ndarray
    dense_shape: tuple

    def to_dense(self) -> np.ndarray:
        dense = np.zeros(self.dense_shape, np.float32)
        ops.scatter_add(dense, self.indices, self.values)
        return dense

    def merged(self) -> "IndexedSlices":
        """One row per distinct index (the true gradient's non-zero rows)."""
        return IndexedSlices(*ops.merge_duplicate_ids(self.indices, self.values), self.dense_shape)
