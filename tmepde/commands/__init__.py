"""The subcommands of ``tmepde``, one module per verb.

Every module in this package is imported by :func:`tmepde.cli.build_parser` and registers its
command(s) with :func:`tmepde.cli.register` at import time, so adding a command is adding a file
here (no edit of ``cli.py``). Keep module-level imports light: import JAX and friends inside the
command's run function so ``tmepde --help`` stays fast.
"""
