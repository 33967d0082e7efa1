"""Resuming an interrupted run from its last *complete* checkpoint.

A run killed while saving (SIGKILL, out of memory, a pre-empted node) leaves a `checkpoint-N` folder that
`transformers.trainer_utils.get_last_checkpoint` still picks. `Trainer.train(resume_from_checkpoint=...)` then fails
with a message naming no file, or, where a file it reads only when present is missing (`optimizer.pt`,
`scheduler.pt`, `rng_state.pth`), resumes silently with a fresh optimizer, schedule or random state: the run no
longer ends as the uninterrupted one would. A checkpoint is complete when every file the resume reads is there and
readable (`incomplete`): `trainer_state.json` (written last by `Trainer._save_checkpoint`) with a step count,
`config.json`, the weights (every tensor its header lists, all finite), and the optimizer, scheduler and RNG states.
"""

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers.trainer import OPTIMIZER_NAME, SCALER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState
from transformers.trainer_pt_utils import safe_globals
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

logger = logging.getLogger(__name__)
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
# one per process: rng_state.pth, or rng_state_{rank}.pth from a multi-process run
_RNG_STATES = "rng_state*.pth"


def incomplete(checkpoint: str | Path) -> str | None:
    """Why `checkpoint` cannot be resumed from (its first missing or unreadable file, and what is wrong with it), or
    None when it is complete."""
    folder = Path(checkpoint)
    checks: tuple[Callable[[Path], str | None], ...] = (_trainer_state, _config, _weights, _training_states)
    return next((reason for check in checks if (reason := check(folder)) is not None), None)


def _trainer_state(folder: Path) -> str | None:
    """trainer_state.json: a `TrainerState` whose `global_step` counts the steps taken (a checkpoint is saved after
    one; `checkpoint-N` after step N)."""
    try:
        state = json.loads((folder / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{TRAINER_STATE_NAME}: missing"
    except (OSError, ValueError) as error:
        return f"{TRAINER_STATE_NAME}: unreadable ({error})"
    if not isinstance(state, dict) or "global_step" not in state:
        return f"{TRAINER_STATE_NAME}: no global_step in {str(state)[:80]}"
    try:
        TrainerState(**state)
    except TypeError as error:
        return f"{TRAINER_STATE_NAME}: not a trainer state ({error})"
    step, numbered = state["global_step"], _CHECKPOINT.match(folder.name)
    if type(step) is not int or step < 1 or (numbered and step != int(numbered.group(1))):
        expected = f"{numbered.group(1)}, as its folder's name says" if numbered else "a count of the steps taken"
        return f"{TRAINER_STATE_NAME}: global_step {step!r}, not {expected}"
    return None


def _config(folder: Path) -> str | None:
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{CONFIG_NAME}: missing"
    except (OSError, ValueError) as error:
        return f"{CONFIG_NAME}: unreadable ({error})"
    return None if isinstance(config, dict) else f"{CONFIG_NAME}: not a JSON object"


def _weights(folder: Path) -> str | None:
    """The safetensors file, or every shard its index names: each tensor its header lists is there and finite
    (NaN weights would resume into NaN losses)."""
    index = folder / SAFE_WEIGHTS_INDEX_NAME
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return f"{SAFE_WEIGHTS_INDEX_NAME}: unreadable ({error!r})"
    for name in shards or [SAFE_WEIGHTS_NAME]:
        try:
            with safe_open(folder / name, "pt") as weights:
                for key in weights.keys():  # noqa: SIM118 (safe_open is no mapping)
                    if not _finite(weights.get_tensor(key)):
                        return f"{name}: {key} holds NaN or infinite values"
        except FileNotFoundError:
            return f"{name}: missing"
        except (OSError, SafetensorError) as error:
            return f"{name}: unreadable ({error})"
    return None


def _training_states(folder: Path) -> str | None:
    """The optimizer and scheduler states (the Trainer loads them only when both are there, otherwise it resumes
    with fresh ones), the random state(s), and the gradient scaler's where saved: each a dict that torch loads."""
    for name in (OPTIMIZER_NAME, SCHEDULER_NAME):
        if not (folder / name).is_file():
            only_model = " (as in a --save_only_model checkpoint: --model_name_or_path starts a new run from one)"
            return f"{name}: missing{only_model if name == OPTIMIZER_NAME else ''}"
    rng_states = sorted(folder.glob(_RNG_STATES))
    if not rng_states:
        return "rng_state.pth: missing"
    scaler = [folder / SCALER_NAME] if (folder / SCALER_NAME).exists() else []
    for path in (folder / OPTIMIZER_NAME, folder / SCHEDULER_NAME, *scaler, *rng_states):
        try:
            with safe_globals():  # numpy's random state, as the Trainer loads it
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as error:  # torch.load raises RuntimeError, EOFError, UnpicklingError, ... on a bad file
            return f"{path.name}: unreadable ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
        if not isinstance(state, dict) or not state:
            return f"{path.name}: holds {state!r:.80}, not a saved state"
        if path.name == OPTIMIZER_NAME:
            if not isinstance(state.get("state"), dict) or "param_groups" not in state:
                return f"{path.name}: not an optimizer's state (keys {sorted(state)})"
            moments = [value for slot in state["state"].values() for value in slot.values()]
            if not all(_finite(value) for value in moments if isinstance(value, torch.Tensor)):
                return f"{path.name}: the optimizer's state holds NaN or infinite values"
    return None


def _finite(tensor: torch.Tensor) -> bool:
    return not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())


def last_complete_checkpoint(folder: str | Path) -> Path | None:
    """The `checkpoint-N` in `folder` with the highest N that is complete; logs each newer one it skips."""
    for checkpoint in checkpoints(folder):
        reason = incomplete(checkpoint)
        if reason is None:
            return checkpoint
        logger.warning("skipping %s, not a complete checkpoint (%s)", checkpoint, reason)
    return None


def resolve_resume(value: str | None, output_dir: str) -> str | None:
    """What `--resume_from_checkpoint` names: True (any case) the last complete checkpoint in output_dir, a folder of
    `checkpoint-N` folders the last complete one there, any other folder itself (e.g. `last-checkpoint`). A checkpoint
    that is absent or incomplete is an error, raised before anything is written."""
    if value is None or value.lower() == "false":
        return None
    folder = Path(output_dir if value.lower() == "true" else value)
    if not folder.is_dir():
        raise ValueError(f"--resume_from_checkpoint {value}: no such folder {folder}")
    if value.lower() != "true" and not checkpoints(folder):
        reason = incomplete(folder)
        if reason is not None:
            raise ValueError(f"--resume_from_checkpoint {value}: not a complete checkpoint ({reason})")
        return str(folder)
    checkpoint = last_complete_checkpoint(folder)
    if checkpoint is None:
        found = [path.name for path in checkpoints(folder)]
        raise ValueError(f"--resume_from_checkpoint {value}: no complete checkpoint in {folder} (found {found})")
    return str(checkpoint)


def checkpoints(folder: str | Path) -> list[Path]:
    """The `checkpoint-N` folders in `folder`, newest (highest N) first."""
    steps = {
        int(m.group(1)): path
        for path in Path(folder).iterdir()
        if (m := _CHECKPOINT.match(path.name)) and path.is_dir()
    }
    return [steps[step] for step in sorted(steps, reverse=True)]
