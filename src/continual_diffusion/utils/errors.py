"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class PipelineError(Exception):
    """A user-facing failure: bad input file, bad parameter, missing weights.

    The message must fit on one line and name the offending file or parameter key.
    """
