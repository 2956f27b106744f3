"""Attribution methods on one layer of a CLIP image tower, all with one call: ``method(images, prompts)``.

`base.CAM` holds what they share; `registry.METHODS` names them for every entry point.
"""
from .base import CAM, Method
from .baselines import EigenCAM, GradCAM, GradCAMPlusPlus, GScoreCAM, LayerCAM, ScoreCAM
from .chefer import Chefer
from .decomcam import DecomCAM
from .grad_eclip import GradECLIP
from .gradients import LayerGradients, tap_activations, tap_gradients
from .legrad import LeGrad
from .occlusion import Occlusion
from .registry import METHODS, MethodSpec, make_method
from .rollout import Rollout
from .targets import Target, any_target, contrast_target, image_target
from .tokens import TokenAttribution, token_attribution

__all__ = ["Method", "CAM", "DecomCAM", "GradCAM", "GradCAMPlusPlus", "LayerCAM", "EigenCAM", "ScoreCAM", "GScoreCAM",
           "Occlusion", "METHODS", "LayerGradients", "tap_gradients", "tap_activations", "MethodSpec", "make_method", "Target", "image_target", "contrast_target", "any_target",
           "LeGrad", "GradECLIP", "Chefer", "Rollout", "TokenAttribution", "token_attribution"]
