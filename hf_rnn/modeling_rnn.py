"""The recurrent encoder shared by every hf_rnn head as a Hugging Face `PreTrainedModel`: [`RnnModel`] (embeddings and
a stack of [`RnnLayer`]s of any cell of `cells.py`), its state [`RnnCache`] and the base class; the heads are in
`modeling_lm.py`, `modeling_classifier.py` and `modeling_tagger.py`.

This file travels inside checkpoints (`trust_remote_code=True`), so it imports only torch, transformers and its
flat siblings (`from .x import ...`).
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, can_return_tuple

from .cells import CELLS, cell_of
from .char_encoder import CharEncoder
from .configuration_rnn import RnnConfig
from .contextual import ContextualStringEmbeddings, WordMemory
from .dropout import SequenceDropout, WordDropout
from .masking import MaskCompaction, ValueChecks, check_ids, is_tracing, value_checks


class RnnCache:
    """The recurrent state after the last step: the cell's `state_size` tensors, each in `nn.LSTM`'s layout
    (num_layers * num_directions, batch, hidden), in the cell's order: (h,), the LSTM's (h, c), the sLSTM's
    (h, c, n, m).

    Passing it back as `cache=` continues every sequence where it stopped, so generation and truncated BPTT never
    re-read a prefix.
    """

    def __init__(self, *states: torch.Tensor | None):
        # `RnnCache(hidden, None)` (a cell-less state, as written before the cells carried more) means `(hidden,)`
        self.states = tuple(state for state in states if state is not None)
        if not self.states:
            raise ValueError("RnnCache needs at least one state tensor (the hidden state)")

    def __repr__(self) -> str:
        return f"RnnCache({len(self.states)} x {tuple(self.hidden.shape)})"

    @property
    def hidden(self) -> torch.Tensor:
        """h, the state every cell has."""
        return self.states[0]

    @property
    def cell(self) -> torch.Tensor | None:
        """The memory cell c of the LSTM and the sLSTM, None for the cells without one."""
        return self.states[1] if len(self.states) > 1 else None

    def detach(self) -> "RnnCache":
        """Cut the graph between two truncated-BPTT windows."""
        return RnnCache(*(state.detach() for state in self.states))

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Follow the beams that beam search kept (called by `generate`)."""
        self.states = tuple(state.index_select(1, beam_idx.to(state.device)) for state in self.states)

    def layer(self, index: int, num_directions: int) -> tuple[torch.Tensor, ...]:
        """The state of layer `index`: `state_size` tensors, each (num_directions, batch, hidden)."""
        rows = slice(index * num_directions, (index + 1) * num_directions)
        return tuple(state[rows] for state in self.states)


@dataclass
class RnnModelOutput(ModelOutput):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, num_directions * hidden_size)`):
        Top-layer outputs; zero at padded positions.
    cache (`RnnCache`, *optional*, returned when `use_cache=True`):
        Final recurrent state of every layer and direction; feed it back as `cache=` to continue the sequences.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
        The embeddings, then the output of every layer, each `(batch_size, sequence_length, width)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    cache: RnnCache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class RnnTokenClassifierOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `(1,)`, *optional*): training loss, when `labels` are given.
    logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, num_labels)`):
        Per-token scores whose argmax is the model's answer, so that per-token argmax tools (transformers'
        token-classification pipeline, run_ner-style `compute_metrics`) read it right. Softmax head: the emissions.
        With `use_crf`: max-marginal scores (the best allowed path through each tag), whose argmax at every real
        position is the Viterbi path; computed when the model decodes (in eval mode, without `labels`, or with
        `return_predictions=True`), otherwise None.
    emissions (`torch.FloatTensor` of shape `(batch_size, sequence_length, num_labels)`):
        The classifier's per-token scores before any transition: the CRF's emission scores with `use_crf`.
    predictions (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
        The model's tags: the Viterbi path with `use_crf`, the argmax otherwise; -100 at padding. Returned in eval
        mode, without `labels`, or with `return_predictions=True`.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*): see [`RnnModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    emissions: torch.FloatTensor | None = None
    predictions: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


State = tuple[
    torch.Tensor, ...
]  # the cell's `state_size` tensors, e.g. (h,) or the LSTM's (h, c); each (directions, B, H)


