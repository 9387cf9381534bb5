"""The base of every profile table: unknown keys are errors and values are immutable once read.

It lives apart from config.py so that settings models elsewhere (aws/settings.py, userdata.py) can
share it without importing config, which imports them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
