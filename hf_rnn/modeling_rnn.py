"""PyTorch recurrent models (Elman RNN, GRU, LSTM, minGRU, minLSTM) as Hugging Face `PreTrainedModel`s; the tagger,
with its CRF, is in `modeling_tagger.py`.

This file travels inside checkpoints (`trust_remote_code=True`), so it imports only torch, transformers and its
flat siblings (`from .x import ...`).
"""

import copy
from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin, LogitsProcessor, LogitsProcessorList, PreTrainedModel
from transformers import initialization as init
from transformers.generation import GenerationConfig, StoppingCriteria, StoppingCriteriaList
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from transformers.utils import ModelOutput, can_return_tuple

from .cells import CELLS, cell_of
from .char_encoder import CharEncoder
from .configuration_rnn import RnnConfig
from .contextual import ContextualStringEmbeddings
from .dropout import SequenceDropout, WordDropout
from .masking import MaskCompaction, check_ids, is_tracing, raise_at_first, real_tokens


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


State = tuple[torch.Tensor, ...]  # the cell's `state_size` tensors, e.g. (h,) or the LSTM's (h, c); each (directions, B, H)


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
        pack: bool = False,
    ) -> tuple[torch.Tensor, State]:
        """inputs (B, T, in) in compact layout -> outputs (B, T, D * H) and the final state.

        `pack=True` makes the final state exact for ragged lengths (the torch cells pack for it; only needed when the
        state is returned: the outputs are exact either way).
        """
        if initial_state is not None and len(initial_state) != self.spec.state_size:
            raise ValueError(
                f"the cache holds {len(initial_state)} state tensor(s) per layer, but a {self.spec.display_name} layer "
                f"carries {self.spec.state_size}: was it made by a model of another cell_type?"
            )
        if inputs.size(1) == 0:  # nn.RNN refuses empty sequences: there is nothing to read, the state carries over
            return self._empty(inputs, initial_state)
        lengths = padding.lengths if pack else None
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

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' `save_pretrained`; with the model code shipped (`register_for_auto_class`, which `import
        hf_rnn` does), config.json's `auto_map` names every head, not only the saved one, so a machine without hf_rnn
        loads any head from any checkpoint as `import hf_rnn` allows (a new head gets new weights). The imports below
        are also what makes transformers ship the tagger's and the card's files (it follows every `from .x import`).

        A `Trainer` that pushes saves the model first, then writes the card: `trainer_writes_hf_rnn_cards` makes that
        card hf_rnn's (with its `pipeline_tag`), with or without hf_rnn installed."""
        from .hub import trainer_writes_hf_rnn_cards
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
        self.contextual = ContextualStringEmbeddings(lms, config.fine_tune_lms) if lms else None
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
        _check_shapes(tokens, attention_mask, char_ids, cache, lm_char_ids, lm_char_lengths)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        if inputs_embeds is None:
            check_ids(
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

        padding = None
        if attention_mask is not None and (is_tracing() or not bool(attention_mask.bool().all())):
            padding = MaskCompaction(attention_mask)
            hidden = padding.compact(hidden)
        # Unpacked calls give exact outputs; only a ragged batch's final *state* needs packing.
        pack = use_cache and padding is not None

        all_hidden_states = (inputs_embeds,) if output_hidden_states else None
        finals = []
        for index, layer in enumerate(self.layers):
            if index > 0:
                hidden = self.dropout(hidden)
            initial = None if cache is None else cache.layer(index, self.config.num_directions)
            hidden, final = layer(hidden, padding, initial, pack)
            finals.append(final)
            if output_hidden_states:
                all_hidden_states += (hidden if padding is None else padding.restore(hidden),)

        last_hidden_state = all_hidden_states[-1] if output_hidden_states else hidden
        if padding is not None and not output_hidden_states:
            last_hidden_state = padding.restore(hidden)
        new_cache = RnnCache(*(torch.cat(parts) for parts in zip(*finals))) if use_cache else None
        return RnnModelOutput(last_hidden_state=last_hidden_state, cache=new_cache, hidden_states=all_hidden_states)


def _check_shapes(
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
        if not is_tracing():
            raise_at_first(
                (attention_mask != 0) & (attention_mask != 1), "attention_mask", "is not 0 or 1", attention_mask
            )
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
        if kwargs.get("shift_labels") is not None:  # transformers' loss views it flat: a slice of a stream would fail
            kwargs["shift_labels"] = kwargs["shift_labels"].contiguous()
        shift_labels = kwargs.get("shift_labels")
        if labels is not None or shift_labels is not None:
            name, targets = ("labels", labels) if shift_labels is None else ("shift_labels", shift_labels)
            size = self.config.vocab_size
            check_ids(targets, size, name, _LABEL_PROBLEM.format("vocab_size", size), -100)
            if shift_labels is None:
                targets = labels[:, 1:]  # position t predicts t + 1
            count = kwargs.pop("num_items_in_batch", None)
            count = _at_least_one((targets != -100).sum() if count is None else count)  # nothing to predict: loss 0
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=size, num_items_in_batch=count, **kwargs
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


_LABEL_PROBLEM = (
    "is not -100 (skip) or an id in [0, {}={}); datasets' ClassLabel stores -1 for a missing label: map it to -100"
)


def _at_least_one(count: int | torch.Tensor) -> int | torch.Tensor:
    """The loss divisor: the labelled-token count, at least 1 so that a batch without labels gives loss 0."""
    return count.clamp(min=1) if isinstance(count, torch.Tensor) else max(count, 1)


class RnnForSequenceClassification(RnnPreTrainedModel):
    """Sentence classification/regression from a pooled summary of the recurrent outputs."""

    # One label per sequence: a per-batch mean is already exact, so let the Trainer do its usual scaling.
    accepts_loss_kwargs = False

    def __init__(self, config: RnnConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = RnnModel(config)
        self.dropout = nn.Dropout(config.output_dropout)  # on pooled (B, H): no time axis to lock
        self.classifier = nn.Linear(config.output_size, config.num_labels)
        self.post_init()

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """hidden (B, T, D*H) -> (B, D*H) by `config.classifier_pooling`.

        "last" takes each direction's final state: the left-to-right output at the last real token and the
        right-to-left output at the first one.
        """
        batch_size, seq_len, _ = hidden.shape
        mask = real_tokens(attention_mask, hidden.shape[:2], hidden.device)  # (B, T)
        if seq_len == 0:  # nothing read: the summary of an all-padding row
            return hidden.new_zeros(batch_size, hidden.size(-1))
        mode = self.config.classifier_pooling
        if mode == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        if mode == "max":
            pooled = hidden.masked_fill(~mask.unsqueeze(-1), torch.finfo(hidden.dtype).min).amax(1)
            return torch.where(mask.any(1, keepdim=True), pooled, 0.0)  # an all-padding row: zeros, not -3e38
        positions = torch.arange(seq_len, device=hidden.device)
        last = torch.where(mask, positions, -1).amax(1).clamp(min=0)  # (B,)
        rows = torch.arange(batch_size, device=hidden.device)
        pooled = hidden[rows, last]  # (B, D*H)
        if self.config.bidirectional:
            first = torch.where(mask, positions, seq_len).amin(1).clamp(max=seq_len - 1)  # (B,)
            size = self.config.hidden_size
            pooled = torch.cat([pooled[:, :size], hidden[rows, first, size:]], dim=-1)
        return pooled

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        char_ids: torch.LongTensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        lm_char_ids: torch.LongTensor | None = None,
        lm_char_lengths: torch.LongTensor | None = None,
    ) -> SequenceClassifierOutput:
        r"""
        labels (`torch.Tensor` of shape `(batch_size,)`, *optional*):
            Class ids (cross-entropy), floats for regression (`num_labels == 1`) or multi-hot rows (multi-label),
            chosen by `config.problem_type` as in transformers.
        """
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            char_ids=char_ids,
            use_cache=False,
            output_hidden_states=output_hidden_states,
            lm_char_ids=lm_char_ids,
            lm_char_lengths=lm_char_lengths,
        )
        pooled = self.pool(outputs.last_hidden_state, attention_mask)  # (B, D*H)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        loss = None
        if labels is not None:
            if self.num_labels > 1 and not labels.is_floating_point():  # class ids (single-label classification)
                check_ids(
                    labels, self.num_labels, "labels", _LABEL_PROBLEM.format("num_labels", self.num_labels), -100
                )
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


__all__ = [
    "RnnCache",
    "RnnCausalLMOutput",
    "RnnForCausalLM",
    "RnnForSequenceClassification",
    "RnnLayer",
    "RnnModel",
    "RnnModelOutput",
    "RnnPreTrainedModel",
    "RnnTokenClassifierOutput",
]