class RnnLayer(GradientCheckpointingLayer):
    """One recurrent layer: a left-to-right cell of `config.cell_type` (see `cells.py`), plus a right-to-left one if
    bidirectional."""

    def __init__(self, config: RnnConfig, input_size: int):
        super().__init__()
        self.spec = CELLS[config.cell_type]
        self.directions = nn.ModuleList(self.spec.build(config, input_size) for _ in range(config.num_directions))

    def forward(
        self,
        inputs: torch.Tensor,
        padding: MaskCompaction | None = None,
        initial_state: State | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State]:
        """inputs (B, T, in) in compact layout -> outputs (B, T, D * H) and the final state.

        `lengths` (B,), on the host, makes the final state exact for ragged rows (the torch cells pack for it; only
        needed when the state is returned: the outputs are exact either way).
        """
        if initial_state is not None and len(initial_state) != self.spec.state_size:
            raise ValueError(
                f"the cache holds {len(initial_state)} state tensor(s) per layer, but a {self.spec.display_name} layer "
                f"carries {self.spec.state_size}: was it made by a model of another cell_type?"
            )
        if inputs.size(1) == 0:  # nn.RNN refuses empty sequences: there is nothing to read, the state carries over
            return self._empty(inputs, initial_state)
        outputs, finals = [], []
        for direction, cell in enumerate(self.directions):
            state = None if initial_state is None else tuple(s[direction : direction + 1] for s in initial_state)
            x = inputs
            if direction == 1:
                x = x.flip(1) if padding is None else padding.reversed(x)
            out, final = cell(x, state, lengths)  # (B, T, H), state_size x (1, B, H)
            if direction == 1:
                out = out.flip(1) if padding is None else padding.reversed(out)
            outputs.append(out)
            finals.append(final)
        return torch.cat(outputs, dim=-1), tuple(torch.cat(parts, dim=0) for parts in zip(*finals))

    def _empty(self, inputs: torch.Tensor, initial_state: State | None) -> tuple[torch.Tensor, State]:
        """Outputs (B, 0, D * H) of a zero-length window, and the initial state (zeros by default) as its final one."""
        batch_size, hidden_size = inputs.size(0), self.directions[0].hidden_size
        outputs = inputs.new_zeros(batch_size, 0, len(self.directions) * hidden_size)
        if initial_state is None:
            shape = (len(self.directions), batch_size, hidden_size)
            initial_state = tuple(inputs.new_zeros(shape) for _ in range(self.spec.state_size))
        return outputs, initial_state


