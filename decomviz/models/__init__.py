"""Models: loading CLIP models (`load_model`), the `CLIPModel` wrapper, and taps on their layers."""
from .loading import ASSETS, BUNDLED, DEFAULT_MODEL, NOT_BUNDLED, list_models, load_model
from .wrapper import CLIPModel, LayerError, ModelLoadError, PreparedImages

__all__ = ["load_model", "list_models", "CLIPModel", "PreparedImages", "ModelLoadError", "LayerError", "ASSETS",
           "BUNDLED", "DEFAULT_MODEL", "NOT_BUNDLED"]
