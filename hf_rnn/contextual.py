"""Contextual string embeddings (Akbik et al. 2018; flair's `FlairEmbeddings`): word features read from the states of
character language models run over the whole sentence, so that a word's vector depends on its context.

Shipped inside checkpoints with the modeling files, so it imports only torch and its flat siblings.
"""

import torch
from torch import nn

from .masking import MaskCompaction, check_ids, is_tracing

CACHE_BYTES = 2**32  # default bound of the frozen-feature cache (4 GiB of CPU memory)
LM_SPECIALS = ("<pad>", "<unk>", " ", "\n")  # what the spelling needs in an LM's vocabulary


class LmSpelling:
    """How `RnnTokenizerFast` writes a sentence for the LMs (`lm_char_vocab`: the LM tokenizer's tokens in id order,
    as `build_char_tokenizer` makes them): every token with characters as their ids followed by the id of a space,
    the sentence's first word preceded by a newline's (the line break the LM saw before each line of its corpus),
    characters the LM never saw as `<unk>`. Words are not cut: each token's ids are as long as it needs (`widen` pads
    them to a batch's widest with `<pad>`, for tensors)."""

    def __init__(self, lm_char_vocab: list[str]):
        vocab = lm_char_vocab
        if (
            not isinstance(vocab, list)
            or any(not isinstance(t, str) or not t for t in vocab)
            or len(set(vocab)) != len(vocab)
        ):
            raise ValueError("RnnTokenizerFast.lm_char_vocab must list an LM's distinct tokens in id order")
        missing = [token for token in LM_SPECIALS if token not in vocab]
        if missing:
            raise ValueError(f"RnnTokenizerFast.lm_char_vocab lacks {missing}: is it a character LM's vocabulary?")
        self.to_id = {token: index for index, token in enumerate(vocab)}
        self.pad_id, self.unk_id, self.space_id, self.newline_id = (self.to_id[token] for token in LM_SPECIALS)

    def spell(self, rows: list[list[str | None]]) -> list[list[list[int]]]:
        """Each row's tokens (None: a token without characters, e.g. a special one) -> their LM ids."""
        spelled = []
        for tokens in rows:
            ids, started = [], False
            for token in tokens:
                if token is None:
                    ids.append([])
                    continue
                ids.append([self.newline_id] * (not started) + [self.to_id.get(c, self.unk_id) for c in token])
                ids[-1].append(self.space_id)
                started = True
            spelled.append(ids)
        return spelled

    def widen(self, rows: list[list[list[int]]]) -> list[list[list[int]]]:
        """Every token padded to the widest of all rows (at least 1)."""
        width = max((len(token) for row in rows for token in row), default=1) or 1
        return [[token + [self.pad_id] * (width - len(token)) for token in row] for row in rows]


