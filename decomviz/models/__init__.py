"""Models: loading CLIP models (`load_model`), the `CLIPModel` wrapper, and taps on their layers."""
from .loading import ASSETS, BUNDLED, DEFAULT_MODEL, NOT_BUNDLED, list_models, load_model
from .wrapper import CLIPModel, LayerError, ModelLoadError, Normalized, PreparedImages

__all__ = ["load_model", "list_models", "CLIPModel", "PreparedImages", "Normalized", "ModelLoadError", "LayerError", "ASSETS",
           "BUNDLED", "DEFAULT_MODEL", "NOT_BUNDLED"]
