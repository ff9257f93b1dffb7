"""authbench: sessions in a shared store or stateless JWTs, measured.

This package holds what the services share (config, Redis client, credential formats and
verification, errors, metrics) and the `authbench` command line.
"""

__version__ = "0.1.0"
