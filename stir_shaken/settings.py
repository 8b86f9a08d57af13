"""Configuration models of signing and verification (owned by stir_shaken).

Placeholder shapes: the MAN work fills these in; proxy.config composes them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SigningSettings(BaseModel):
    """The `signing:` section: the authentication service."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TrunkVerification(BaseModel):
    """A trunk's `verification:` section: the verification service for calls from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
