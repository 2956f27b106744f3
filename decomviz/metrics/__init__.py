"""Metrics: localisation on masks, faithfulness, part alignment and clusters, the randomisation sanity check.

Each returns a `MetricResult` (values + the protocol record that makes them comparable) or a dict of them.
"""
from .faithfulness import confidence_change, insertion_deletion
from .importance import (background_mass, component_parts, deletion_rank_correlation, object_importance,
                         part_importance, part_mass, target_sensitivity)
from .localisation import energy_pointing_game, pointing_game
from .parts import cluster_scores, masks_as_seen, part_alignment
from .result import MetricResult, dilate, spearman
from .sanity import sanity_check

__all__ = ["MetricResult", "pointing_game", "energy_pointing_game", "insertion_deletion", "confidence_change",
           "part_alignment", "cluster_scores", "sanity_check", "dilate", "part_importance", "object_importance",
           "part_mass", "spearman", "deletion_rank_correlation", "background_mass", "target_sensitivity",
           "component_parts", "masks_as_seen"]
