"""A chain's model after task t: the base model plus what tasks 1..t saved (``end_task`` tensors and tokens).

Folder of one finished task (``runs/<profile>/<benchmark>/<method>/seed_<s>/task_XX/``, ``utils/layout.py``):
  task.safetensors   ``method.<name>`` tensors from the method's ``end_task`` and ``token.row``
                     (the learned embedding of V*_t)
  config.json        the resolved configuration of the job (method, train, model source, task)
  log.json           per-step log of every loss term
  metrics.json       per-task numbers (e.g. ||A_t B_t||, steps, wall time)
Training task t (``stages/train.py``) and evaluating after task t (``stages/evaluate.py``) both start here.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from continual_diffusion.core.training import Model
from continual_diffusion.models.base_folder import load_base
from continual_diffusion.models.tokens import concept_token, set_concept_token
from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.layout import TASK_FILE, task_dir
from continual_diffusion.utils.runtime import CPU_FP32, Runtime, prepare_device


def build_model(base: Path, runtime: Runtime = CPU_FP32) -> Model:
    """The base model's components on ``runtime``'s device, every weight in fp32 (runtime.py)."""
    pipe = load_base(base)
    if runtime.device.type != "cpu":
        prepare_device(runtime)
        for part in (pipe.text_encoder, pipe.vae, pipe.unet):
            part.to(runtime.device)
    return Model(pipe.tokenizer, pipe.text_encoder, pipe.vae, pipe.unet, pipe.scheduler, runtime)


def restore_chain(model: Model, method, runs: Path, upto: int) -> list[int]:
    """Apply the saved tasks 1..upto of ``method`` to ``model``; returns the concept token ids."""
    token_ids = []
    for task in range(1, upto + 1):
        path = task_dir(runs, task) / TASK_FILE
        if not path.exists():
            raise PipelineError(f"{path}: earlier task missing (run task {task} of this chain first)")
        tensors = load_file(str(path))
        method.restore_task(task, {k.removeprefix("method."): v for k, v in tensors.items() if k.startswith("method.")})
        token_ids.append(set_concept_token(model.tokenizer, model.text_encoder, concept_token(task), tensors["token.row"]))
    return token_ids
