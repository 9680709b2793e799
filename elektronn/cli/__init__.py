"""The ``elektronn-*`` commands: argument parsing and exit statuses over library functions (see :doc:`/api/cli`)."""
