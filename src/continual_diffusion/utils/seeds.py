"""Seed derivation: the one place where a random stream's seed is computed from (seed, task, ...).

Every random draw of the pipeline comes from a generator seeded here, never from a global RNG, so a
job gives the same bits whatever ran before it in the process (warm workers) and whichever batch an
image falls in. Two families:

* torch CPU generators (``torch.Generator().manual_seed(n)``) for the training chain and sampling,
  seeded with an integer ``n`` derived from the chain's seed (``seeds:`` in params.yaml) by a formula
  with a distinct prime stride per stream:

  ==================  ===============================================================  =============================
  stream              seed formula                                                     feeds
  ==================  ===============================================================  =============================
  ``task_seed``       ``seed * 100_003 + task``                                        training of task ``task``:
                                                                                       noise, timesteps, minibatches
  ``token_seed``      ``seed * 100_003 + 50_000 + task``                               the initial embedding row of
                                                                                       concept token <v_task>
  ``image_seed``      ``seed * 1_000_003 + concept * 10_007 + index``                  evaluation sample ``index``
                                                                                       of concept ``concept``
  ``generated_seed``  ``7_000_003 + seed * 1_000_003 + task * 100_003 + group * 1_009  generated image ``index`` of
                      + index``                                                        ``group`` at ``task``
  ==================  ===============================================================  =============================

  Why they do not collide over the default ranges (seeds 0..6, tasks, concepts and groups up to 30,
  indexes below 1_000; ``tests/utils/test_seeds.py`` checks it): the two training streams share the
  stride 100_003 per seed, one offset by 50_000 (tasks never reach it); the image stream strides 10_007
  per concept, so its values fall between the training streams' short runs (for seed 0: tasks 1..30 and
  50_001..50_030 against concept 4's 40_028..41_027 and concept 5's 50_035..), and one seed's images stay
  below the next seed's stride; the generated stream starts 7_000_003 above the image stream of the same
  seed and strides 100_003 per task. Outside these ranges numbers can repeat: the token stream meets
  concept 5's images from task 35 on, the image stream of seed s + 7 meets the generated stream of seed s,
  and the generated streams of two seeds meet from task 11 on (10 * 100_003 is 27 away from 1_000_003).
  Within one chain (one seed) every stream is one-to-one. The formulas stay as they are: a change would
  change every result.

* numpy PCG64 generators (``rng_for``) for the data: the synthetic renders and the task sampler,
  seeded by a ``numpy.random.SeedSequence`` of an integer path ``(root_seed, stream, ...)``. The
  stream number (``STREAM_*`` below) is part of the path, so two streams never share a draw, and any
  image can be re-rendered on its own on any machine.

Seeds given as they are in params (the identity evaluator's ``evaluator.seed``, the pre-training
phases' ``seed``, the base model's pool subset) use ``cpu_generator`` directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a generator is made: importing this module stays cheap (Snakefile, CLI)
    import numpy as np
    import torch

# numpy streams of the data (path element 2 of ``rng_for``): separate random sequences, never sharing a draw.
STREAM_CONCEPTS = 1  # identities of the concept pool (the stand-in for CelebA-HQ / GLDv2)
STREAM_CONCEPT_IMAGES = 2  # training images of those identities
STREAM_HELDOUT_IMAGES = 3  # fresh held-out renders (evaluator training), never training images
STREAM_POOL = 4  # generic pre-training identities
STREAM_POOL_IMAGES = 5  # images of the generic identities
STREAM_IMAGE_COUNTS = 6  # how many images each pool concept has
STREAM_TASK_SAMPLER = 101  # the task sequence: which concepts, in which order, which images (data/tasks.py)


def rng_for(*path: int) -> np.random.Generator:
    """A PCG64 generator determined only by the integer path (platform independent):
    ``PCG64(SeedSequence(path))``. Paths start ``(root_seed, STREAM_*, ...)``."""
    import numpy as np

    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(p) for p in path])))


def cpu_generator(seed: int) -> torch.Generator:
    """``torch.Generator().manual_seed(seed)``: a CPU generator (the same draws on every device)."""
    import torch

    return torch.Generator().manual_seed(int(seed))


def task_seed(seed: int, task: int) -> int:
    """``seed * 100_003 + task``: the stream of training task ``task`` of chain ``seed`` (noise, timesteps,
    minibatches of ``core/training.py::train_task`` and what the methods draw from its generator)."""
    return seed * 100_003 + task


def task_generator(seed: int, task: int) -> torch.Generator:
    """The CPU generator of ``task_seed(seed, task)``."""
    return cpu_generator(task_seed(seed, task))


def token_seed(seed: int, task: int) -> int:
    """``seed * 100_003 + 50_000 + task``: the initial embedding row of concept token <v_task>
    (``stages/train.py``); offset by 50_000 from ``task_seed`` within the same per-seed stride."""
    return seed * 100_003 + 50_000 + task


def token_generator(seed: int, task: int) -> torch.Generator:
    """The CPU generator of ``token_seed(seed, task)``."""
    return cpu_generator(token_seed(seed, task))


def image_seed(seed: int, concept: int, index: int) -> int:
    """``seed * 1_000_003 + concept * 10_007 + index``: the initial noise of evaluation sample ``index``
    of concept ``concept`` (``core/sampling.py::generate``), independent of the batch it is drawn in."""
    return seed * 1_000_003 + concept * 10_007 + index


def generated_seed(seed: int, task: int, group: int, index: int) -> int:
    """``7_000_003 + seed * 1_000_003 + task * 100_003 + group * 1_009 + index``: the initial noise of
    generated image ``index`` of ``group`` (a concept, or 0 for a class prompt) at training task ``task``
    (``methods/generated.py``: generative replay, DreamBooth prior preservation)."""
    return 7_000_003 + seed * 1_000_003 + task * 100_003 + group * 1_009 + index