class RnnPreTrainedModel(PreTrainedModel):
    config: RnnConfig
    config_class = RnnConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["RnnLayer"]

    def init_range(self, module: nn.Module) -> float | None:
        """r of the U[-r, r] a module's weights start from: `config.initializer_range`, or by default 1/sqrt(fan-in)
        (PyTorch's scale for its recurrent cells: the hidden size; the input width of a min cell's projections or of a
        linear or convolution layer, the width of an embedding; the tagger adds the CRF's). A fixed 0.1 starves narrow
        models: a 2-layer GRU LM of width 32 could not learn a 19-token cycle in 600 Adam steps; Zaremba et al.'s
        recipes set 0.1 / 0.05."""
        if self.config.initializer_range is not None:
            return self.config.initializer_range
        spec = cell_of(module)
        if spec is not None:
            fan_in = spec.fan_in(module)
        elif isinstance(module, nn.Linear):
            fan_in = module.in_features
        elif isinstance(module, nn.Conv1d):
            fan_in = module.in_channels * module.kernel_size[0]
        elif isinstance(module, nn.Embedding):
            fan_in = module.embedding_dim
        else:
            return None  # no weights of its own to initialise
        return fan_in**-0.5

    @classmethod
    def from_language_models(
        cls, forward_lm: str | None = None, backward_lm: str | None = None, lm_kwargs: dict | None = None, **kwargs
    ) -> "RnnPreTrainedModel":
        """A new model on contextual string embeddings from character-LM checkpoints (folders or Hub ids of
        `RnnForCausalLM`s with `char_level`, the backward one `reverse`), in one call as
        `EncoderDecoderModel.from_encoder_decoder_pretrained` builds from two: the LMs' configs become
        `config.forward_lm`/`backward_lm` and their encoders' weights are copied in (their output layers are left
        out). `kwargs` are the new model's `RnnConfig` fields; `lm_kwargs` go to each LM's `from_pretrained`
        (`revision`, `token`, `cache_dir`, ...). A checkpoint of another head (a classifier's encoder was never
        trained to predict characters) is refused, naming its path and architecture."""
        from .modeling_lm import RnnForCausalLM

        paths = {name: path for name, path in (("forward_lm", forward_lm), ("backward_lm", backward_lm)) if path}
        lms = {}
        for name, path in paths.items():
            architectures = RnnConfig.from_pretrained(path, **(lm_kwargs or {})).architectures or []
            if RnnForCausalLM.__name__ not in architectures:
                raise ValueError(
                    f"{name}={str(path)!r} is a checkpoint of {', '.join(architectures) or 'no known architecture'},"
                    f" not of {RnnForCausalLM.__name__}: give a character language model (run_lm.py --char_level)"
                )
            lms[name] = RnnForCausalLM.from_pretrained(path, **(lm_kwargs or {})).model
        if not lms:
            raise ValueError("from_language_models needs forward_lm, backward_lm or both")
        model = cls(RnnConfig(**{name: lm.config for name, lm in lms.items()}, **kwargs))
        for name, lm in lms.items():
            getattr(model.base_model.contextual, name).load_state_dict(lm.state_dict())
        return model

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """U[-r, r] for every weight (r from `init_range`), zero biases, (min)LSTM forget-gate bias = `forget_bias`,
        zero padding embedding."""
        r = self.init_range(module)
        spec = cell_of(module)
        if spec is not None:  # a recurrent cell: its own rule (cells.py), e.g. the LSTM's forget-gate bias
            spec.init(module, self.config, r)
        elif isinstance(module, (nn.Linear, nn.Conv1d)):
            init.uniform_(module.weight, -r, r)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -r, r)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, WordMemory):  # contextual pooling's memory starts empty
            for buffer in module.buffers(recurse=False):
                init.zeros_(buffer)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' `save_pretrained`; with the model code shipped (`register_for_auto_class`, which `import
        hf_rnn` does), config.json's `auto_map` names every head, not only the saved one, so a machine without hf_rnn
        loads any head from any checkpoint as `import hf_rnn` allows (a new head gets new weights). The imports below
        are also what makes transformers ship the heads' and the card's files (it follows every `from .x import`).

        A `Trainer` that pushes saves the model first, then writes the card: `trainer_writes_hf_rnn_cards` makes that
        card hf_rnn's (with its `pipeline_tag`), with or without hf_rnn installed."""
        from .hub import trainer_writes_hf_rnn_cards
        from .modeling_classifier import RnnForSequenceClassification
        from .modeling_lm import RnnForCausalLM
        from .modeling_tagger import RnnForTokenClassification

        trainer_writes_hf_rnn_cards()

        if self._auto_class is not None:
            heads = {
                "AutoModel": RnnModel,
                "AutoModelForCausalLM": RnnForCausalLM,
                "AutoModelForSequenceClassification": RnnForSequenceClassification,
                "AutoModelForTokenClassification": RnnForTokenClassification,
            }
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                **{auto: f"{head.__module__.split('.')[-1]}.{head.__name__}" for auto, head in heads.items()},
            }
        return super().save_pretrained(save_directory, *args, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs):
        """transformers' `push_to_hub`, with hf_rnn's model card (architecture, labels, decoding, how to load without
        hf_rnn) instead of transformers' generic one, also from a model loaded by remote code. Takes transformers'
        keyword arguments (`revision`, `create_pr`, `private`, ...)."""
        from .hub import (
            push_model,
        )  # relative: hub.py travels with the checkpoint, so remote code writes this card too

        return push_model(self, None, repo_id, **kwargs)


class RnnModel(RnnPreTrainedModel):
    """Word embeddings (plus character features with `config.char_encoder`, and contextual string embeddings with
    `config.forward_lm`/`backward_lm`) followed by a stack of recurrent layers; returns per-token outputs and the final
    state."""

    def __init__(self, config: RnnConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.char_encoder = CharEncoder(config) if config.char_encoder is not None else None
        lms = {name: RnnModel(lm) for name, lm in config.language_models.items()}  # the LMs' encoders, no heads
        pooling = (config.contextual_pooling, config.contextual_memory_size)
        self.contextual = ContextualStringEmbeddings(lms, config.fine_tune_lms, *pooling) if lms else None
        self.word_dropout = WordDropout(config.word_dropout)
        self.embedding_dropout = SequenceDropout(config.embedding_dropout, config.locked_dropout)
        self.layers = nn.ModuleList(
            RnnLayer(config, config.word_feature_size if i == 0 else config.output_size)
            for i in range(config.num_layers)
        )
        self.dropout = SequenceDropout(config.dropout, config.locked_dropout)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        char_ids: torch.LongTensor | None = None,
        cache: RnnCache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        lm_char_ids: torch.LongTensor | None = None,
        lm_char_lengths: torch.LongTensor | None = None,
    ) -> RnnModelOutput:
        r"""
        attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
            1 for real tokens, 0 for padding. Left, right or any other padding pattern: each sequence's outputs
            equal those it gets alone.
        char_ids (`torch.LongTensor` of shape `(batch_size, sequence_length, max_word_length)`, *optional*):
            Each token's characters (0 = padding), as [`RnnTokenizerFast`] returns them; required with
            `config.char_encoder`.
        cache (`RnnCache`, *optional*): the state to start from (returned by an earlier call with `use_cache=True`).
        lm_char_ids (`torch.LongTensor` of shape `(batch_size, lm_stream_length)`, *optional*):
            Each sentence as the language models read it (its words' characters in their ids, with the separators
            between words; the LMs' `pad_token_id` = padding, on any side), as [`RnnTokenizerFast`] returns it with
            `lm_char_vocab`; required with `config.forward_lm`/`backward_lm`, with `lm_char_lengths`.
        lm_char_lengths (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            How many of the row's `lm_char_ids` each token wrote, in order (0: none, e.g. padding).
        """
        with value_checks() as checks:
            return self._forward(
                checks,
                input_ids,
                attention_mask,
                inputs_embeds,
                char_ids,
                cache,
                use_cache,
                output_hidden_states,
                lm_char_ids,
                lm_char_lengths,
            )

    def _forward(
        self,
        checks: ValueChecks,
        input_ids: torch.LongTensor | None,
        attention_mask: torch.Tensor | None,
        inputs_embeds: torch.FloatTensor | None,
        char_ids: torch.LongTensor | None,
        cache: RnnCache | None,
        use_cache: bool | None,
        output_hidden_states: bool | None,
        lm_char_ids: torch.LongTensor | None,
        lm_char_lengths: torch.LongTensor | None,
    ) -> RnnModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds`.")
        if (char_ids is None) != (self.char_encoder is None):
            raise ValueError(
                "This model reads characters (config.char_encoder is set): pass `char_ids`, as RnnTokenizerFast "
                "returns them."
                if char_ids is None
                else "`char_ids` was given, but this model has no character encoder (config.char_encoder is None)."
            )
        for name, ids in (("lm_char_ids", lm_char_ids), ("lm_char_lengths", lm_char_lengths)):
            if (ids is None) != (self.contextual is None):
                raise ValueError(
                    "This model reads language models' characters (config.forward_lm/backward_lm): pass `lm_char_ids` "
                    "and `lm_char_lengths`, as RnnTokenizerFast returns them with lm_char_vocab."
                    if ids is None
                    else f"`{name}` was given, but this model has no language models (config.forward_lm/backward_lm)."
                )
        tokens = input_ids if inputs_embeds is None else inputs_embeds[..., 0]
        _check_shapes(checks, tokens, attention_mask, char_ids, cache, lm_char_ids, lm_char_lengths)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        if inputs_embeds is None:
            input_ids = check_ids(
                input_ids,
                self.config.vocab_size,
                "input_ids",
                f"is not a token id in [0, vocab_size={self.config.vocab_size}): was the text encoded with this "
                "model's tokenizer?",
            )
            inputs_embeds = self.embeddings(input_ids)  # (B, T, E)
        if self.char_encoder is not None:
            inputs_embeds = torch.cat([inputs_embeds, self.char_encoder(char_ids)], dim=-1)  # (B, T, E + F_c)
        if self.contextual is not None:
            features = self.contextual(lm_char_ids, lm_char_lengths, attention_mask)  # (B, T, F_lm)
            inputs_embeds = torch.cat([inputs_embeds, features], dim=-1)
        hidden = self.embedding_dropout(self.word_dropout(inputs_embeds))

        # One compaction of the mask for every layer; right padding too (telling it apart would cost a host sync).
        padding = None if attention_mask is None else MaskCompaction(attention_mask)
        if padding is not None:
            hidden = padding.compact(hidden)
        lengths = None  # on the host: only a ragged batch's final *state* needs them (packing); outputs are exact
        if use_cache and padding is not None:
            lengths = padding.lengths if is_tracing() else _ragged(checks.read(padding.lengths)[0], tokens.size(1))

        all_hidden_states = (inputs_embeds,) if output_hidden_states else None
        finals = []
        for index, layer in enumerate(self.layers):
            if index > 0:
                hidden = self.dropout(hidden)
            initial = None if cache is None else cache.layer(index, self.config.num_directions)
            hidden, final = layer(hidden, padding, initial, lengths)
            finals.append(final)
            if output_hidden_states:
                all_hidden_states += (hidden if padding is None else padding.restore(hidden),)

        last_hidden_state = all_hidden_states[-1] if output_hidden_states else hidden
        if padding is not None and not output_hidden_states:
            last_hidden_state = padding.restore(hidden)
        new_cache = RnnCache(*(torch.cat(parts) for parts in zip(*finals))) if use_cache else None
        return RnnModelOutput(last_hidden_state=last_hidden_state, cache=new_cache, hidden_states=all_hidden_states)


