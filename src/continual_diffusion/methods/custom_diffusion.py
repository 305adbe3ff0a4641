"""Custom Diffusion (Kumari et al., 2023) as continual baselines: the full cross-attention K/V weights
(every ``attn2.to_k`` / ``attn2.to_v``) and the concept token train, nothing else.

  custom_diffusion_seq      sequential: task t continues from the weights after task t-1 (forgets)
  custom_diffusion_offline  upper bound, not continual; ``mode``:
                            "separate" (default): task t trains from the base alone; concept i is
                            sampled with its own weights W_i (one model per concept). The only trace
                            of earlier tasks is the new token's initial scale when
                            ``train.token_init_norm`` is "mean" (the vocabulary's mean row norm, earlier
                            concept rows included); with a number it is fully independent (tested)
                            "joint": task t trains from the base on the real images of concepts 1..t
                            together (they are kept: not a continual method), each with its own prompt,
                              L = L_diffusion(batch of concept t) + (t-1) L_diffusion(batch of concepts < t)
                            so every concept weighs the same; past tokens stay as learned in their own
                            task. The model after task t samples every concept.
  custom_diffusion_merge    task t trains from the base; the model after task t is Custom Diffusion's
                            closed-form constrained merge of W_1..W_t (``models/kv_merge.py``):
                              W* = argmin_W ||(W - W0) C_reg^T||^2  s.t.  W c = W_i c  for every row c
                              of concept i's constrained features, i <= t
                            The constrained row of concept i is the text feature of V*_i at its position
                            in "a photo of V*_i" (Custom Diffusion's "target word"; our prompts have no
                            class word). Not the end-of-text rows after it: those are nearly the same for
                            every concept (cosine 0.98-1.00 in the miniature), so their constraints
                            conflict, C M^-1 C^T is ill-conditioned (cond 4e5 for 10 faces concepts) and
                            the merged K/V norms grew to 50x the base: samples were noise
                            (studies/results/merge_constraint_rows.md).
                            C_reg: features of the regularization prompts (``regularization_prompts``:
                            "pool" = the benchmark's generic captions, or a list), every non-padding position.
Saved per task: ``<module>.weight`` of every K/V projection (out x in).
"""

from __future__ import annotations

import json

import torch

from continual_diffusion.core.training import encode_latents, prompt_ids
from continual_diffusion.data.task_images import load_task_images
from continual_diffusion.methods import generated
from continual_diffusion.methods.base import ContinualMethod, TaskContext, register
from continual_diffusion.methods.generated import GeneratedSet
from continual_diffusion.models import kv_merge
from continual_diffusion.models.sd_v1_architecture import kv_shapes, parameter_costs
from continual_diffusion.models.tokens import concept_token, prompt_for
from continual_diffusion.utils import layout
from continual_diffusion.utils.errors import PipelineError


def kv_linears(unet) -> dict[str, torch.nn.Linear]:
    """Cross-attention K/V projections by module name."""
    modules = dict(unet.named_modules())
    return {name: modules[name] for name in sorted(kv_shapes(unet))}


