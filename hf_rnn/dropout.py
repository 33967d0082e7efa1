"""Dropout for sequences, shared by the word and character encoders and the heads, and word dropout.

Shipped inside checkpoints with the modeling files, so it imports only torch.
"""

import torch
from torch import nn


class SequenceDropout(nn.Module):
    """Dropout over `(..., T, D)` sequences. With `locked=True` each sequence draws one mask over its features and
    every time step reuses it (locked or variational dropout: Gal & Ghahramani 2016, AWD-LSTM, flair's taggers),
    which regularises recurrent models without fresh noise at each step and draws T times fewer random numbers."""

    def __init__(self, p: float, locked: bool = False):
        super().__init__()
        self.p = p
        self.locked = locked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.locked and self.training and self.p > 0.0):
            return nn.functional.dropout(x, self.p, self.training)
        keep = 1.0 - self.p
        mask = x.new_empty(*x.shape[:-2], 1, x.size(-1)).bernoulli_(keep).div_(keep)  # (..., 1, D)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}, locked={self.locked}"


class WordDropout(nn.Module):
    """Zeroes a token's whole vector with probability `p` in training, without rescaling (flair's word dropout): the
    model learns to read a word from its context, as it must for words it has never seen."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.p > 0.0):
            return x
        return x * x.new_empty(*x.shape[:-1], 1).bernoulli_(1.0 - self.p)  # (..., T, 1) one draw per token

    def extra_repr(self) -> str:
        return f"p={self.p}"


__all__ = ["SequenceDropout", "WordDropout"]
