"""streaming="auto" budgets for the whole working set of in-memory clustering (features, their copies, the
distances), not for the features alone."""
import numpy as np
import pytest

from decomviz.analysis.clusters import IN_MEMORY_BYTES, ComponentClusters, working_set_bytes


class _Bank:
    """What `_streams` reads of a bank: its length and the width of one row's feature."""

    def __init__(self, n, width):
        self.n, self.width = n, width

    def __len__(self):
        return self.n

    def vectors(self, name, rows):
        return np.zeros((len(rows), self.width), np.float32)


def test_a_million_rows_of_128_features_stream():
    # the features alone (float64) are 0.95 GiB, under the budget; with their copies they are several GiB
    n, width = 1_000_000, 128
    assert n * width * 8 <= IN_MEMORY_BYTES < working_set_bytes(n, width)
    assert ComponentClusters(streaming="auto")._streams(_Bank(n, width), n) is True


def test_a_small_bank_clusters_in_memory():
    assert ComponentClusters(streaming="auto")._streams(_Bank(20_000, 128), 20_000) is False


def test_agglomerative_counts_its_pairwise_distances():
    n, width = 30_000, 16  # features of 15 MB, pairwise distances of 3.6 GB
    assert working_set_bytes(n, width, "agglomerative") > 3e9
    with pytest.raises(ValueError, match=r"GiB \(features, their copies and distances\)"):
        ComponentClusters(method="agglomerative", streaming="auto")._streams(_Bank(n, width), n)
