"""Character-level word features for the recurrent taggers (Lample et al. 2016; Ma & Hovy 2016).

Shipped inside checkpoints with the modeling files, so it imports only torch and its flat siblings.
"""

import torch
from torch import nn

from .configuration_rnn import RnnConfig
from .dropout import SequenceDropout
from .masking import MaskCompaction, check_ids, is_tracing


class CharEncoder(nn.Module):
    """Spells each word out and summarises it in one vector: the two final states of a character BiLSTM
    (`config.char_encoder="lstm"`, Lample et al.) or a character CNN max-pooled over the word (`"cnn"`, Ma & Hovy).

    Word-level vocabularies map rare and unseen words to `<unk>`; their characters still tell case, digits, affixes.
    """

    def __init__(self, config: RnnConfig):
        super().__init__()
        self.embeddings = nn.Embedding(config.char_vocab_size, config.char_embedding_size, padding_idx=0)
        self.dropout = SequenceDropout(config.embedding_dropout, config.locked_dropout)  # locked: per word
        self.kind = config.char_encoder
        if self.kind == "lstm":
            self.directions = nn.ModuleList(
                nn.LSTM(config.char_embedding_size, config.char_hidden_size, batch_first=True) for _ in range(2)
            )
        else:
            kernel = config.char_kernel_size
            self.conv = nn.Conv1d(config.char_embedding_size, config.char_hidden_size, kernel, padding=kernel // 2)
        self.feature_size = config.char_feature_size

    def forward(self, char_ids: torch.LongTensor) -> torch.Tensor:
        """char_ids (B, T, L), 0 = padding, each word's characters at the left -> features (B, T, F), 0 where a
        position has no characters (padding, special tokens).

        Each distinct spelling in the batch is encoded once (in running text about half the words repeat: "the",
        ",", "."). Its occurrences share one dropout draw; otherwise features and gradients equal word-by-word ones.
        """
        size = self.embeddings.num_embeddings
        char_ids = check_ids(char_ids, size, "char_ids", f"holds a character id outside [0, char_vocab_size={size})")
        lengths = (char_ids != 0).sum(-1)  # (B, T)
        is_word = lengths > 0  # (B, T)
        features = char_ids.new_zeros(*char_ids.shape[:2], self.feature_size, dtype=self.embeddings.weight.dtype)
        if is_tracing():  # shapes must not depend on values: every position, full width, empty words zeroed
            summary = self.summarise(char_ids.flatten(0, 1)).view_as(features)  # (B, T, F)
            return torch.where(is_word.unsqueeze(-1), summary.to(features.dtype), 0.0)
        if not bool(is_word.any()):
            return features
        words = char_ids[is_word][:, : int(lengths.max())]  # (N, L') real words, as wide as the longest
        spellings, occurrence = torch.unique(words, dim=0, return_inverse=True)  # (U, L'), (N,)
        features[is_word] = self.summarise(spellings)[occurrence].to(features.dtype)
        return features

    def summarise(self, ids: torch.LongTensor) -> torch.Tensor:
        """ids (N, L), each word's characters at the left, 0 = padding -> (N, F)."""
        real = ids != 0  # (N, L)
        x = self.dropout(self.embeddings(ids))  # (N, L, E_c)
        if self.kind == "lstm":
            last = (real.sum(-1) - 1).clamp(min=0)  # (N,) each direction's final state sits at its last real step
            rows = torch.arange(ids.size(0), device=ids.device)
            left_to_right = self.directions[0](x)[0][rows, last]  # (N, H_c)
            right_to_left = self.directions[1](MaskCompaction(real).reversed(x))[0][rows, last]  # (N, H_c)
            return torch.cat([left_to_right, right_to_left], dim=-1)  # (N, 2 H_c)
        filters = self.conv(x.transpose(1, 2))  # (N, F, L)
        return filters.masked_fill(~real.unsqueeze(1), torch.finfo(filters.dtype).min).amax(-1)  # (N, F)


__all__ = ["CharEncoder"]
