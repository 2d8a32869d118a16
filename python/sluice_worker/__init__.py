"""Sluice's scoring-script worker.

Runs a user's Azure ML ``score.py`` inside the deployment's own Python environment and answers
requests from its Rust replica over one Unix socket. Standard library only; see README.md in this
folder for the wire protocol, exit codes and environment variables.
"""

__version__ = "0.1.0"
