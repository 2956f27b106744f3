"""Training the bundled PartsWorld CLIPs (an application: the library never imports it).

    decomviz train --model parts-rn --out decomviz/assets/parts-rn
"""
from .captions import training_caption, training_captions
from .evaluate import CaptionedScenes, image_to_tensor, zero_shot_accuracy
from .loop import default_out, train
from .recipes import RECIPES
from .saving import load_local, save_model

__all__ = ["train", "default_out", "RECIPES", "training_caption", "training_captions", "CaptionedScenes",
           "image_to_tensor", "zero_shot_accuracy", "load_local", "save_model"]
