"""`tollgate`: a command-line client for any Tollgate installation, speaking only its public HTTP APIs
(`/v1` and the management API under `/api/v1`). It imports nothing from the server's code."""

__version__ = "0.1.0"
