"""The shared core every method runs through: the training loop (``training``) and sampling (``sampling``)."""
