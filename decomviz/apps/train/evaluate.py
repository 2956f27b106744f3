"""Scenes as training tensors, and the zero-shot accuracy of a model on fresh single-object scenes."""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from ...data import CLASSES, PartsWorld, Scene
from .captions import training_captions
from .recipes import MEAN, STD, ZERO_SHOT_TEMPLATE


def image_to_tensor(image, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """An RGB PIL image (already at the model's size) as a normalised float (3, H, W) tensor."""
    arr = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (arr - m) / s


class CaptionedScenes(torch.utils.data.Dataset):
    """PartsWorld scenes as (image tensor (3, H, W), token ids (n_captions, context)) for contrastive training.

    ``caption_fn(scene, seed)`` gives the texts of a scene; ``example_fn(scene, seed) -> (scene, texts)``, when
    given instead, may also change the scene (e.g. remove a part) before it is drawn into the batch.
    """

    def __init__(self, world: PartsWorld, tokenizer, caption_seed: int = 0,
                 caption_fn: Callable[[Scene, int], Sequence[str]] = training_captions,
                 example_fn: Optional[Callable[[Scene, int], Tuple[Scene, Sequence[str]]]] = None):
        self.world, self.tokenizer, self.caption_seed = world, tokenizer, caption_seed
        self.example_fn = example_fn or (lambda scene, seed: (scene, caption_fn(scene, seed)))

    def __len__(self) -> int:
        return len(self.world)

    def __getitem__(self, i: int):
        scene, texts = self.example_fn(self.world[i], self.caption_seed)
        return image_to_tensor(scene.image), self.tokenizer(list(texts))


# ----------------------------------------------------------------------------------------------- eval

@torch.no_grad()
def zero_shot_accuracy(model, tokenizer, n: int = 200, seed: int = 12345, classes: Sequence[str] = CLASSES,
                       preprocess: Optional[Callable] = None, size: Optional[int] = None,
                       template: str = ZERO_SHOT_TEMPLATE, batch_size: int = 50,
                       return_predictions: bool = False):
    """Zero-shot accuracy over object classes on ``n`` single-object PartsWorld scenes of ``seed``.

    The prompt of each class is ``template.format(class)``. Images go through ``preprocess`` (an open_clip
    transform of a PIL image) when given, otherwise through :func:`image_to_tensor` at ``size`` (default: the
    model's image size). The model is put in eval mode and restored afterwards.
    """
    was_training = model.training
    model.eval()
    if size is None:
        size = _image_size(model)
    world = PartsWorld(n, seed=seed, size=size, n_objects=1, classes=list(classes))
    device = next(model.parameters()).device
    text = model.encode_text(tokenizer([template.format(c) for c in classes]).to(device), normalize=True)
    correct, preds = 0, []
    for start in range(0, n, batch_size):
        scenes = [world[i] for i in range(start, min(start + batch_size, n))]
        if preprocess is not None:
            x = torch.stack([preprocess(s.image) for s in scenes])
        else:
            x = torch.stack([image_to_tensor(s.image) for s in scenes])
        f = model.encode_image(x.to(device), normalize=True)
        p = (f @ text.T).argmax(1).tolist()
        preds += p
        correct += sum(int(classes[k] == s.objects[0].label) for k, s in zip(p, scenes))
    model.train(was_training)
    acc = correct / n
    return (acc, preds) if return_predictions else acc


def _image_size(model) -> int:
    size = getattr(model.visual, "image_size", 224)
    return size[0] if isinstance(size, (tuple, list)) else int(size)
