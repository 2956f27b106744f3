"""decomviz: DecomCAM saliency for CLIP-style models, made for notebooks.

This module is the public facade for users and applications; modules inside the library import from the
module that defines a name, never from here.
"""
from ._version import __version__
from .models import CLIPModel, LayerError, ModelLoadError, Normalized, list_models, load_model
from .images import ImageInputError
from .explanation import Explanation
from .methods import (CAM, METHODS, DecomCAM, EigenCAM, GradCAM, GradCAMPlusPlus, GScoreCAM, LayerCAM, Occlusion,
                      ScoreCAM, Target, any_target, contrast_target, image_target, make_method)
from .methods import LayerGradients, Method, tap_activations, tap_gradients
from .methods import Chefer, GradECLIP, LeGrad, Rollout, TokenAttribution, token_attribution
from . import metrics
from .data import PartsWorld
from .viz.images import overlay
from .analysis import ComponentClusters, ConceptBasis, Extractor, OSSMBank, attach_parts, bank_schema, extract
from . import datasets

__all__ = [
    "__version__", "CLIPModel", "load_model", "list_models", "ModelLoadError", "LayerError", "ImageInputError",
    "Explanation", "Method", "CAM", "Normalized", "DecomCAM", "GradCAM", "GradCAMPlusPlus", "LayerCAM", "EigenCAM", "ScoreCAM",
    "GScoreCAM", "Occlusion", "METHODS", "make_method", "metrics", "PartsWorld", "OSSMBank", "extract",
    "Extractor", "bank_schema", "ComponentClusters", "ConceptBasis", "overlay", "datasets", "attach_parts",
    "Target", "image_target", "contrast_target", "any_target",
    "LayerGradients", "tap_gradients", "tap_activations",
    "LeGrad", "GradECLIP", "Chefer", "Rollout", "TokenAttribution", "token_attribution",
]
