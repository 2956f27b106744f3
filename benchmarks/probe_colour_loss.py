"""Can a PartsWorld checkpoint learn colour from the attribute hard-negative loss alone? (issue 11)

    python benchmarks/probe_colour_loss.py --checkpoint /tmp/train3/parts-rn [--steps 120] [--lr 5e-4] [--aux-weight 1]

Fine-tunes a copy of the checkpoint at 112 px on `part_examples` scenes (seed 55555) with only the loss between
each image, its attribute caption ("a house with a red roof") and that caption's hard negatives (the 11 other
colours), and prints every 10 steps the mean loss and the share of images whose true caption outscores all 11
(1/12 = the colour is not seen). ``--aux-weight`` adds the auxiliary part-colour target of the training recipe
(`decomviz.apps.train.auxiliary`) to that loss. Nothing is saved.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import decomviz as dv
from decomviz.apps.train.auxiliary import PartColourHead, part_colour_target
from decomviz.apps.train.captions import ATTRIBUTE, part_examples
from decomviz.apps.train.evaluate import CaptionedScenes
from decomviz.apps.train.loop import encode_text_trimmed, hard_negative_loss, resize_state_dict


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a folder written by `decomviz train`")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--aux-weight", type=float, default=0.0, help="weight of the auxiliary part-colour target")
    args = ap.parse_args(argv)
    import open_clip
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    model = dv.load_model(checkpoint=args.checkpoint)
    cfg = copy.deepcopy(json.loads((Path(args.checkpoint) / "open_clip_config.json").read_text())["model_cfg"])
    cfg["vision_cfg"]["image_size"] = 112
    net = open_clip.CLIP(**cfg)
    net.load_state_dict(resize_state_dict(model.model.state_dict(), net))
    net = net.float().train()
    world = dv.PartsWorld(100_000, seed=55555, n_objects=(1, 2), size=112)
    head = PartColourHead(cfg["embed_dim"]) if args.aux_weight > 0 else None
    data = CaptionedScenes(world, model.tokenizer, caption_seed=3, example_fn=part_examples, pairs=True,
                           target_fn=part_colour_target if head is not None else None)
    loader = torch.utils.data.DataLoader(data, batch_size=64, num_workers=1, drop_last=True)
    params = list(net.parameters()) + (list(head.parameters()) if head is not None else [])
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    t0, log = time.time(), []
    for i, (images, tokens, *target) in enumerate(loader):
        if i >= args.steps:
            break
        nb, nc = tokens.shape[:2]
        img = net.encode_image(images, normalize=True).float()
        txt = encode_text_trimmed(net, tokens.transpose(0, 1).reshape(nb * nc, -1)).float().reshape(nc, nb, -1)
        colours = txt[ATTRIBUTE]                                  # the true colour first, then the 11 others
        loss = hard_negative_loss(img, colours[0], colours[1:].transpose(0, 1), net.logit_scale.exp())
        if head is not None:
            loss = loss + args.aux_weight * head.loss(img, target[0])
        with torch.no_grad():
            right = (torch.einsum("bd,kbd->bk", img, colours).argmax(1) == 0).float().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        log.append((float(loss), float(right)))
        if (i + 1) % 10 == 0:
            mean_loss, mean_right = np.mean(log[-10:], 0)
            print(f"step {i + 1:4d}  attribute loss {mean_loss:.3f}  true caption above its 11 negatives "
                  f"{mean_right:.2f}  ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
