"""Workspaces own sources (write keys), admin tokens and all data."""

from cairn.workspaces.service import (
    DEFAULT_WORKSPACE,
    Bootstrap,
    SourceCache,
    authenticate,
    bootstrap,
    create_source,
    create_token,
    new_identity_secret,
    resolve_workspace,
)

__all__ = [
    "DEFAULT_WORKSPACE",
    "Bootstrap",
    "SourceCache",
    "authenticate",
    "bootstrap",
    "create_source",
    "create_token",
    "new_identity_secret",
    "resolve_workspace",
]
