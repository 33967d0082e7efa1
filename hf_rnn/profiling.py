"""How many times a piece of code reads a device value on the host: each such read (`bool(t)`, `t.item()`,
`t.tolist()`, `int(t)`, `torch.equal`) waits for every kernel queued before it, and a small recurrent model on a GPU
is bound by how fast it launches kernels. `tests/test_hot_path.py` and `bench/hot_path.py` count them; so can a user
profiling a training step."""

import contextlib
from collections.abc import Iterator

import torch

HOST_READS = ("__bool__", "item", "tolist", "__int__", "__float__", "__index__")


@contextlib.contextmanager
def count_host_reads() -> Iterator[list[str]]:
    """Within the block, the name of each host read of a tensor's values, in order (also of CPU tensors, which on a
    GPU would be device values: counted on any machine alike). Not thread-safe: it patches `torch.Tensor`."""
    calls: list[str] = []
    originals = {(torch.Tensor, name): getattr(torch.Tensor, name) for name in HOST_READS}
    originals[(torch, "equal")] = torch.equal

    def counting(name, original):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)

        return wrapper

    for (owner, name), original in originals.items():
        setattr(owner, name, counting(name, original))
    try:
        yield calls
    finally:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)


__all__ = ["count_host_reads"]
