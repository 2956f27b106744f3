"""The bundled models' architecture, built without importing open_clip.

The bundled models are open_clip CLIPs (a CLIP ResNet or ViT image tower, a causal text transformer) saved as
open_clip checkpoint folders; open_clip loads them too (``load_model(checkpoint=folder)`` goes through it). Importing
open_clip imports torchvision, whose ops import ``torch._dynamo`` (and triton with the CUDA build of torch): 0.23 GB
and 2 s in every kernel that only wants the small bundled model (BENCHMARKS.md, "Notebooks in Voila"). `build`
makes the same modules, with the same parameter names and the same forward, from the folder's ``model_cfg``; it
returns None for any option it does not build, and the loader then uses open_clip. tests/test_bundled_clip.py checks both builds give the same
embeddings, and the tower adapters (`models.towers`) treat both alike.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .towers.base import OPENAI_MEAN, OPENAI_STD

# the model_cfg keys `build` takes (a missing one has open_clip's default); any other key is an option it does not build
_TOP = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu"}
_VISION = {"image_size", "layers", "width", "head_width", "patch_size", "mlp_ratio"}
_TEXT = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}


def build(model_cfg: Dict[str, Any]) -> Optional["CLIP"]:
    """A `CLIP` for an open_clip ``model_cfg`` of plain CLIP towers, or None when it asks for anything else (timm or
    Hugging Face towers, layer scale, other pooling, ...)."""
    vision, text = model_cfg.get("vision_cfg"), model_cfg.get("text_cfg")
    if not (isinstance(vision, dict) and isinstance(text, dict) and set(model_cfg) <= _TOP
            and set(vision) <= _VISION and set(text) <= _TEXT and isinstance(model_cfg.get("embed_dim"), int)):
        return None
    return CLIP(model_cfg["embed_dim"], vision, text, quick_gelu=bool(model_cfg.get("quick_gelu", False)))


def preprocess_cfg(model: "CLIP", saved: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The preprocessing open_clip gives this model: its defaults, the folder's own, and the tower's input size."""
    cfg = {"size": 224, "mode": "RGB", "mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic",
           "resize_mode": "shortest", "fill_color": 0}
    cfg.update({k: v for k, v in (saved or {}).items() if k in cfg})
    cfg["size"] = model.visual.image_size
    return cfg


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    """Pre-norm transformer block: attention, then an MLP, each added to the stream."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, act: type):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, hidden)), ("gelu", act()),
                                              ("c_proj", nn.Linear(hidden, width))]))

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        y = self.ln_1(x)
        mask = attn_mask.to(x.dtype) if attn_mask is not None else None
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    batch_first = True

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, act: type):
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.ModuleList(Block(width, heads, mlp_ratio, act) for _ in range(layers))

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask=attn_mask)
        return x


class Bottleneck(nn.Module):
    """CLIP's ResNet block: 1x1, 3x3, average pool when strided, 1x1; the shortcut pools before its 1x1."""
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1, self.act1 = nn.BatchNorm2d(planes), nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2, self.act2 = nn.BatchNorm2d(planes), nn.ReLU()
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3, self.act3 = nn.BatchNorm2d(out), nn.ReLU()
        self.downsample = None
        if stride > 1 or inplanes != out:
            self.downsample = nn.Sequential(OrderedDict([("-1", nn.AvgPool2d(stride)),
                                                         ("0", nn.Conv2d(inplanes, out, 1, bias=False)),
                                                         ("1", nn.BatchNorm2d(out))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.avgpool(self.act2(self.bn2(self.conv2(y))))
        y = self.bn3(self.conv3(y))
        return self.act3(y + (x if self.downsample is None else self.downsample(x)))


class AttentionPool2d(nn.Module):
    """Attention pooling: the mean token, with a learnt position per token, attends over the feature map."""

    def __init__(self, side: int, width: int, heads: int, out: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(side * side + 1, width) / width ** 0.5)
        self.k_proj, self.q_proj, self.v_proj = (nn.Linear(width, width) for _ in range(3))
        self.c_proj = nn.Linear(width, out)
        self.num_heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).permute(2, 0, 1)  # (HW, N, C)
        x = torch.cat([x.mean(dim=0, keepdim=True), x]) + self.positional_embedding[:, None].to(x.dtype)
        out, _ = F.multi_head_attention_forward(
            query=x, key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0, out_proj_weight=self.c_proj.weight,
            out_proj_bias=self.c_proj.bias, use_separate_proj_weight=True, training=self.training,
            need_weights=False)
        return out[0]


class ModifiedResNet(nn.Module):
    """CLIP's ResNet: a three-convolution stem with an average pool, four stages, an attention pool."""

    def __init__(self, layers, output_dim: int, heads: int, image_size: int = 224, width: int = 64):
        super().__init__()
        self.output_dim, self.image_size = output_dim, image_size
        half = width // 2
        self.conv1 = nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False)
        self.bn1, self.act1 = nn.BatchNorm2d(half), nn.ReLU()
        self.conv2 = nn.Conv2d(half, half, 3, padding=1, bias=False)
        self.bn2, self.act2 = nn.BatchNorm2d(half), nn.ReLU()
        self.conv3 = nn.Conv2d(half, width, 3, padding=1, bias=False)
        self.bn3, self.act3 = nn.BatchNorm2d(width), nn.ReLU()
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        for i, (blocks, stride) in enumerate(zip(layers, (1, 2, 2, 2)), start=1):
            planes = width * 2 ** (i - 1)
            stage = [Bottleneck(inplanes, planes, stride)] + [
                Bottleneck(planes * 4, planes) for _ in range(1, blocks)]
            setattr(self, f"layer{i}", nn.Sequential(*stage))
            inplanes = planes * 4
        self.attnpool = AttentionPool2d(image_size // 32, width * 32, heads, output_dim)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        return self.avgpool(self.act3(self.bn3(self.conv3(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        return self.attnpool(x)


class VisionTransformer(nn.Module):
    """CLIP's ViT: patches, a class token, pre- and post-norm; the class token's output, projected."""

    pool_type = "tok"
    attn_pool = None
    attn_pool_contrastive = None

    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int, mlp_ratio: float,
                 output_dim: int, act: type):
        super().__init__()
        self.image_size, self.patch_size = (image_size, image_size), (patch_size, patch_size)
        self.grid_size = (image_size // patch_size, image_size // patch_size)
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid_size[0] * self.grid_size[1] + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, mlp_ratio, act)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def _pool(self, x: torch.Tensor):
        x = self.ln_post(x)
        return x[:, 0], x[:, 1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        pooled, _ = self._pool(x)
        return pooled @ self.proj


class CLIP(nn.Module):
    """open_clip's CLIP layout: ``visual`` and the text transformer's modules at the top level."""

    def __init__(self, embed_dim: int, vision: Dict[str, Any], text: Dict[str, Any], quick_gelu: bool = False):
        super().__init__()
        act = QuickGELU if quick_gelu else nn.GELU
        image_size = vision.get("image_size", 224)
        width = vision.get("width", 768)
        if isinstance(vision.get("layers", 12), (list, tuple)):
            self.visual = ModifiedResNet(vision["layers"], embed_dim, width * 32 // vision.get("head_width", 64),
                                         image_size, width)
        else:
            self.visual = VisionTransformer(image_size, vision.get("patch_size", 16), width, vision.get("layers", 12),
                                            width // vision.get("head_width", 64), vision.get("mlp_ratio", 4.0),
                                            embed_dim, act)
        self.context_length = text.get("context_length", 77)
        self.vocab_size = text.get("vocab_size", 49408)
        t_width = text.get("width", 512)
        self.token_embedding = nn.Embedding(self.vocab_size, t_width)
        self.positional_embedding = nn.Parameter(torch.empty(self.context_length, t_width))
        self.transformer = Transformer(t_width, text.get("layers", 12), text.get("heads", 8),
                                       text.get("mlp_ratio", 4.0), act)
        self.ln_final = nn.LayerNorm(t_width)
        self.text_projection = nn.Parameter(torch.empty(t_width, embed_dim))
        self.text_pool_type = "argmax"
        causal = torch.full((self.context_length, self.context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", causal, persistent=False)
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self.logit_bias = None

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.visual(image)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = self.token_embedding(text) + self.positional_embedding
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))
        x = x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)] @ self.text_projection
        return F.normalize(x, dim=-1) if normalize else x

    def forward(self, image: torch.Tensor, text: torch.Tensor):
        return self.encode_image(image, normalize=True), self.encode_text(text, normalize=True), self.logit_scale.exp()
