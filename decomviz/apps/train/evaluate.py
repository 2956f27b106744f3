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
    ``target_fn(scene) -> tensor``, when given, adds a third item: an auxiliary target of the scene as drawn.
    ``pairs=True`` makes items ``2m`` and ``2m + 1`` two variants of scene ``m``:
    ``example_fn(scene, seed, variant)`` with variant 0 and 1 (batches of an even size keep them together).
    """

    def __init__(self, world: PartsWorld, tokenizer, caption_seed: int = 0,
                 caption_fn: Callable[[Scene, int], Sequence[str]] = training_captions,
                 example_fn: Optional[Callable[[Scene, int], Tuple[Scene, Sequence[str]]]] = None,
                 target_fn: Optional[Callable[[Scene], torch.Tensor]] = None, pairs: bool = False):
        if pairs and example_fn is None:
            raise ValueError("pairs=True needs an example_fn(scene, seed, variant)")
        self.world, self.tokenizer, self.caption_seed = world, tokenizer, caption_seed
        self.example_fn = example_fn or (lambda scene, seed: (scene, caption_fn(scene, seed)))
        self.target_fn = target_fn
        self.pairs = pairs

    def __len__(self) -> int:
        return 2 * len(self.world) if self.pairs else len(self.world)

    def __getitem__(self, i: int):
        if self.pairs:
            scene, texts = self.example_fn(self.world[i // 2], self.caption_seed, i % 2)
        else:
            scene, texts = self.example_fn(self.world[i], self.caption_seed)
        if self.target_fn is None:
            return image_to_tensor(scene.image), self.tokenizer(list(texts))
        return image_to_tensor(scene.image), self.tokenizer(list(texts)), self.target_fn(scene)


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


@torch.no_grad()
def colour_probe(model, tokenizer, n: int = 24, seed: int = 777, size: Optional[int] = None) -> dict:
    """A cheap colour check for training logs: the median image-embedding cosine between a single-object scene
    and the same scene with one part recoloured to the opposite colour of the palette, and the median smallest
    cosine among "a {class} with a {colour} {part}" over the 12 colours. Both near 1: the model is colour-blind
    (see ``decomviz.apps.bench.parts.colour_sensitivity`` for the benchmark's version)."""
    from ...data import PALETTE, object_phrase
    was_training = model.training
    model.eval()
    size = size or _image_size(model)
    device = next(model.parameters()).device
    colors = list(PALETTE)
    world = PartsWorld(n, seed=seed, size=size, n_objects=1)
    image_cos, text_cos = [], []
    for k in range(n):
        scene = world[k]
        drawn = [i for i, p in enumerate(scene.parts) if p.mask.any()]  # recolouring a hidden part changes nothing
        i = drawn[k % len(drawn)]
        part = scene.parts[i]
        other = colors[(colors.index(part.color) + len(colors) // 2) % len(colors)]
        x = torch.stack([image_to_tensor(scene.image), image_to_tensor(scene.with_part_color(i, other).image)])
        f = model.encode_image(x.to(device), normalize=True)
        image_cos.append(float(f[0] @ f[1]))
        t = model.encode_text(tokenizer([object_phrase(scene.objects[0].label, {part.name: c}) for c in colors])
                              .to(device), normalize=True)
        text_cos.append(float((t @ t.T).min()))
    model.train(was_training)
    return {"recoloured_image_cosine": float(np.median(image_cos)), "colour_prompt_cosine": float(np.median(text_cos))}