class ContextualStringEmbeddings(nn.Module):
    """The states of a forward and/or a backward character LM at each word's boundaries, as flair reads them.

    The tokenizer (`RnnTokenizerFast` with `lm_char_vocab`) spells every word as its characters followed by a space,
    the sentence's first word preceded by a newline, so the forward LM reads flair's `"\\n" + text + " "` (the words
    joined by single spaces, `tokenized_lm=True`) and the backward LM `"\\n" + text[::-1] + " "`. A word's features are
    the forward state at the space after it and the backward state at the space (for the first word: the closing
    marker) before it, i.e. after the LM has read the whole word: flair's default `with_whitespace=True` and the
    paper's h^f_{t_{i+1}-1}, h^b_{t_i-1}. flair runs one RNN pass per chunk of 512 characters; here each sentence is
    one pass (the recurrence is the same), and padding never reaches the LMs' reads (the stream is compacted).

    Frozen LMs (`fine_tune=False`, flair's default) stay in eval mode and run without gradients; in training each
    sentence's features are kept on the CPU, keyed by its characters and word boundaries, and reused in later epochs
    (flair's embedding storage), up to `cache_bytes` (then new sentences are computed each time). The cache is not
    saved and is emptied when weights are loaded.
    """

    def __init__(self, language_models: dict[str, nn.Module], fine_tune: bool):
        """`language_models`: the LMs' encoders (`RnnModel`s) by config field, `forward_lm` and/or `backward_lm`."""
        super().__init__()
        self.forward_lm = language_models.get("forward_lm")
        self.backward_lm = language_models.get("backward_lm")
        self.fine_tune = fine_tune
        lm = next(iter(language_models.values())).config  # both read the same characters (RnnConfig checks)
        self.pad_token_id, self.vocab_size = lm.pad_token_id, lm.vocab_size
        self.feature_size = sum(lm.config.output_size for lm in language_models.values())
        self.cache: dict[tuple[bytes, bytes], torch.Tensor] = {}
        self.cache_bytes = CACHE_BYTES
        self._cached_bytes = 0
        self.train()

    @property
    def language_models(self) -> list[nn.Module]:
        return [lm for lm in (self.forward_lm, self.backward_lm) if lm is not None]

    def train(self, mode: bool = True) -> "ContextualStringEmbeddings":
        """Frozen LMs stay in eval mode (no dropout: their features are a fixed function of the text) and without
        gradients, also after `from_pretrained`, whose loading makes every weight trainable before it calls `eval()`."""
        super().train(mode)
        if not self.fine_tune:
            self.requires_grad_(False)
            for lm in self.language_models:
                lm.eval()
        return self

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self.cache.clear()  # features of the old weights
        self._cached_bytes = 0
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, lm_char_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """lm_char_ids (B, T, W): each token's LM character ids (`pad_token_id` = padding) -> features (B, T, F),
        zero for tokens without characters (padding)."""
        problem = f"is not an LM character id in [0, {self.vocab_size}): was lm_char_vocab the LMs' vocabulary?"
        check_ids(lm_char_ids, self.vocab_size, "lm_char_ids", problem)
        chars = lm_char_ids != self.pad_token_id  # (B, T, W)
        if attention_mask is not None:
            chars &= attention_mask.bool().unsqueeze(-1)
        if self.fine_tune or not self.training or is_tracing():
            return self.features(lm_char_ids, chars)
        return self._cached_features(lm_char_ids, chars)

    def features(self, lm_char_ids: torch.LongTensor, chars: torch.Tensor) -> torch.Tensor:
        """The LMs over each row's characters, read at the word boundaries: (B, T, W) -> (B, T, F)."""
        widths = chars.sum(-1)  # (B, T) characters of each token: ["\n"] word " "
        stream = MaskCompaction(chars.flatten(1))
        text, mask = stream.compact(lm_char_ids.flatten(1)), stream.compact_mask  # (B, T*W), each row's at the left
        if not is_tracing():  # (traced shapes may not depend on values: then the LMs read the full width)
            longest = max(int(stream.lengths.max()), 1)
            text, mask = text[:, :longest], mask[:, :longest]
        length = stream.lengths.unsqueeze(1)  # (B, 1)
        after = widths.cumsum(1) - 1  # (B, T) stream position of the space after each word
        before = (after - widths).clamp(min=0)  # ... of the character before it (the first word's: the "\n")
        features = []
        with torch.set_grad_enabled(self.fine_tune and torch.is_grad_enabled()):
            if self.forward_lm is not None:
                states = self.forward_lm(input_ids=text, attention_mask=mask, use_cache=False).last_hidden_state
                features.append(_read(states, after))  # (B, T, H_f)
            if self.backward_lm is not None:
                positions = torch.arange(text.size(1), device=text.device).expand_as(text)  # (B, N)
                inside = (positions > 0) & (positions < length - 1)
                backward = text.gather(1, torch.where(inside, length - 1 - positions, positions))  # markers stay
                states = self.backward_lm(input_ids=backward, attention_mask=mask, use_cache=False).last_hidden_state
                features.append(_read(states, length - 1 - before))  # (B, T, H_b), the same stream read backwards
        return torch.cat(features, dim=-1) * (widths > 0).unsqueeze(-1)  # (B, T, F)

    def _cached_features(self, lm_char_ids: torch.LongTensor, chars: torch.Tensor) -> torch.Tensor:
        """`features`, computed only for the rows whose characters and word boundaries are not cached yet."""
        words = chars.any(-1)  # (B, T) the tokens with characters
        ids, mask, widths = lm_char_ids.cpu(), chars.cpu(), chars.sum(-1).cpu()
        keys = [
            (ids[b][mask[b]].numpy().tobytes(), widths[b][widths[b] > 0].numpy().tobytes()) for b in range(len(ids))
        ]
        found = {b: self.cache[key] for b, key in enumerate(keys) if key in self.cache}
        missing = [b for b in range(len(keys)) if b not in found]
        if missing:
            computed = self.features(lm_char_ids[missing], chars[missing])  # (M, T, F)
            for row, b in enumerate(missing):
                found[b] = computed[row][words[b]]  # (n_b, F)
                size = found[b].numel() * found[b].element_size()
                if self._cached_bytes + size <= self.cache_bytes:
                    self.cache[keys[b]] = found[b].cpu()
                    self._cached_bytes += size
        dtype = next(iter(found.values())).dtype if found else torch.get_default_dtype()
        features = torch.zeros(*words.shape, self.feature_size, dtype=dtype, device=lm_char_ids.device)
        for b, rows in found.items():
            features[b][words[b]] = rows.to(features.device)
        return features


def _read(states: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """states (B, N, H) at positions (B, T), clamped into the stream (padding tokens read anything) -> (B, T, H)."""
    index = positions.clamp(0, states.size(1) - 1).unsqueeze(-1).expand(-1, -1, states.size(-1))
    return states.gather(1, index)


__all__ = ["ContextualStringEmbeddings", "LmSpelling"]
