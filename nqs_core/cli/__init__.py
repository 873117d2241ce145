"""The ``nqs`` command line: ``nqs reference …`` and ``nqs run …``."""
