"""Command-line entry points: the logic of ``tools/*.py``, which stay thin, and their shared arguments
(:mod:`skipconv_det.cli.args`).

Each tool imports its own module (``from skipconv_det.cli.train import run_train``), so a tool needs only the
libraries it uses (e.g. the classification demo needs mmpretrain, tools/train.py on a detection config does not).
``import skipconv_det`` imports none of them.
"""
