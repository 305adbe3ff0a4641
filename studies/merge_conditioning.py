"""Conditioning of Custom Diffusion's constrained merge on a finished merge chain, for two choices of
constrained rows per concept: the concept token's row only (what ``custom_diffusion_merge`` uses) and
the token through the first end-of-text (the first implementation). Prints cond(C M^-1 C^T), the
merged K/V norms relative to the base, and the cosine between concepts' token / end-of-text features.

  python studies/merge_conditioning.py --benchmark faces --tasks 10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from continual_diffusion.core.chain import build_model, restore_chain
from continual_diffusion.core.training import prompt_ids
from continual_diffusion.methods import MethodEnv, make_method
from continual_diffusion.methods.custom_diffusion import prompt_features, regularization_prompts
from continual_diffusion.models import kv_merge
from continual_diffusion.models.tokens import concept_token, prompt_for
from continual_diffusion.utils import config, layout


def token_through_eos(model, token: str) -> torch.Tensor:
    ids = prompt_ids(model.tokenizer, [prompt_for(token)])[0]
    start = ids.tolist().index(model.tokenizer.convert_tokens_to_ids(token))
    eos = model.tokenizer.eos_token_id
    stop = next((i for i in range(start + 1, len(ids)) if int(ids[i]) == eos), len(ids) - 1)
    with torch.no_grad():
        return model.text_encoder(ids[None])[0][0][start:stop + 1].double()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", default="faces")
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="tiny")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = config.load([Path("params.yaml")], [f"profile={args.profile}"])
    model = build_model(layout.base_dir(args.profile))
    method = make_method("custom_diffusion_merge", config.method_params(cfg, args.benchmark, "custom_diffusion_merge"))
    method.prepare(model, MethodEnv(args.benchmark, layout.profile_root("data", args.profile), args.seed))
    runs = layout.profile_root("runs", args.profile)
    restore_chain(model, method, layout.chain_dir(runs, args.benchmark, "custom_diffusion_merge", args.seed), args.tasks)
    reg = prompt_features(model, regularization_prompts(method.params, method.env))
    ridge = float(method.params.get("ridge", 1e-6))
    spans = {t: token_through_eos(model, concept_token(t)) for t in range(1, args.tasks + 1)}
    for label, pick in (("token row only", lambda s: s[:1]), ("token through end-of-text", lambda s: s)):
        rows = torch.cat([pick(spans[t]) for t in spans])
        m = reg.T @ reg + ridge * torch.eye(reg.shape[1], dtype=reg.dtype)
        cond = float(torch.linalg.cond(rows @ torch.linalg.solve(m, rows.T)))
        merged = {n: kv_merge.constrained_merge(method.w_base[n], reg,
                                                [(method.task_weights[t][n], pick(spans[t])) for t in spans], ridge)
                  for n in method.linears}
        ratio = [float(merged[n].norm() / method.w_base[n].norm()) for n in merged]
        print(f"{args.benchmark}, {args.tasks} tasks, {label}: {rows.shape[0]} constrained rows, cond {cond:.2e}, "
              f"||W*|| / ||W0|| mean {sum(ratio) / len(ratio):.2f} max {max(ratio):.2f}")
    own = [float(method.task_weights[t][n].norm() / method.w_base[n].norm()) for t in spans for n in method.linears]
    print(f"each task's own ||W_i|| / ||W0||: mean {sum(own) / len(own):.2f}")

    def cos(a, b):
        return float(torch.nn.functional.cosine_similarity(a, b, dim=0))

    print("cos(token feature of concept 1, of concept t):", " ".join(f"{cos(spans[1][0], spans[t][0]):.3f}" for t in spans))
    print("cos(end-of-text feature of concept 1, of concept t):",
          " ".join(f"{cos(spans[1][-1], spans[t][-1]):.3f}" for t in spans))


if __name__ == "__main__":
    main()
