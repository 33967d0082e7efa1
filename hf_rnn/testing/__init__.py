"""Testing utilities for users' own tests: `LoopbackHub`, a Hub-compatible server on 127.0.0.1 that the real
`huggingface_hub` client pushes to and loads from. Not shipped with checkpoints."""

from .loopback_hub import LoopbackHub

__all__ = ["LoopbackHub"]
