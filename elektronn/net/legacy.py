"""Importer for the original ELEKTRONN 1.x ``.param`` files (consecutive pickle records).

Not available yet: the importer that reads these files through a restricted unpickler is
being built. Until then, loading such a file raises a clear error.
"""

__all__ = ['read_legacy_param_file']


def read_legacy_param_file(path):
    raise NotImplementedError('%r is a legacy ELEKTRONN 1.x .param file (a pickle stream); this version cannot '
                              'import those yet. Save the parameters from the original in a new format or wait '
                              'for the legacy importer.' % (path,))
