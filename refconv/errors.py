"""refconv's error types: every one is a ValueError whose message names the problem in one line."""


class RefconvError(ValueError):
    """Bad input to refconv; the CLI prints the message alone and exits with code 2."""


class SpecError(RefconvError):
    """A case description that cannot be a convolution; the message names the field and the value."""


class UsageError(RefconvError):
    """A bad command-line argument, option or path."""