def _ragged(lengths: list[int], seq_len: int) -> torch.Tensor | None:
    """The rows' lengths as a host tensor if some row is shorter than the batch (then packing is needed), else None."""
    return torch.tensor(lengths) if any(length < seq_len for length in lengths) else None


def _check_shapes(
    checks: ValueChecks,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor | None,
    char_ids: torch.Tensor | None,
    cache: RnnCache | None,
    lm_char_ids: torch.Tensor | None = None,
    lm_char_lengths: torch.Tensor | None = None,
) -> None:
    """What torch would report from deep inside a layer, said in terms of the inputs. `tokens` is (B, T)."""
    if tokens.dim() != 2:
        raise ValueError(f"input_ids must be (batch, seq_len), got shape {tuple(tokens.shape)}; add a batch axis")
    if attention_mask is not None:
        if attention_mask.shape != tokens.shape:
            raise ValueError(
                f"attention_mask must be {tuple(tokens.shape)} like input_ids, got {tuple(attention_mask.shape)}"
            )
        checks.refuse((attention_mask != 0) & (attention_mask != 1), "attention_mask", "is not 0 or 1", attention_mask)
    if char_ids is not None and (char_ids.dim() != 3 or char_ids.shape[:2] != tokens.shape):
        raise ValueError(f"char_ids must be {(*tokens.shape, 'max_word_length')}, got {tuple(char_ids.shape)}")
    if lm_char_lengths is not None and lm_char_lengths.shape != tokens.shape:
        raise ValueError(
            f"lm_char_lengths must be {tuple(tokens.shape)} like input_ids, got {tuple(lm_char_lengths.shape)}"
        )
    if lm_char_ids is not None and (lm_char_ids.dim() != 2 or lm_char_ids.size(0) != tokens.size(0)):
        raise ValueError(f"lm_char_ids must be ({tokens.size(0)}, 'stream_length'), got {tuple(lm_char_ids.shape)}")
    if cache is not None and cache.hidden.size(1) != tokens.size(0):
        raise ValueError(f"cache holds the state of {cache.hidden.size(1)} sequences, the batch has {tokens.size(0)}")


_LABEL_PROBLEM = (
    "is not -100 (skip) or an id in [0, {}={}); datasets' ClassLabel stores -1 for a missing label: map it to -100"
)


def _at_least_one(count: int | torch.Tensor) -> int | torch.Tensor:
    """The loss divisor: the labelled-token count, at least 1 so that a batch without labels gives loss 0."""
    return count.clamp(min=1) if isinstance(count, torch.Tensor) else max(count, 1)


__all__ = [
    "RnnCache",
    "RnnLayer",
    "RnnModel",
    "RnnModelOutput",
    "RnnPreTrainedModel",
    "RnnTokenClassifierOutput",
]
