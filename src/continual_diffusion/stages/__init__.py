"""The pipeline's stages, one module each, in the order data flows through them.

  prepare_data        data/<profile>/            task sequences and the generic pool  (``cdiff sample-tasks``, ``generic-pool``)
  base_model          models/<profile>/base      the frozen base model                (``cdiff base-model``, ``pretrain-base``)
  identity_evaluator  models/<profile>/evaluator the identity classifier / extractor check (``cdiff identity-evaluator``)
  train               runs/<profile>/            one task of one chain                 (``cdiff train-task``)
  evaluate            results/<profile>/         sample and score after every task     (``cdiff evaluate-task``)
  report/             reports/<profile>/         matrices, summary, grids, tables, figures, audit, DVC outputs
  export              reports/<profile>/export   LoRA-type chains for stock diffusers   (``cdiff export``)

Each module is what its CLI subcommand (``cli.py``) runs and what its rule file (``workflow/rules/``)
schedules. Stages use the core (``core/``: training loop, sampling), the method and metric plugins,
models and data, and the utilities; nothing below this layer imports a stage (``tests/test_layers.py``).
"""
