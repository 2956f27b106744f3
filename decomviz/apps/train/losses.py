"""The losses of a training step: CLIP's contrastive loss over captions, the part examples' hard negatives and
sibling contrast, and the auxiliary colour and dense part targets."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from .captions import ATTRIBUTE, PART, PART_NEGATIVE


def hard_negative_loss(image: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                       scale: torch.Tensor) -> torch.Tensor:
    """Contrastive loss in which each image also competes against its own hard-negative captions.

    image, positive : (B, D) normalised embeddings; image i matches positive i. negatives : (B, M, D), or (B, D)
    for one each: image i's own negatives. Image to text: a softmax over the B positives and image i's M
    negatives; text to image: over the B images.
    """
    if negatives.ndim == 2:
        negatives = negatives[:, None]
    labels = torch.arange(len(image), device=image.device)
    to_text = scale * torch.cat([image @ positive.T, torch.einsum("bd,bmd->bm", image, negatives)], 1)
    to_image = scale * positive @ image.T
    return (F.cross_entropy(to_text, labels) + F.cross_entropy(to_image, labels)) / 2


def sibling_part_loss(image: torch.Tensor, removed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Image-side part contrast: rows 2m and 2m + 1 of ``image`` (B, D) are one scene with two different parts
    removed, and ``removed`` (B, D) embeds "the {removed part} of a {class}" of each row. That text must match the
    sibling, which still shows the part, better than its own image (a two-way softmax over the pair)."""
    if len(image) % 2:
        raise ValueError("sibling_part_loss needs pairs of rows; the batch size must be even")
    sibling = image.reshape(-1, 2, image.shape[-1]).flip(1).reshape(image.shape)
    logits = scale * torch.stack([(sibling * removed).sum(-1), (image * removed).sum(-1)], 1)
    return F.cross_entropy(logits, torch.zeros(len(image), dtype=torch.long, device=image.device))


def part_example_loss(image: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor, clip_loss,
                      object_weight: float = 1.0) -> torch.Tensor:
    """The loss of a batch of `part_examples` pairs: texts (len(PART_EXAMPLE_LAYOUT), B, D). The weighted mean of
    the CLIP loss on the object captions (weight ``object_weight``), the attribute's colour choice, the part
    against the removed part, and the image-side contrast of the removed part between siblings (weight 1 each)."""
    attribute_negatives = texts[ATTRIBUTE.start + 1:ATTRIBUTE.stop].transpose(0, 1)
    return (object_weight * clip_loss(image, texts[0], scale)
            + hard_negative_loss(image, texts[ATTRIBUTE.start], attribute_negatives, scale)
            + hard_negative_loss(image, texts[PART], texts[PART_NEGATIVE], scale)
            + sibling_part_loss(image, texts[PART_NEGATIVE], scale)) / (object_weight + 3)


def step_loss(image: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor, clip_loss, *, parts: bool,
              object_weight: float, stage: Dict[str, Any], target: Dict[str, torch.Tensor], head=None,
              dense_head=None, features: Optional[torch.Tensor] = None,
              log: Optional[Dict[str, List[float]]] = None) -> torch.Tensor:
    """The loss of one step: the contrastive loss (part examples, or each image against each of its captions,
    averaged), plus the stage's ``aux_weight`` times the colour head's loss and its ``dense_weight`` times the
    dense head's loss on the tapped ``features``. Each term's value is appended to ``log`` ("losses": the
    contrastive one; "aux_losses", "dense_losses")."""
    if parts:
        loss = part_example_loss(image, texts, scale, clip_loss, object_weight)
    else:
        loss = sum(clip_loss(image, texts[j], scale) for j in range(len(texts))) / len(texts)
    log["losses"].append(float(loss.detach()))
    if head is not None:
        aux = head.loss(image, target["colours"])
        log["aux_losses"].append(float(aux.detach()))
        loss = loss + stage["aux_weight"] * aux
    if features is not None:
        dense = dense_head.loss(features, target["classes"], target["areas"])
        log["dense_losses"].append(float(dense.detach()))
        loss = loss + stage["dense_weight"] * dense
    return loss
