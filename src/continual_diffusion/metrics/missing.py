"""How a score that is undefined for a concept is recorded in ``scores.json``: ``key: null`` beside
``key_missing: <reason>`` (e.g. no face detected in any real image of the concept)."""

MISSING_SUFFIX = "_missing"


def missing_key(key: str) -> str:
    """The scores.json key holding why ``key`` is undefined for a concept (beside ``key: null``)."""
    return f"{key}{MISSING_SUFFIX}"