class KVFineTuning(ContinualMethod):
    """Trains the K/V weights themselves (lr ``lr``); subclasses say where a task starts from.
    Trained and stored per task: sum over the K/V matrices of out * in (the full K/V weights)."""

    required = ("lr",)
    defaults = {"weight_decay": 0.0}
    code_modules = (kv_merge,)

    @classmethod
    def parameter_cost(cls, params: dict, unet) -> tuple[int, int]:
        kv_full = parameter_costs(unet, rank=1)["kv_full_params"]
        return kv_full, kv_full

    def prepare(self, model, env=None) -> None:
        super().prepare(model, env)
        model.unet.requires_grad_(False)
        self.linears = kv_linears(model.unet)
        if not self.linears:
            raise PipelineError("the U-Net has no cross-attention attn2.to_k / attn2.to_v modules")
        self.w_base = {n: m.weight.detach().clone() for n, m in self.linears.items()}

    def _set_weights(self, weights: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, module in self.linears.items():
                module.weight.copy_(weights[name].to(module.weight.dtype))

    def _weights(self) -> dict[str, torch.Tensor]:
        return {n: m.weight.detach().clone().contiguous() for n, m in self.linears.items()}

    def begin_task(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        for module in self.linears.values():
            module.weight.requires_grad_(True)

    def parameter_groups(self) -> list[dict]:
        return [{"params": [m.weight for m in self.linears.values()], "lr": float(self.params["lr"]),
                 "weight_decay": float(self.params["weight_decay"])}]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {f"{n}.weight": w for n, w in self._weights().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        self._set_weights({n: state[f"{n}.weight"] for n in self.linears})

    def end_task(self, task: int) -> dict[str, torch.Tensor]:
        for module in self.linears.values():
            module.weight.requires_grad_(False)
        weights = self._weights()
        self._drift = {n: float((weights[n] - self.w_base[n]).norm()) for n in weights}
        return {f"{n}.weight": w for n, w in weights.items()}

    def task_metrics(self) -> dict[str, float]:
        drift = getattr(self, "_drift", {})
        return {"kv_drift_from_base_mean": sum(drift.values()) / len(drift)} if drift else {}

    def from_base_recipe(self) -> tuple:
        """Recipe of a task that fine-tunes K/V from the base weights on its own images with the diffusion
        loss alone, saving the weights (``training_recipe``)."""
        return ("kv_fine_tuning_from_base", float(self.params["lr"]), float(self.params["weight_decay"]))


@register
class CustomDiffusionSequential(KVFineTuning):
    name = "custom_diffusion_seq"
    label = "Custom Diffusion (sequential)"

    def restore_task(self, task: int, state: dict[str, torch.Tensor]) -> None:
        self._set_weights({n: state[f"{n}.weight"] for n in self.linears})

    def training_recipe(self, task: int) -> tuple | None:
        """Task 1 starts from the base (no earlier task); later tasks continue from task t-1's weights."""
        return self.from_base_recipe() if task == 1 else None


class _PerTaskFromBase(KVFineTuning):
    """Each task trains from the base weights; the restored tasks' weights are kept per task."""

    def prepare(self, model, env=None) -> None:
        super().prepare(model, env)
        self.task_weights: dict[int, dict[str, torch.Tensor]] = {}

    def restore_task(self, task: int, state: dict[str, torch.Tensor]) -> None:
        self.task_weights[task] = {n: state[f"{n}.weight"] for n in self.linears}

    def begin_task(self, ctx: TaskContext) -> None:
        self._set_weights(self.w_base)
        super().begin_task(ctx)

    def training_recipe(self, task: int) -> tuple | None:
        return self.from_base_recipe()


OFFLINE_MODES = ("separate", "joint")


def real_concept_set(model, env, concepts: list[int]) -> GeneratedSet:
    """The real training images of ``concepts`` as VAE latents, each with "a photo of V*_i"."""
    if env.data_root is None:
        raise PipelineError("custom_diffusion_offline mode joint needs the data folder of the chain")
    latents, prompts, groups = [], [], []
    for concept in concepts:
        z = encode_latents(model.vae, load_task_images(layout.concept_task_dir(env.data_root, env.benchmark, concept)))
        latents.append(z)
        prompts += [prompt_for(concept_token(concept))] * z.shape[0]
        groups += [concept] * z.shape[0]
    return GeneratedSet(torch.cat(latents), prompt_ids(model.tokenizer, prompts), torch.tensor(groups, dtype=torch.long))


@register
class CustomDiffusionOffline(_PerTaskFromBase):
    name = "custom_diffusion_offline"
    label = "Custom Diffusion offline (upper bound)"
    defaults = {"mode": "separate"}  # separate (one model per concept) | joint (one model on concepts 1..t)
    code_modules = _PerTaskFromBase.code_modules + (generated,)

    @property
    def mode(self) -> str:
        mode = self.params["mode"]
        if mode not in OFFLINE_MODES:
            raise PipelineError(f"methods.custom_diffusion_offline.mode: one of {', '.join(OFFLINE_MODES)}, got {mode!r}")
        return mode

    def prepare(self, model, env=None) -> None:
        _ = self.mode  # fail fast on a wrong mode (the property raises)
        super().prepare(model, env)

    def begin_task(self, ctx: TaskContext) -> None:
        super().begin_task(ctx)
        self.past = None
        if self.mode == "joint" and ctx.task > 1:
            self.past = real_concept_set(self.model, self.env, list(range(1, ctx.task)))

    def training_recipe(self, task: int) -> tuple | None:
        """Mode joint adds the earlier concepts' images from task 2 on."""
        return self.from_base_recipe() if self.mode == "separate" or task == 1 else None

    def extra_losses(self) -> dict[str, torch.Tensor]:
        if getattr(self, "past", None) is None:
            return {}
        latents, ids, _ = self.past.draw(self.ctx.batch_size, self.ctx.generator)
        return {"joint": (self.ctx.task - 1) * self.ctx.loss(latents, ids)}

    def inference_groups(self, concepts: list[int]) -> list[list[int]]:
        return [list(concepts)] if self.mode == "joint" else [[c] for c in concepts]

    def prepare_inference(self, concepts: list[int] | None = None) -> None:
        if self.mode == "joint":  # the model after the last restored task knows every concept
            self._set_weights(self.task_weights[max(self.task_weights)] if self.task_weights else self.w_base)
            return
        if not concepts or len(concepts) != 1:
            raise ValueError("custom_diffusion_offline samples one concept per model")
        self._set_weights(self.task_weights[concepts[0]])


def token_features(model, token: str) -> torch.Tensor:
    """Text feature (1 x d) of ``token`` at its position in "a photo of <token>"."""
    ids = prompt_ids(model.tokenizer, [prompt_for(token)])[0]
    position = ids.tolist().index(model.tokenizer.convert_tokens_to_ids(token))
    with torch.no_grad():
        features = model.text_encoder(ids[None].to(model.text_encoder.device))[0][0]
    return features[position:position + 1].double().cpu()


def prompt_features(model, prompts: list[str], batch: int = 64) -> torch.Tensor:
    """Text features of every non-padding position (through the first end-of-text) of ``prompts``."""
    rows = []
    eos = model.tokenizer.eos_token_id
    for start in range(0, len(prompts), batch):
        ids = prompt_ids(model.tokenizer, prompts[start:start + batch])
        with torch.no_grad():
            features = model.text_encoder(ids.to(model.text_encoder.device))[0].cpu()
        for row_ids, row in zip(ids.tolist(), features):
            end = row_ids.index(eos, 1) if eos in row_ids[1:] else len(row_ids) - 1
            rows.append(row[:end + 1])
    return torch.cat(rows).double()


def regularization_prompts(params: dict, env) -> list[str]:
    """``regularization_prompts``: "pool" (the benchmark's generic captions, unique, sorted) or a list
    (``params``: the method's, defaults resolved)."""
    source = params["regularization_prompts"]
    count = int(params["regularization_count"])
    if source == "pool":
        path = layout.pool_dir(env.data_root, env.benchmark) / "captions.json" if env.data_root else None
        if path is None or not path.exists():
            raise PipelineError(f"{path}: no generic captions for methods.custom_diffusion_merge."
                                "regularization_prompts=pool (give a list of prompts for real data)")
        prompts = sorted(set(json.loads(path.read_text())))
    elif isinstance(source, list) and source:
        prompts = [str(p) for p in source]
    else:
        raise PipelineError("methods.custom_diffusion_merge.regularization_prompts: 'pool' or a list of prompts")
    if len(prompts) > count:  # evenly spaced, deterministic
        prompts = [prompts[round(i * (len(prompts) - 1) / (count - 1))] for i in range(count)]
    return prompts


@register
class CustomDiffusionMerge(_PerTaskFromBase):
    name = "custom_diffusion_merge"
    label = "Custom Diffusion (merge)"
    defaults = {"regularization_prompts": "pool", "regularization_count": 200, "ridge": 1e-6}

    def merged_weights(self, tasks: list[int]) -> dict[str, torch.Tensor]:
        """Custom Diffusion's constrained merge of the restored tasks' weights (module docstring), solved
        on the CPU in float64 whatever the model's device."""
        reg = prompt_features(self.model, regularization_prompts(self.params, self.env))
        rows = {t: token_features(self.model, concept_token(t)) for t in tasks}
        ridge = float(self.params["ridge"])
        return {
            name: kv_merge.constrained_merge(self.w_base[name].cpu(), reg,
                                             [(self.task_weights[t][name].cpu(), rows[t]) for t in tasks], ridge)
            for name in self.linears
        }

    def prepare_inference(self, concepts: list[int] | None = None) -> None:
        tasks = sorted(self.task_weights)
        self._set_weights(self.merged_weights(tasks) if tasks else self.w_base)
