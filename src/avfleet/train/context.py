"""The distributed run context, read once from torchrun's environment at the entry point."""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class RunContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    restart_count: int = 0
    """How often torchrun restarted the group (TORCHELASTIC_RESTART_COUNT)."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> RunContext:
        env = dict(os.environ if env is None else env)
        return cls(
            rank=int(env.get("RANK", 0)),
            world_size=int(env.get("WORLD_SIZE", 1)),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            restart_count=int(env.get("TORCHELASTIC_RESTART_COUNT", 0)),
        )

    @property
    def distributed(self) -> bool:
        return self.world_size > 1
