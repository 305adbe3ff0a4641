"""Paper-style outputs computed from files only (no model is loaded, nothing is retrained):
tables (``tables.py``), figures (``figures.py``), the reproduced-vs-reported audit (``audit.py``) and
DVC's metrics and plots files (``dvc_outputs.py``)."""

METHOD_NAMES = {
    "clora": "C-LoRA",
    "lora_sequential": "LoRA (sequential)",
    "textual_inversion": "Textual Inversion",
    "dreambooth": "DreamBooth",
    "custom_diffusion_seq": "Custom Diffusion (sequential)",
    "custom_diffusion_merge": "Custom Diffusion (merge)",
    "custom_diffusion_ewc": "Custom Diffusion + EWC",
    "generative_replay": "Deep generative replay",
    "custom_diffusion_offline": "Custom Diffusion offline (upper bound)",
}


def method_name(method: str) -> str:
    """The paper's row name of a method id (the id itself for a method added later)."""
    return METHOD_NAMES.get(method, method)
