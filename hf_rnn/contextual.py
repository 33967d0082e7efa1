"""Contextual string embeddings (Akbik et al. 2018; flair's `FlairEmbeddings`): word features read from the states of
character language models run over the whole sentence, so that a word's vector depends on its context.

With `config.contextual_pooling`, pooled contextual string embeddings (Akbik et al. 2019; flair's
`PooledFlairEmbeddings`): a `WordMemory` of every word's features across the texts seen, pooled and appended.

Shipped inside checkpoints with the modeling files, so it imports only torch, the standard library and its flat
siblings.
"""

import hashlib
import itertools

import torch
from torch import nn

from .masking import MaskCompaction, check_ids, is_tracing, value_checks

CACHE_BYTES = 2**32  # default bound of the frozen-feature cache (4 GiB of CPU memory)


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
    (flair's embedding storage), up to `cache_bytes` (then new sentences are computed each time). `cache_eval=True`
    keeps them in eval mode too, so that a dev set evaluated every epoch runs through the LMs once (run_tagging sets
    it; it is off by default, as a served model would keep every text it ever saw). The cache is not saved, and is
    emptied whenever the LMs' weights change (`_weights_version`); `clear_cache()` empties it by hand.

    With `pooling` ("mean", "min" or "max"), each word's features are followed by their pooling over the `memory`
    (`WordMemory`, saved with the model; `clear_memory()` empties it), so the output is twice as wide.
    """

    def __init__(
        self,
        language_models: dict[str, nn.Module],
        fine_tune: bool,
        pooling: str | None = None,
        memory_size: int | None = None,
    ):
        """`language_models`: the LMs' encoders (`RnnModel`s) by config field, `forward_lm` and/or `backward_lm`;
        `pooling` and `memory_size`: `config.contextual_pooling` and `contextual_memory_size`."""
        super().__init__()
        self.forward_lm = language_models.get("forward_lm")
        self.backward_lm = language_models.get("backward_lm")
        self.fine_tune = fine_tune
        lm = next(iter(language_models.values())).config  # both read the same characters (RnnConfig checks)
        self.pad_token_id, self.vocab_size = lm.pad_token_id, lm.vocab_size
        width = sum(lm.config.output_size for lm in language_models.values())
        self.memory = WordMemory(pooling, memory_size, width) if pooling is not None else None
        self.lm_feature_size = width
        self.feature_size = width * (2 if self.memory is not None else 1)
        self.cache: dict[tuple[bytes, bytes], torch.Tensor] = {}
        self.cache_bytes = CACHE_BYTES
        self.cache_eval = False
        self._cached_bytes = 0
        self._cache_version: tuple = ()  # `_weights_version` of the LMs the cached features came from
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

    def clear_cache(self) -> None:
        """Forget every cached feature (they were the old weights' or the old dtype's)."""
        self.cache.clear()
        self._cached_bytes = 0

    def clear_memory(self) -> None:
        """Forget every word the pooling memory holds (`config.contextual_pooling`; a no-op without it)."""
        if self.memory is not None:
            self.memory.clear()

    def _weights_version(self) -> tuple:
        """What identifies the LMs' current weights: each tensor's identity, storage, in-place version counter, dtype
        and device. Loading weights into an LM (either way: copied in or assigned), editing them in place (under
        `no_grad` too, as an optimizer does), `.to()` of an LM and replacing an LM all change it, whichever module
        they are called on; only in-place edits through `.data`, which autograd does not see either, slip through
        (call `clear_cache()` after those), as do in-place edits of weights created under `torch.inference_mode()`
        (inference tensors keep no version counter)."""
        return tuple(
            (
                id(tensor),
                tensor.data_ptr(),
                -1 if tensor.is_inference() else tensor._version,
                tensor.dtype,
                tensor.device,
            )
            for lm in self.language_models
            for tensor in itertools.chain(lm.parameters(), lm.buffers())
        )

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self.clear_cache()  # features of the old weights
        super()._load_from_state_dict(*args, **kwargs)

    def forward(
        self,
        lm_char_ids: torch.LongTensor,
        lm_char_lengths: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """lm_char_ids (B, N): each row's character stream in the LMs' ids, `pad_token_id` = padding (anywhere);
        lm_char_lengths (B, T): how many of them each token wrote, 0 for the tokens attention_mask hides -> features
        (B, T, F), zero for tokens without characters."""
        problem = f"is not an LM character id in [0, {self.vocab_size}): was lm_char_vocab the LMs' vocabulary?"
        lm_char_ids = check_ids(lm_char_ids, self.vocab_size, "lm_char_ids", problem)
        if lm_char_lengths.is_floating_point() or lm_char_lengths.dtype == torch.bool:
            raise ValueError(f"lm_char_lengths must hold integer counts, got {lm_char_lengths.dtype}")
        lm_char_ids, lm_char_lengths = lm_char_ids.long(), lm_char_lengths.long()  # (uint8 ids: embeddings want these)
        chars = lm_char_ids != self.pad_token_id  # (B, N)
        if not is_tracing():  # read now, with the forward's checks so far: the stream's shape depends on these values
            with value_checks() as checks:
                checks.refuse(lm_char_lengths < 0, "lm_char_lengths", "is negative", lm_char_lengths)
                if attention_mask is not None:
                    hidden = (lm_char_lengths > 0) & ~attention_mask.bool()
                    problem = (
                        "counts characters of a token attention_mask hides: leave them out of lm_char_ids (count 0)"
                    )
                    checks.refuse(hidden, "lm_char_lengths", problem, lm_char_lengths)
                spelled, held = lm_char_lengths.sum(1), chars.sum(1)  # (B,)
                checks.add((spelled != held).any(), lambda: self._refuse_lengths(lm_char_lengths, spelled, held))
                checks.read()
        if self.memory is not None and is_tracing():
            raise ValueError(
                "config.contextual_pooling cannot be traced or exported: its memory is looked up by each word's "
                "characters in Python; export the tagger without it"
            )
        if 0 in lm_char_lengths.shape or lm_char_ids.size(1) == 0:  # no token or no character (an empty text)
            return lm_char_ids.new_zeros(*lm_char_lengths.shape, self.feature_size, dtype=self._dtype())
        if self.fine_tune or is_tracing() or not (self.training or self.cache_eval):
            features = self.features(lm_char_ids, chars, lm_char_lengths)
        else:
            features = self._cached_features(lm_char_ids, chars, lm_char_lengths)
        if self.memory is None:
            return features
        words = word_keys(lm_char_ids, chars, lm_char_lengths)
        return torch.cat([features, self.memory(features, words)], dim=-1)

    def _refuse_lengths(self, lm_char_lengths: torch.Tensor, spelled: torch.Tensor, held: torch.Tensor) -> None:
        row = int((spelled != held).nonzero()[0])
        raise ValueError(
            f"lm_char_lengths[{row}] = {lm_char_lengths[row].tolist()} adds up to {int(spelled[row])}, but "
            f"lm_char_ids[{row}] holds {int(held[row])} characters (ids other than the LMs' pad_token_id="
            f"{self.pad_token_id}): were both written by one tokenizer call, and padded with that id?"
        )

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _apply(self, *args, **kwargs):
        """`.to(dtype or device)`: the cached features were the old dtype's."""
        self.clear_cache()
        return super()._apply(*args, **kwargs)

    def features(self, lm_char_ids: torch.LongTensor, chars: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
        """The LMs over each row's characters (`chars`, (B, N)) read at the word boundaries, where each token's
        characters number `widths` (B, T): -> (B, T, F)."""
        stream = MaskCompaction(chars)
        text, mask = stream.compact(lm_char_ids), stream.compact_mask  # (B, N), each row's at the left
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

    def _cached_features(
        self, lm_char_ids: torch.LongTensor, chars: torch.Tensor, widths: torch.Tensor
    ) -> torch.Tensor:
        """`features`, computed only for the rows whose characters and word boundaries are not cached yet (by the
        LMs' current weights: the cache is emptied first when they changed)."""
        version = self._weights_version()
        if version != self._cache_version:
            self.clear_cache()
            self._cache_version = version
        words = widths > 0  # (B, T) the tokens with characters
        ids, mask, cpu_widths = lm_char_ids.cpu(), chars.cpu(), widths.cpu()
        keys = [
            (ids[b][mask[b]].numpy().tobytes(), cpu_widths[b][cpu_widths[b] > 0].numpy().tobytes())
            for b in range(len(ids))
        ]
        found = {b: self.cache[key] for b, key in enumerate(keys) if key in self.cache}
        missing = [b for b in range(len(keys)) if b not in found]
        if missing:
            computed = self.features(lm_char_ids[missing], chars[missing], widths[missing])  # (M, T, F)
            for row, b in enumerate(missing):
                found[b] = computed[row][words[b]]  # (n_b, F)
                size = found[b].numel() * found[b].element_size()
                if self._cached_bytes + size <= self.cache_bytes:
                    self.cache[keys[b]] = found[b].cpu()
                    self._cached_bytes += size
        dtype = next(iter(found.values())).dtype if found else self._dtype()
        features = torch.zeros(*words.shape, self.lm_feature_size, dtype=dtype, device=lm_char_ids.device)
        for b, rows in found.items():
            features[b][words[b]] = rows.to(features.device)
        return features


class WordMemory(nn.Module):
    """Pooled contextual string embeddings' memory (Akbik et al. 2019): for each word seen, the sum (`"mean"`), the
    element-wise minimum or maximum of its contextual features over every occurrence, and their count.

    A word is its characters as the LMs read them (its `lm_char_ids`, without the separators around it; characters
    outside the LMs' vocabulary are all `<unk>`), so a rare word outside the tagger's vocabulary is still told apart,
    and "Paris" is one word at a sentence's start and inside it. It is stored under a 64-bit BLAKE2 hash of those ids
    (a collision between two words, odds about 3e-11 for 2**15 words, would merge them).

    Every forward pass outside tracing, in training and in evaluation as in flair, adds its words' features (without
    gradient) to the memory, and each word gets the pooling of the memory as it was before the batch together with
    its own sentence's occurrences: a sentence's features never depend on the other sentences of its batch, its
    padding or the batch's order, and the memory after a batch is the one it gets from the batch's sentences fed one
    by one (sums, minima and maxima do not depend on their order). A word seen for the first time pools only its own
    occurrences. (flair lets a batch's sentences see each other's words, and empties its memory whenever the model
    enters training mode; here only `clear()` does, since the Trainer calls `train()` at every step.)

    Bounded: a table of `size` words (`config.contextual_memory_size`), held in buffers, so that `save_pretrained`
    saves it and `from_pretrained` restores it (`size * (4 * width + 24)` bytes in float32). When it is full, a new
    word takes the place of the least recently seen one (ties: the lowest slot); a batch with more new words than the
    table can take stores those with the lowest hashes, and pools the others for its own sentences only.
    """

    def __init__(self, pooling: str, size: int, width: int):
        super().__init__()
        self.pooling = pooling
        self.register_buffer("word_keys", torch.zeros(size, dtype=torch.long))  # each slot's word hash
        self.register_buffer("counts", torch.zeros(size, dtype=torch.long))  # its occurrences; 0: a free slot
        self.register_buffer("pooled", torch.zeros(size, width))  # their sum, minimum or maximum
        self.register_buffer("last_seen", torch.zeros(size, dtype=torch.long))  # the update that last saw it
        self._slots: dict[int, int] = {}  # word hash -> slot, rebuilt when the buffers were replaced or loaded
        self._stamp: tuple = ()

    def clear(self) -> None:
        """Forget every word."""
        with torch.no_grad():
            for buffer in (self.word_keys, self.counts, self.pooled, self.last_seen):
                buffer.zero_()
        self._stamp = ()

    def _buffers_stamp(self) -> tuple:
        return tuple((b.data_ptr(), b._version) for b in (self.word_keys, self.counts))

    def slots(self) -> dict[int, int]:
        """Word hash -> slot of every stored word (rebuilt after loading, `.to()` or an edit of the buffers)."""
        if self._stamp != self._buffers_stamp():
            used = (self.counts > 0).nonzero().flatten().tolist()
            self._slots = dict(zip(self.word_keys[used].tolist(), used))
            self._stamp = self._buffers_stamp()
        return self._slots

    def _reduce(self, vectors: torch.Tensor, index: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """vectors (W, F) pooled by `index` (W,) into `size` groups -> (pooled (size, F), counts (size,))."""
        counts = torch.bincount(index, minlength=size)
        if self.pooling == "mean":
            return vectors.new_zeros(size, vectors.size(1)).index_add_(0, index, vectors), counts
        reduce = "amin" if self.pooling == "min" else "amax"
        spread = index.unsqueeze(1).expand_as(vectors)
        return vectors.new_zeros(size, vectors.size(1)).scatter_reduce_(
            0, spread, vectors, reduce, include_self=False
        ), counts

    def _combine(self, stored: torch.Tensor, stored_counts: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """The stored pooling (rows with count 0 hold nothing) joined with the new one."""
        if self.pooling == "mean":
            return stored + new
        joined = torch.minimum(stored, new) if self.pooling == "min" else torch.maximum(stored, new)
        return torch.where(stored_counts.unsqueeze(1) > 0, joined, new)

    @torch.no_grad()
    def forward(self, features: torch.Tensor, words: list[tuple[int, int, int]]) -> torch.Tensor:
        """features (B, T, F) of the words at (row, token) with their hashes `words` -> the pooled features
        (B, T, F), zero for tokens without characters; the memory then holds the batch's words too."""
        pooled = torch.zeros_like(features, dtype=self.pooled.dtype)
        if not words:
            return pooled.to(features.dtype)
        rows, tokens, keys = (list(column) for column in zip(*words))
        vectors = features[rows, tokens].to(self.pooled.dtype)  # (W, F)
        distinct = sorted(set(keys))  # the batch's words, in an order that does not depend on the batch's
        key_of = {key: index for index, key in enumerate(distinct)}
        pairs: dict[tuple[int, int], int] = {}  # (row, word) -> group: each sentence's occurrences of a word
        groups = [pairs.setdefault((row, key_of[key]), len(pairs)) for row, key in zip(rows, keys)]
        device = features.device
        group_index, word_index = (torch.tensor(x, device=device) for x in (groups, [key_of[key] for key in keys]))
        slots = self.slots()
        slot = torch.tensor([slots.get(key, -1) for key in distinct], device=device)  # (U,) -1: not stored
        stored = torch.where(slot.unsqueeze(1) >= 0, self.pooled[slot.clamp(min=0)], 0)  # (U, F)
        stored_counts = torch.where(slot >= 0, self.counts[slot.clamp(min=0)], 0)  # (U,)

        own, own_counts = self._reduce(vectors, group_index, len(pairs))  # each sentence's own occurrences
        group_word = torch.tensor([word for _, word in pairs], device=device)  # (G,)
        joined = self._combine(stored[group_word], stored_counts[group_word], own)
        if self.pooling == "mean":
            joined = joined / (stored_counts[group_word] + own_counts).unsqueeze(1)
        pooled[rows, tokens] = joined[group_index]

        batch, batch_counts = self._reduce(vectors, word_index, len(distinct))
        self._store(distinct, slot, self._combine(stored, stored_counts, batch), stored_counts + batch_counts)
        return pooled.to(features.dtype)

    def _store(self, distinct: list[int], slot: torch.Tensor, pooled: torch.Tensor, counts: torch.Tensor) -> None:
        """Write the batch's words (`distinct` hashes, their `slot`s or -1) with their new pooling and counts."""
        step = int(self.last_seen.max()) + 1
        new = (slot < 0).nonzero().flatten()
        if len(new):
            # free slots first, then the least recently seen; never a slot this batch's words hold
            taken = torch.zeros_like(self.counts, dtype=torch.bool)
            taken[slot[slot >= 0]] = True
            age = torch.where(self.counts > 0, self.last_seen, -1).masked_fill(taken, step)
            order = torch.sort(age, stable=True).indices
            free = order[: int((age < step).sum())][: len(new)]
            new = new[: len(free)]
            for evicted in self.word_keys[free][self.counts[free] > 0].tolist():
                del self._slots[evicted]
            slot = slot.clone()
            slot[new] = free
            self.word_keys[free] = torch.tensor([distinct[i] for i in new.tolist()], device=slot.device)
        kept = slot >= 0
        where = slot[kept]
        self.pooled[where] = pooled[kept]
        self.counts[where] = counts[kept]
        self.last_seen[where] = step
        self._slots.update(zip((distinct[i] for i in kept.nonzero().flatten().tolist()), where.tolist()))
        self._stamp = self._buffers_stamp()


def word_keys(lm_char_ids: torch.LongTensor, chars: torch.Tensor, widths: torch.Tensor) -> list[tuple[int, int, int]]:
    """(row, token, hash of its characters) of every token with characters: its `widths` ids of the row's stream
    (`chars` marks them) without the space after it and, for the first word, the newline before it."""
    ids, mask, counts = lm_char_ids.cpu(), chars.cpu(), widths.cpu()
    words = []
    for row in range(len(ids)):
        stream, start = ids[row][mask[row]].numpy(), 0
        for token, width in enumerate(counts[row].tolist()):
            if width:
                spelled = stream[start + (start == 0) : start + width - 1].tobytes()
                digest = hashlib.blake2b(spelled, digest_size=8).digest()
                words.append((row, token, int.from_bytes(digest, "little", signed=True)))
                start += width
    return words


def _read(states: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """states (B, N, H) at positions (B, T), clamped into the stream (padding tokens read anything) -> (B, T, H)."""
    index = positions.clamp(0, states.size(1) - 1).unsqueeze(-1).expand(-1, -1, states.size(-1))
    return states.gather(1, index)


__all__ = ["ContextualStringEmbeddings", "WordMemory"]
