"""utils/seeds.py: every seed formula returns the numbers it returned before it moved there, and the
streams of different purposes never share a seed over the default ranges."""

import itertools

import numpy as np
import torch

from continual_diffusion.utils import seeds

# (seed, task / concept, group, index) probes, and the formulas as they were written before utils/seeds.py.
PROBES = [(0, 1, 0, 0), (0, 10, 3, 15), (1, 2, 1, 7), (2, 7, 0, 1), (9, 30, 30, 999)]


def test_task_and_token_seeds_are_the_former_formulas():
    for seed, task, _, _ in PROBES:
        assert seeds.task_seed(seed, task) == seed * 100_003 + task  # core/training.py::task_generator
        assert seeds.token_seed(seed, task) == seed * 100_003 + 50_000 + task  # stages/train.py::token_generator
    assert [seeds.task_seed(1, 2), seeds.token_seed(1, 2)] == [100_005, 150_005]


def test_image_and_generated_seeds_are_the_former_formulas():
    for seed, concept, group, index in PROBES:
        assert seeds.image_seed(seed, concept, index) == seed * 1_000_003 + concept * 10_007 + index
        assert seeds.generated_seed(seed, concept, group, index) == (
            7_000_003 + seed * 1_000_003 + concept * 100_003 + group * 1_009 + index)
    assert seeds.image_seed(2, 3, 4) == 2_030_031
    assert seeds.generated_seed(1, 2, 3, 4) == 8_203_043


def test_generators_draw_as_manual_seed():
    def draws(g):
        return torch.randn(5, generator=g)

    assert torch.equal(draws(seeds.task_generator(1, 3)), draws(torch.Generator().manual_seed(1 * 100_003 + 3)))
    assert torch.equal(draws(seeds.token_generator(1, 3)),
                       draws(torch.Generator().manual_seed(1 * 100_003 + 50_000 + 3)))
    assert torch.equal(draws(seeds.cpu_generator(7)), draws(torch.Generator().manual_seed(7)))


def test_rng_for_is_pcg64_of_the_seed_sequence():
    expected = np.random.Generator(np.random.PCG64(np.random.SeedSequence([5, 101, 2]))).integers(0, 1 << 30, 8)
    assert np.array_equal(seeds.rng_for(5, seeds.STREAM_TASK_SAMPLER, 2).integers(0, 1 << 30, 8), expected)
    assert seeds.STREAM_TASK_SAMPLER == 101  # data/tasks.py's former SAMPLER_STREAM


def test_numpy_streams_are_distinct():
    streams = [seeds.STREAM_CONCEPTS, seeds.STREAM_CONCEPT_IMAGES, seeds.STREAM_HELDOUT_IMAGES, seeds.STREAM_POOL,
               seeds.STREAM_POOL_IMAGES, seeds.STREAM_IMAGE_COUNTS, seeds.STREAM_TASK_SAMPLER]
    assert streams == [1, 2, 3, 4, 5, 6, 101]


def test_torch_streams_do_not_collide_over_the_default_ranges():
    chain_seeds, tasks, indexes = range(7), range(1, 31), range(100)
    streams = {
        "task": {seeds.task_seed(s, t) for s in chain_seeds for t in tasks},
        "token": {seeds.token_seed(s, t) for s in chain_seeds for t in tasks},
        "image": {seeds.image_seed(s, c, i) for s in chain_seeds for c in tasks for i in indexes},
        "generated": {seeds.generated_seed(s, t, g, i)
                      for s in chain_seeds for t in tasks for g in (0, *tasks) for i in indexes},
    }
    for a, b in itertools.combinations(streams, 2):
        assert not streams[a] & streams[b], (a, b)
    # image indexes up to 999 (the docstring's range), on the streams they could reach
    wide = {seeds.image_seed(s, c, i) for s in chain_seeds for c in tasks for i in range(1000)}
    assert not wide & (streams["task"] | streams["token"])


def test_each_stream_is_one_to_one_within_a_chain():
    tasks, indexes = range(1, 31), range(1000)
    for seed in (0, 3):
        image = [seeds.image_seed(seed, c, i) for c in tasks for i in indexes]
        generated = [seeds.generated_seed(seed, t, g, i) for t in tasks for g in (0, *tasks) for i in range(200)]
        assert len(set(image)) == len(image)
        assert len(set(generated)) == len(generated)
