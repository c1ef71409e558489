"""The ``esan-train`` subcommands: one module each, holding ``NAME``, ``HELP``, ``add_args(parser)`` and
``HANDLER`` (``"module:function"``, imported only when the command runs, so these modules import no torch).
``esan.train.cli`` lists them.
"""
