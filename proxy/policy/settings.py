"""Configuration models of the caller-ID policy (owned by proxy.policy).

Placeholder shapes: the policy work fills these in; proxy.config composes them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SourcePolicy(BaseModel):
    """What the policy needs to know about one source (PBX, dialer, SMS platform)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicySettings(BaseModel):
    """The `policy:` section of the configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)
