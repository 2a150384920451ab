"""The base of every error that a user can fix: the CLI prints its message alone, without a traceback."""


class RTrainError(Exception):
    """A problem with the config, data, model or machine; the message says what is wrong and how to fix it."""
