"""The recurrent language model, [`RnnForCausalLM`], with what its `generate` adds to transformers' (a NaN-logits
check, whole-word stop strings, greedy by default).

`modeling_rnn.py` imports it only where it saves a checkpoint and where a tagger is built from language models
(every checkpoint carries this file, so any head loads from any checkpoint with `trust_remote_code=True`). It
imports only torch, transformers and its flat siblings.
"""

import copy
from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin, LogitsProcessor, LogitsProcessorList
from transformers.generation import GenerationConfig, StoppingCriteria, StoppingCriteriaList
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_rnn import RnnConfig
from .dropout import SequenceDropout
from .masking import check_ids, value_checks
from .modeling_rnn import _LABEL_PROBLEM, RnnCache, RnnModel, RnnPreTrainedModel, _at_least_one


@dataclass
class RnnCausalLMOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `(1,)`, *optional*): next-token cross-entropy, when `labels` are given.
    logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`): next-token scores.
    cache (`RnnCache`, *optional*): final recurrent state, see [`RnnModelOutput`].
    hidden_states (`tuple(torch.FloatTensor)`, *optional*): see [`RnnModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: RnnCache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class RnnForCausalLM(RnnPreTrainedModel, GenerationMixin):
    """Word-level language model. `generate()` carries the recurrent state, so each new token costs one step."""

    _tied_weights_keys = {"lm_head.weight": "model.embeddings.weight"}
    _is_stateful = True

    def __init__(self, config: RnnConfig):
        super().__init__(config)
        if config.bidirectional:
            raise ValueError(
                "RnnConfig.bidirectional must be False for RnnForCausalLM: a language model cannot read ahead."
            )
        if config.char_encoder is not None or config.language_models:
            field = "char_encoder" if config.char_encoder is not None else next(iter(config.language_models))
            raise ValueError(
                f"RnnConfig.{field} must be None for RnnForCausalLM: generate() has no characters for new tokens."
            )
        self.model = RnnModel(config)
        self.dropout = SequenceDropout(config.output_dropout, config.locked_dropout)
        # Tied weights need the top state in embedding space.
        self.projection = (
            nn.Linear(config.hidden_size, config.embedding_size, bias=False)
            if config.tie_word_embeddings and config.embedding_size != config.hidden_size
            else None
        )
        head_in = config.embedding_size if self.projection is not None else config.hidden_size
        self.lm_head = nn.Linear(head_in, config.vocab_size)
        self.post_init()
        _greedy_by_default(self.generation_config)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the state is an RnnCache, not a key/value cache

    def adjust_generation_fn(self, *args, **kwargs) -> None:
        """transformers' loading of a checkpoint's generation_config.json, greedy where it does not say (one saved
        before `do_sample` was pinned)."""
        super().adjust_generation_fn(*args, **kwargs)
        _greedy_by_default(self.generation_config)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        cache: RnnCache | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool = True,
        **kwargs,
    ) -> dict:
        """The prompt once (with its padding mask), then only the newest token and the carried state.

        With `use_cache=False` every step re-reads the whole sequence (slow; a reference for tests).
        """
        if cache is None and inputs_embeds is None and input_ids.shape[1] == 0:
            raise ValueError(
                "generate() got an empty prompt: a recurrent LM needs at least one token to start from. Start from "
                "the token that separates sentences in training (the word tokenizer's `<eos>`), or set "
                "`config.bos_token_id` and pass no `input_ids`."
            )
        inputs = {"use_cache": use_cache, "output_hidden_states": kwargs.get("output_hidden_states")}
        if cache is not None and use_cache:
            inputs.update(input_ids=input_ids[:, -1:], cache=cache)
        elif inputs_embeds is not None and cache is None and input_ids.shape[1] == 0:
            inputs.update(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        else:
            inputs.update(input_ids=input_ids, attention_mask=attention_mask)
        return inputs

    def generate(self, inputs=None, generation_config=None, logits_processor=None, **kwargs):
        """transformers' `generate`, with three differences a recurrent word LM needs.

        - NaN logits (a diverged or corrupted model) are refused by the step they appear at, where greedy search
          would emit token 0 for them and sampling fail inside torch: one check after the loop (and on a failure
          inside it), not a host sync per step.
        - `stop_strings` (with `tokenizer=`) stop at whole words: transformers' own criterion spells every token
          after a sub-word prefix, which a word vocabulary reads as `<unk>`.
        - Assisted and prompt-lookup decoding are refused: they check several drafted tokens in one step and roll
          the cache back to the accepted ones, and a recurrent state cannot be rolled back.
        """
        config = generation_config or self.generation_config
        for name in ("assistant_model", "prompt_lookup_num_tokens", "assistant_early_exit"):
            if kwargs.get(name, getattr(config, name, None)) is not None:
                raise ValueError(
                    f"RnnForCausalLM.generate cannot take {name}: assisted and prompt-lookup decoding roll the cache "
                    "back to the accepted draft tokens, and a recurrent state cannot be rolled back. Generate "
                    "without it (each new token already costs one recurrent step)."
                )
        stop_strings = kwargs.pop("stop_strings", None) or config.stop_strings
        if stop_strings:
            words = StopWords.from_strings(stop_strings, kwargs.get("tokenizer"))
            kwargs["stopping_criteria"] = StoppingCriteriaList([*(kwargs.get("stopping_criteria") or []), words])
            if config.stop_strings:
                generation_config = copy.deepcopy(config)
                generation_config.stop_strings = None
        check = NanLogitsCheck()
        processors = LogitsProcessorList([*(logits_processor or []), check])
        try:
            output = super().generate(inputs, generation_config, processors, **kwargs)
        except RuntimeError:  # torch.multinomial on NaN probabilities: say why
            check.raise_if_seen()
            raise
        check.raise_if_seen()
        return output

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        cache: RnnCache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> RnnCausalLMOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Usually `input_ids`; shifted inside the model (position t predicts t+1), -100 ignored. Pass `shift_labels`
            instead to give each position's own target (truncated BPTT, where the last target is the next window's
            first token). `num_items_in_batch` (passed by the Trainer) turns the mean into a sum over that count.
        """
        for old_name in ("past_key_values", "cache_params"):  # transformers' old names: **kwargs would drop the state
            if old_name in kwargs:
                if cache is not None:
                    raise ValueError(f"RnnForCausalLM: pass the state once, as cache= (not also as {old_name}=)")
                cache = kwargs.pop(old_name)
        if kwargs.get("shift_labels") is not None:  # transformers' loss views it flat: a slice of a stream would fail
            kwargs["shift_labels"] = kwargs["shift_labels"].contiguous()
        name = "labels" if kwargs.get("shift_labels") is None else "shift_labels"
        targets = labels if name == "labels" else kwargs[name]
        with value_checks():  # the targets' check before the encoder's read of the lengths, so both share it
            if targets is not None:
                size = self.config.vocab_size
                targets = check_ids(targets, size, name, _LABEL_PROBLEM.format("vocab_size", size), -100)
                if name == "labels":
                    labels = targets
                else:
                    kwargs[name] = targets
            outputs = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                cache=cache,
                use_cache=use_cache,
                output_hidden_states=output_hidden_states,
            )
        hidden = self.dropout(outputs.last_hidden_state)  # (B, T, H)
        if self.projection is not None:
            hidden = self.projection(hidden)  # (B, T, E)
        logits = self.lm_head(hidden)  # (B, T, V)
        loss = None
        if targets is not None:
            if name == "labels":
                targets = labels[:, 1:]  # position t predicts t + 1
            count = kwargs.pop("num_items_in_batch", None)
            count = _at_least_one((targets != -100).sum() if count is None else count)  # nothing to predict: loss 0
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.vocab_size, num_items_in_batch=count, **kwargs
            )
        return RnnCausalLMOutput(loss=loss, logits=logits, cache=outputs.cache, hidden_states=outputs.hidden_states)


class NanLogitsCheck(LogitsProcessor):
    """Notes on the device, without a host sync per step, the first new token at which each row's scores hold NaN;
    `raise_if_seen` (once, after `generate`'s loop) turns it into a ValueError naming the step and the row."""

    def __init__(self):
        self.prompt_length = 0
        self.first_nan: torch.Tensor | None = None  # (rows,) the new-token index of each row's first NaN, -1: none

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.first_nan is None:
            self.prompt_length = input_ids.shape[1]
            self.first_nan = torch.full(scores.shape[:1], -1, dtype=torch.long, device=scores.device)
        new = scores.isnan().any(-1) & (self.first_nan < 0)  # (rows,)
        self.first_nan = torch.where(new, input_ids.shape[1] - self.prompt_length, self.first_nan)
        return scores

    def raise_if_seen(self) -> None:
        if self.first_nan is None or not bool((self.first_nan >= 0).any()):
            return
        rows = (self.first_nan >= 0).nonzero().flatten().tolist()
        step = int(self.first_nan[rows].min())
        row = next(r for r in rows if int(self.first_nan[r]) == step)
        raise ValueError(
            f"generate(): the model's next-token logits are NaN from new token {step} on (row {row} of the batch "
            f"{'and beams ' if len(self.first_nan) > 1 else ''}first; {len(rows)} rows in all), where greedy search "
            "would emit token 0 and sampling fails: the weights or the inputs' embeddings hold NaN or overflow "
            "(e.g. after a diverged training run; check `[n for n, p in model.named_parameters() if not "
            "p.isfinite().all()]`)."
        )


def _greedy_by_default(generation_config: GenerationConfig) -> None:
    """Pin `do_sample=False` unless set: transformers' text-generation pipeline samples (temperature 0.7) for every
    model whose generation config leaves it unset, even with `num_beams`. Saved with the model."""
    if generation_config.do_sample is None:
        generation_config.do_sample = False


class StopWords(StoppingCriteria):
    """`stop_strings` for a word vocabulary: a row is done when its last tokens are one of the stop strings' words."""

    def __init__(self, sequences: list[list[int]]):
        self.sequences = [torch.tensor(ids) for ids in sequences]

    @classmethod
    def from_strings(cls, stop_strings: str | list[str], tokenizer) -> "StopWords":
        if tokenizer is None:
            raise ValueError("stop_strings needs the tokenizer: pass generate(..., tokenizer=tokenizer)")
        sequences = []
        for text in [stop_strings] if isinstance(stop_strings, str) else stop_strings:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if not ids or tokenizer.unk_token_id in ids:
                raise ValueError(
                    f"stop_strings: {text!r} is not a run of whole words of the vocabulary (it encodes as "
                    f"{tokenizer.convert_ids_to_tokens(ids)}): a word-level LM stops at words, not inside them"
                )
            sequences.append(ids)
        return cls(sequences)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        done = torch.zeros(input_ids.size(0), dtype=torch.bool, device=input_ids.device)
        for words in self.sequences:
            if input_ids.size(1) >= len(words):
                done |= (input_ids[:, -len(words) :] == words.to(input_ids.device)).all(-1)
        return done


# The Trainer shifts the labels for `label_smoothing_factor` only for the causal LMs it lists (by model type), and
# would otherwise smooth position t against token t: list this one, also where it is loaded as remote code.
MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.setdefault(RnnConfig.model_type, RnnForCausalLM.__name__)


__all__ = ["RnnCausalLMOutput", "RnnForCausalLM"]
