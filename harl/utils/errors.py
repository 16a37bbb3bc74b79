"""Errors the command line reports in one line: the bottom of the import graph, so that any
module can raise them without importing the configuration machinery."""


class ConfigError(ValueError):
    """A configuration problem the user can fix (unknown key, wrong type, missing file)."""
