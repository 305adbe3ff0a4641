"""Paper-style outputs computed from files only (no model is loaded, nothing is retrained):
tables (``tables.py``), figures (``figures.py``), the reproduced-vs-reported audit (``audit.py``) and
DVC's metrics and plots files (``dvc_outputs.py``)."""


def method_name(method: str) -> str:
    """The paper's row name of a method id: its class's ``label`` (``methods.METHODS``; the id itself for a
    method with no label or no class)."""
    from continual_diffusion.methods import method_label  # the registry (imports torch): only when a label is asked

    return method_label(method)
