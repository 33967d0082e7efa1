"""Resuming an interrupted run from its last *complete* checkpoint.

A run killed while saving (SIGKILL, out of memory, a pre-empted node) leaves a `checkpoint-N` folder that
`transformers.trainer_utils.get_last_checkpoint` still picks, and resuming from it fails. `Trainer._save_checkpoint`
writes the model's files, then the optimizer, scheduler and RNG states, and `trainer_state.json` last: a checkpoint
is complete when its trainer state parses and its weights open (safetensors checks that the file holds every tensor
its header lists).
"""

import json
import logging
import re
from pathlib import Path

from safetensors import SafetensorError, safe_open
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

logger = logging.getLogger(__name__)
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def incomplete(checkpoint: str | Path) -> str | None:
    """Why `checkpoint` cannot be resumed from (its first missing or unreadable file), or None when it is complete."""
    folder = Path(checkpoint)
    try:
        json.loads((folder / TRAINER_STATE_NAME).read_text())
    except (OSError, ValueError) as error:
        return f"{TRAINER_STATE_NAME}: {error}"
    index = folder / SAFE_WEIGHTS_INDEX_NAME
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else None
    except (OSError, ValueError, KeyError) as error:
        return f"{SAFE_WEIGHTS_INDEX_NAME}: {error!r}"
    for name in shards or [SAFE_WEIGHTS_NAME]:
        try:
            with safe_open(folder / name, "pt"):
                pass
        except (OSError, SafetensorError) as error:
            return f"{name}: {error}"
    return None


def last_complete_checkpoint(folder: str | Path) -> Path | None:
    """The `checkpoint-N` in `folder` with the highest N that is complete; logs each newer one it skips."""
    for checkpoint in _checkpoints(folder):
        reason = incomplete(checkpoint)
        if reason is None:
            return checkpoint
        logger.warning("skipping %s, an interrupted save (%s)", checkpoint, reason)
    return None


def resolve_resume(value: str | None, output_dir: str) -> str | None:
    """What `--resume_from_checkpoint` names: True (any case) the last complete checkpoint in output_dir, a folder of
    `checkpoint-N` folders the last complete one there, any other folder itself (e.g. `last-checkpoint`). A checkpoint
    that is absent or incomplete is an error, raised before anything is written."""
    if value is None or value.lower() == "false":
        return None
    folder = Path(output_dir if value.lower() == "true" else value)
    if not folder.is_dir():
        raise ValueError(f"--resume_from_checkpoint {value}: no such folder")
    if value.lower() != "true" and not _checkpoints(folder):
        reason = incomplete(folder)
        if reason is not None:
            raise ValueError(f"--resume_from_checkpoint {value}: not a complete checkpoint ({reason})")
        return str(folder)
    checkpoint = last_complete_checkpoint(folder)
    if checkpoint is None:
        found = [path.name for path in _checkpoints(folder)]
        raise ValueError(f"--resume_from_checkpoint {value}: no complete checkpoint in {folder} (found {found})")
    return str(checkpoint)


def _checkpoints(folder: str | Path) -> list[Path]:
    """The `checkpoint-N` folders in `folder`, newest (highest N) first."""
    steps = {
        int(m.group(1)): path
        for path in Path(folder).iterdir()
        if (m := _CHECKPOINT.match(path.name)) and path.is_dir()
    }
    return [steps[step] for step in sorted(steps, reverse=True)]
