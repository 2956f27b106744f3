"""Metrics: localisation on masks, faithfulness, part alignment and clusters, the randomisation sanity check.

Each returns a `MetricResult` (values + the protocol record that makes them comparable) or a dict of them.
"""
from .faithfulness import confidence_change, insertion_deletion
from .localisation import energy_pointing_game, pointing_game
from .parts import cluster_scores, part_alignment
from .result import MetricResult, dilate
from .sanity import sanity_check

__all__ = ["MetricResult", "pointing_game", "energy_pointing_game", "insertion_deletion", "confidence_change",
           "part_alignment", "cluster_scores", "sanity_check", "dilate"]
