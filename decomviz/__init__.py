"""decomviz: DecomCAM saliency for CLIP-style models, made for notebooks."""
__version__ = "0.1.0"

from .models import CLIPModel, LayerError, ModelLoadError, list_models, load_model
from .images import ImageInputError
from .explanation import Explanation
from .cam import CAM
from .decomcam import DecomCAM
from .baselines import EigenCAM, GradCAM, GradCAMPlusPlus, GScoreCAM, LayerCAM, ScoreCAM
from . import metrics
from .data import PartsWorld
from .analysis import ComponentClusters, OSSMBank, extract

__all__ = [
    "CLIPModel", "load_model", "list_models", "ModelLoadError", "LayerError", "ImageInputError",
    "Explanation", "CAM", "DecomCAM", "GradCAM", "GradCAMPlusPlus", "LayerCAM", "EigenCAM", "ScoreCAM",
    "GScoreCAM", "metrics", "PartsWorld", "OSSMBank", "extract", "ComponentClusters",
]
