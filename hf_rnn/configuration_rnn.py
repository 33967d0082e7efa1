"""Configuration of the hf_rnn recurrent models (Elman RNN, GRU, LSTM, minGRU, minLSTM, sLSTM; uni- or bidirectional).

This file is shipped inside checkpoints for `trust_remote_code=True` loading, so it imports only transformers and its
flat, torch-free sibling `schemes.py` (a language model's checkpoint carries no CRF code).
"""

import dataclasses
import difflib
import warnings

from transformers import PreTrainedConfig
from transformers.generation import GenerationConfig
from transformers.utils import is_torch_available

from .schemes import SCHEMES, label_scheme, scheme_constraints, segment_scheme

CELL_TYPES = ("rnn", "gru", "lstm", "mingru", "minlstm", "slstm")  # the names of cells.CELLS, without importing torch
HEAD_TYPES = ("softmax", "crf", "semicrf")  # the names of heads.HEADS, without importing torch
DEFAULT_MAX_SEGMENT_LENGTH = 4
CONTEXTUAL_POOLINGS = ("mean", "min", "max")  # contextual.WordMemory's poolings
DEFAULT_CONTEXTUAL_MEMORY_SIZE = 2**15
NONLINEARITIES = ("tanh", "relu")
POOLING_MODES = ("last", "mean", "max")
SLSTM_FORGET_GATES = ("sigmoid", "exponential")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
# keys a saved config or a transformers tool may pass besides the fields: read by the base class, not by us
_BASE_KEYS = {
    "model_type",
    "num_labels",
    "torch_dtype",
    "name_or_path",
    "auto_map",
    "custom_pipelines",
    "output_attentions",
    "attn_implementation",
    "experts_implementation",
    "per_layer_config",
    *GenerationConfig._get_default_generation_params(),
}
CHAR_ENCODERS = ("lstm", "cnn")
LANGUAGE_MODELS = {"forward_lm": False, "backward_lm": True}  # the sub-config fields, and the `reverse` each needs
MAX_SIZE = 2**31 - 1  # sizes beyond int32 overflow torch's allocations (2**63) or tokenizers' u32 ids
MAX_LABELS = 2**20  # id2label, one name per label, is written out in config.json (2**40 would hang building it)
MAX_FLOAT = 65504.0  # float16's largest value: an initial bias or range any weight dtype can hold


class RnnConfig(PreTrainedConfig):
    r"""
    Configuration of [`RnnModel`] and its heads. Keyword arguments only; every invalid value raises a
    `ValueError` naming the field.

    Args:
        cell_type (`str`, defaults to `"lstm"`):
            `"rnn"` (Elman: h_m = g(Θʰ h_{m-1} + Θˣ x_m)), `"gru"`, `"lstm"`, or `"mingru"` / `"minlstm"` (Feng et
            al. 2024: gates that read only the input, so training scans the whole sequence in parallel), or
            `"slstm"` (xLSTM's sLSTM, Beck et al. 2024: exponential gating with a normaliser and a stabiliser state;
            see `slstm_num_heads`, `slstm_forget_gate`).
        vocab_size (`int`, defaults to 10000): size of the word vocabulary.
        embedding_size (`int`, defaults to 128): width of the word embeddings.
        char_encoder (`str`, *optional*):
            Append character-level features to every word embedding: `"lstm"` (a character BiLSTM's two final states,
            Lample et al. 2016) or `"cnn"` (a character CNN max-pooled over the word, Ma & Hovy 2016). The model then
            reads `char_ids` (B, T, L), which [`RnnTokenizerFast`] produces. Not valid for the causal language model.
        char_vocab_size (`int`, defaults to 0): number of character ids, padding (0) and unknown (1) included.
        char_embedding_size (`int`, defaults to 25): width of the character embeddings.
        char_hidden_size (`int`, defaults to 25): state width of each direction of the character BiLSTM, or the
            number of filters of the character CNN.
        char_kernel_size (`int`, defaults to 3): width (odd) of the character CNN's filters.
        hidden_size (`int`, defaults to 256): width of the recurrent state of one direction.
        num_layers (`int`, defaults to 1): number of stacked recurrent layers.
        bidirectional (`bool`, defaults to `False`):
            Add a right-to-left direction to every layer (outputs are `2 * hidden_size` wide). Not valid for the
            causal language model.
        nonlinearity (`str`, defaults to `"tanh"`): `g` of the Elman cell, `"tanh"` or `"relu"` (`cell_type="rnn"` only).
        dropout (`float`, defaults to 0.0): dropout between stacked layers.
        embedding_dropout (`float`, *optional*): dropout on the word embeddings; defaults to `dropout`.
        output_dropout (`float`, *optional*): dropout on the top layer's outputs, before a head; defaults to `dropout`.
        locked_dropout (`bool`, defaults to `False`):
            Draw each dropout mask once per sequence and reuse it at every time step (variational dropout, Gal &
            Ghahramani 2016; flair's and AWD-LSTM's choice) instead of fresh noise per token. Sequence classification
            keeps ordinary dropout on its pooled vector.
        word_dropout (`float`, defaults to 0.0):
            Probability of zeroing a token's whole input vector (word embedding and character features) in training,
            without rescaling (flair's word dropout, 0.05 in its taggers).
        initializer_range (`float`, *optional*):
            Every weight is drawn from U[-initializer_range, initializer_range] (Zaremba et al. 2014 use 0.1 for
            small and 0.05 for medium models); biases start at zero. `None` (the default) scales each layer by
            1/sqrt(fan-in), PyTorch's choice for its recurrent cells.
        forget_bias (`float`, defaults to 1.0):
            Initial bias of the LSTM, minLSTM and sLSTM forget gates (Jozefowicz et al. 2015).
        slstm_num_heads (`int`, defaults to 1):
            Heads of the sLSTM's recurrent matrix (`cell_type="slstm"`): block-diagonal, each head's units read only
            their own head's state (xLSTM uses 4). Must divide `hidden_size`.
        slstm_forget_gate (`str`, defaults to `"sigmoid"`):
            The sLSTM's forget gate, `"sigmoid"` or `"exponential"` (its input gate is always exponential).
        classifier_pooling (`str`, defaults to `"last"`):
            How [`RnnForSequenceClassification`] summarises a sequence: `"last"` (final state of each direction),
            `"mean"` or `"max"` over the real tokens.
        head_type (`str`, *optional*):
            The output layer of [`RnnForTokenClassification`] (`heads.HEADS`): `"softmax"` (independent per-token
            decisions), `"crf"` (a linear-chain CRF: the BiLSTM-CRF) or `"semicrf"` (a semi-Markov CRF over chunks of
            up to `max_segment_length` words, written in the labels' scheme; over labels that are not chunk tags, such as POS
            tags, every word is a segment). `None` (the default): `"crf"`
            with `use_crf=True`, else `"softmax"`.
        use_crf (`bool`, defaults to `False`):
            `head_type="crf"`, the name it had before `head_type`; kept equal to `head_type == "crf"`, so saved
            configs and code that read it keep working. Set `head_type` to change the head.
        crf_constraints (`str`, *optional*):
            Label scheme whose impossible moves the CRF forbids in training and decoding: `"BIO"` (IOB2), `"IOB1"`,
            `"BIOES"` or `"BILOU"`. Every label must then be `O` or `<prefix>-<TYPE>`. `None` allows every move.
            `head_type="crf"` only.
        max_segment_length (`int`, *optional*):
            The longest chunk, in words, the semi-Markov CRF scores (`head_type="semicrf"` only, default 4): decoding
            costs O(T * max_segment_length * labels^2), and a training chunk longer than it is refused.
        pad_token_id (`int`, *optional*, defaults to 0): the padding token; its embedding is kept at zero.
        tie_word_embeddings (`bool`, defaults to `False`):
            Share the language-model output matrix with the input embeddings. When `embedding_size != hidden_size`
            a linear projection maps the top hidden state to `embedding_size` first.
        use_cache (`bool`, defaults to `True`): return the final recurrent state (needed by `generate()`).
        char_level (`bool`, defaults to `False`):
            The tokens are the text's characters, spaces and newlines included (a character language model, or a
            head started from one). Not valid with `char_encoder`, which spells out word tokens.
        reverse (`bool`, defaults to `False`):
            The model was trained on reversed text (a backward language model): feed it the token sequence last
            token first. Recorded for the tools that read the model; the model itself reads what it is given.
        forward_lm (`RnnConfig` or `dict`, *optional*):
            A character language model (`char_level=True`) whose states become contextual string embeddings
            (Akbik et al. 2018), appended to every word's features; its weights live in the model. The model then
            reads `lm_char_ids` (B, N) and `lm_char_lengths` (B, T), which [`RnnTokenizerFast`] writes with
            `lm_char_vocab`. Build such a tagger with [`RnnForTokenClassification.from_language_models`]. Stored as a
            nested dict in config.json.
        backward_lm (`RnnConfig` or `dict`, *optional*):
            The same for a backward character LM (`reverse=True`), with the forward one's character vocabulary.
        fine_tune_lms (`bool`, defaults to `False`):
            Train the language models with the tagger. Frozen (the default, flair's too), they stay in eval mode and
            each training sentence's features are computed once and reused (see `ContextualStringEmbeddings`).
        contextual_pooling (`str`, *optional*):
            Pooled contextual string embeddings (Akbik et al. 2019): `"mean"`, `"min"` or `"max"` of each word's
            contextual features over every occurrence seen so far (in training and in evaluation, this sentence's
            included), appended to them, so a rare word also reads its other contexts. A word is its characters as
            the LMs read them. The memory is saved with the model; `model.model.contextual.clear_memory()` empties it
            (see `contextual.WordMemory`). Needs `forward_lm` or `backward_lm`.
        contextual_memory_size (`int`, *optional*):
            The most words the pooling memory holds (default 2**15 with `contextual_pooling`): then the least recently
            seen is replaced. It takes `contextual_memory_size * (4 * F + 24)` bytes in the model and its checkpoint
            (F: the LMs' feature width, e.g. 512 for two 256-wide LMs: 68 MB by default).
    """

    model_type = "hf_rnn"
    attribute_map = {"num_hidden_layers": "num_layers"}  # transformers' generic name, read by its tools and tests
    # the Trainer's evaluation keeps only `logits` (argmax = the model's tags), as run_ner-style metrics expect
    keys_to_ignore_at_inference = ["cache", "predictions", "emissions"]

    cell_type: str = "lstm"
    vocab_size: int = 10000
    embedding_size: int = 128
    char_encoder: str | None = None
    char_vocab_size: int = 0
    char_embedding_size: int = 25
    char_hidden_size: int = 25
    char_kernel_size: int = 3
    hidden_size: int = 256
    num_layers: int = 1
    bidirectional: bool = False
    nonlinearity: str = "tanh"
    dropout: float = 0.0
    embedding_dropout: float | None = None
    output_dropout: float | None = None
    locked_dropout: bool = False
    word_dropout: float = 0.0
    initializer_range: float | None = None
    forget_bias: float = 1.0
    slstm_num_heads: int = 1
    slstm_forget_gate: str = "sigmoid"
    classifier_pooling: str = "last"
    head_type: str | None = None
    use_crf: bool = False
    crf_constraints: str | None = None
    max_segment_length: int | None = None
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    tie_word_embeddings: bool = False
    use_cache: bool = True
    char_level: bool = False
    reverse: bool = False
    forward_lm: dict | PreTrainedConfig | None = None
    backward_lm: dict | PreTrainedConfig | None = None
    fine_tune_lms: bool = False
    contextual_pooling: str | None = None
    contextual_memory_size: int | None = None

    def __post_init__(self, **kwargs):
        self._check_base_keys(kwargs)  # before the base class reads or drops them
        self._check_label_maps()  # before the base class fills in or overwrites them
        self._load_language_models()
        self._warn_unknown_keys(kwargs)
        if self.embedding_dropout is None:
            self.embedding_dropout = self.dropout
        if self.output_dropout is None:
            self.output_dropout = self.dropout
        if self.head_type is None:  # a config saved before head_type, or use_crf=True
            self.head_type = "crf" if self.use_crf is True else "softmax"
        if self.head_type == "crf" and self.use_crf is False:
            self.use_crf = True
        if self.head_type == "semicrf" and self.max_segment_length is None:
            self.max_segment_length = DEFAULT_MAX_SEGMENT_LENGTH
        if self.contextual_pooling is not None and self.contextual_memory_size is None:
            self.contextual_memory_size = DEFAULT_CONTEXTUAL_MEMORY_SIZE
        super().__post_init__(**kwargs)
        if self.id2label is not None and self.label2id is None:
            self.label2id = {label: index for index, label in self.id2label.items()}
        self._validate_fields()

    def _check_label_maps(self) -> None:
        """id2label is keyed by the ids 0..C-1 (JSON stores them as strings) and names distinct labels; label2id is its
        inverse. (A `num_labels` that disagrees replaces them with LABEL_0, ...: transformers' way to load a checkpoint
        with a new head, `from_pretrained(path, num_labels=N)`.)"""
        id2label, label2id = self.id2label, self.label2id
        if id2label is None:
            if label2id is not None:
                raise ValueError(f"RnnConfig.label2id={label2id!r} needs the id2label it inverts: pass both")
            return
        if not isinstance(id2label, dict):
            raise ValueError(f"RnnConfig.id2label must be a dict of label ids to names, got {id2label!r}")
        keys = [int(key) if isinstance(key, str) and key.isdigit() else key for key in id2label]
        if any(isinstance(key, bool) or not isinstance(key, int) for key in keys) or sorted(keys) != list(
            range(len(keys))
        ):
            raise ValueError(f"RnnConfig.id2label must be keyed by the ids 0 .. {len(keys) - 1}, got {id2label!r}")
        names = list(id2label.values())
        if not names:
            raise ValueError("RnnConfig.num_labels must be >= 1: id2label names no label")
        if any(not isinstance(name, str) or not name for name in names) or len(set(names)) != len(names):
            raise ValueError(f"RnnConfig.id2label must name distinct labels with non-empty strings, got {id2label!r}")
        inverse = {name: key for key, name in zip(keys, names)}
        if label2id is not None and dict(label2id) != inverse:
            raise ValueError(f"RnnConfig.label2id must be the inverse of id2label={id2label!r}, got {label2id!r}")

    def _check_base_keys(self, kwargs: dict) -> None:
        """The keys the base class reads, which it would take unchecked (`num_labels="3"` fails inside it, `True`
        makes one label) or drop silently: a generation parameter (`max_length=-5`) is not read from a model config in
        transformers 5, so one that differs from `GenerationConfig`'s default is refused, saying where it belongs."""
        num_labels = kwargs.get("num_labels")
        if num_labels is not None and (
            isinstance(num_labels, bool) or not isinstance(num_labels, int) or not 0 < num_labels <= MAX_LABELS
        ):
            raise ValueError(f"RnnConfig.num_labels must be a positive integer up to 2**20, got {num_labels!r}")
        for key in ("dtype", "torch_dtype"):
            value = self.dtype if key == "dtype" else kwargs.get(key)
            if value is not None and not _is_float_dtype(value):
                raise ValueError(
                    f"RnnConfig.{key} must be None or a floating-point torch dtype (or its name: 'float32',"
                    f" 'bfloat16', ...), got {value!r}"
                )
        defaults = GenerationConfig._get_default_generation_params()
        for key, value in kwargs.items():
            if key in defaults and value != defaults[key]:
                raise ValueError(
                    f"RnnConfig.{key}={value!r}: a generation parameter, which transformers does not read from a model"
                    f" config: set model.generation_config.{key} or pass {key}=... to generate()"
                )

    def _warn_unknown_keys(self, kwargs: dict) -> None:
        """A misspelt field (`hiden_size=512`) would be stored and never read: say so, with the nearest field."""
        fields = [field.name for field in dataclasses.fields(self)]
        for key in kwargs:
            if key in _BASE_KEYS or key in self.attribute_map or key.startswith("_"):
                continue
            nearest = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
            warnings.warn(f"RnnConfig got an unknown key {key!r}, which no hf_rnn model reads{hint}", stacklevel=3)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """transformers' `from_dict`, where new labels (`num_labels=`, `id2label=`, `label2id=`: a new head on an old
        checkpoint, as run_ner.py loads one), which the base class sets after `__init__`, are checked as in `__init__`,
        and the map not given follows the one given (a stale label2id would be saved, and the checkpoint would not
        load). A new head (`head_type=` or `use_crf=`) goes through `__init__` too, so the two names cannot disagree. For a saved CRF tagger they bring their own `crf_constraints`: the saved scheme if the new labels are
        written in it, else the scheme they are written in, else none, with a warning when it changes."""
        config_dict = _with_new_head(config_dict, kwargs)
        _keep_saved_pooling(config_dict, kwargs)
        new_labels = {"num_labels", "id2label", "label2id"} & kwargs.keys()
        scheme = config_dict.get("crf_constraints")
        rescheme = bool(new_labels) and scheme is not None and "crf_constraints" not in kwargs
        result = super().from_dict({**config_dict, "crf_constraints": None} if rescheme else config_dict, **kwargs)
        config = result[0] if isinstance(result, tuple) else result
        if new_labels:
            if "id2label" in kwargs and "label2id" not in kwargs:
                config.label2id = None
            elif "label2id" in kwargs and "id2label" not in kwargs and isinstance(kwargs["label2id"], dict):
                config.id2label = {index: label for label, index in kwargs["label2id"].items()}
            config._check_label_maps()
            if config.id2label is not None:  # JSON's string ids as __init__ keeps them: integers
                config.id2label = {int(index): label for index, label in config.id2label.items()}
                config.label2id = {label: index for index, label in config.id2label.items()}
        if rescheme:
            config.crf_constraints = _scheme_of_new_labels(config.crf_labels, scheme)
        if kwargs:  # the base class set them after `__init__`, past its checks: `from_pretrained(path, dropout=nan)`
            config._validate_fields()
        return result

    @property
    def crf_labels(self) -> list[str]:
        """Label names in id order, as the CRF's tags."""
        return [self.id2label[index] for index in range(self.num_labels)]

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def char_feature_size(self) -> int:
        """Width of the character features appended to each word embedding (0 without `char_encoder`)."""
        if self.char_encoder is None:
            return 0
        return self.char_hidden_size * (2 if self.char_encoder == "lstm" else 1)

    @property
    def language_models(self) -> dict[str, "RnnConfig"]:
        """The character LMs of contextual string embeddings, by field name (forward first)."""
        return {name: getattr(self, name) for name in LANGUAGE_MODELS if getattr(self, name) is not None}

    @property
    def word_feature_size(self) -> int:
        """Width of what the first recurrent layer reads: word embedding, character features, LM states (and their
        pooling over the memory, with `contextual_pooling`)."""
        contextual = sum(lm.output_size for lm in self.language_models.values())
        return self.embedding_size + self.char_feature_size + contextual * (2 if self.contextual_pooling else 1)

    @property
    def output_size(self) -> int:
        """Width of the top layer's outputs (both directions concatenated)."""
        return self.hidden_size * self.num_directions

    def _load_language_models(self) -> None:
        """The LM sub-configs as `RnnConfig`s (config.json holds them as dicts); an invalid one is named."""
        for name in LANGUAGE_MODELS:
            value = getattr(self, name)
            if isinstance(value, dict):
                try:
                    value = RnnConfig(**value)
                except ValueError as error:
                    raise ValueError(f"RnnConfig.{name}: {error}") from None
            if value is not None and not isinstance(value, RnnConfig):
                raise ValueError(f"RnnConfig.{name} must be None, a dict or an RnnConfig, got {type(value).__name__}")
            setattr(self, name, value)

    def _validate_language_models(self) -> None:
        """Character LMs, forward and backward as named, sharing one character vocabulary; not nested further."""
        models = self.language_models
        for name, lm in models.items():
            reverse = LANGUAGE_MODELS[name]
            if lm.pad_token_id is None:
                raise ValueError(f"RnnConfig.{name}.pad_token_id must be set: lm_char_ids are padded with it")
            if not lm.char_level or lm.reverse != reverse or lm.bidirectional or lm.language_models:
                raise ValueError(
                    f"RnnConfig.{name} must be a unidirectional character LM (char_level=True, reverse={reverse}) "
                    f"without language models of its own, got char_level={lm.char_level}, reverse={lm.reverse}, "
                    f"bidirectional={lm.bidirectional}, language models {list(lm.language_models)}"
                )
        if len(models) == 2 and (self.forward_lm.vocab_size, self.forward_lm.pad_token_id) != (
            self.backward_lm.vocab_size,
            self.backward_lm.pad_token_id,
        ):
            raise ValueError(
                "RnnConfig.backward_lm must read the forward LM's characters (one lm_char_vocab feeds both): "
                f"vocab_size and pad_token_id {self.backward_lm.vocab_size}, {self.backward_lm.pad_token_id} != "
                f"{self.forward_lm.vocab_size}, {self.forward_lm.pad_token_id}"
            )
        if models and self.char_level:
            raise ValueError("RnnConfig.char_level must be False with language models: the tagger reads words")
        if self.fine_tune_lms and not models:
            raise ValueError("RnnConfig.fine_tune_lms must be False unless forward_lm or backward_lm is set")
        pooling, size = self.contextual_pooling, self.contextual_memory_size
        if pooling is not None and (pooling not in CONTEXTUAL_POOLINGS or not models):
            raise ValueError(
                f"RnnConfig.contextual_pooling must be None or one of {', '.join(map(repr, CONTEXTUAL_POOLINGS))} "
                f"with forward_lm or backward_lm set, got {pooling!r}"
                + ("" if models else " without language models (it pools their features)")
            )
        if pooling is None and size is not None:
            raise ValueError(
                f"RnnConfig.contextual_memory_size must be None unless contextual_pooling is set, got {size!r}"
            )
        if pooling is not None and (isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_SIZE):
            raise ValueError(
                f"RnnConfig.contextual_memory_size must be a positive integer up to 2**31 - 1 ({MAX_SIZE}), got {size!r}"
            )

    def _validate_fields(self) -> None:
        """Raise a `ValueError` naming the first invalid field; types are checked too, since JSON files are edited by hand."""

        def fail(field: str, expected: str) -> None:
            raise ValueError(f"RnnConfig.{field} must be {expected}, got {getattr(self, field)!r}")

        for field, choices in (
            ("cell_type", CELL_TYPES),
            ("nonlinearity", NONLINEARITIES),
            ("classifier_pooling", POOLING_MODES),
            ("slstm_forget_gate", SLSTM_FORGET_GATES),
        ):
            if getattr(self, field) not in choices:
                fail(field, f"one of {', '.join(map(repr, choices))}")
        if self.char_encoder is not None and self.char_encoder not in CHAR_ENCODERS:
            fail("char_encoder", f"None or one of {', '.join(map(repr, CHAR_ENCODERS))}")
        for field in (
            "vocab_size",
            "embedding_size",
            "hidden_size",
            "num_layers",
            "char_embedding_size",
            "char_hidden_size",
            "char_kernel_size",
            "slstm_num_heads",
        ):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SIZE:
                fail(field, f"a positive integer up to 2**31 - 1 ({MAX_SIZE})")
        for field in ("dropout", "embedding_dropout", "output_dropout", "word_dropout"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                fail(field, "a number in [0, 1)")
        for field in ("initializer_range", "forget_bias"):
            value = getattr(self, field)
            if field == "initializer_range" and value is None:
                continue  # 1/sqrt(fan-in)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= MAX_FLOAT:
                bound = f"a number in [-{MAX_FLOAT}, {MAX_FLOAT}] (float16's range, so every weight dtype holds it)"
                fail(field, bound if field == "forget_bias" else f"None or {bound}")
        if self.hidden_size % self.slstm_num_heads:
            fail("slstm_num_heads", f"a divisor of hidden_size={self.hidden_size} (the heads split the state evenly)")
        if self.char_kernel_size % 2 == 0:
            fail("char_kernel_size", "odd (the filters are centred on each character)")
        if self.char_encoder is None and self.char_vocab_size != 0:
            fail("char_vocab_size", "0 without a char_encoder (no layer would read the characters)")
        if self.char_encoder is not None and (
            isinstance(self.char_vocab_size, bool)
            or not isinstance(self.char_vocab_size, int)
            or not 3 <= self.char_vocab_size <= MAX_SIZE
        ):
            fail(
                "char_vocab_size",
                f"an integer in [3, {MAX_SIZE}] (padding, unknown and one character) when char_encoder is set",
            )
        if self.initializer_range is not None and self.initializer_range <= 0:
            fail("initializer_range", "positive")
        bools = ("bidirectional", "locked_dropout", "use_crf", "tie_word_embeddings", "use_cache")
        for field in (*bools, "char_level", "reverse", "fine_tune_lms"):
            if not isinstance(getattr(self, field), bool):
                fail(field, "a bool")
        if self.char_level and self.char_encoder is not None:
            fail("char_level", "False with a char_encoder (its tokens are characters, with none to spell out)")
        self._validate_language_models()
        for field in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, field)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.vocab_size
            ):
                fail(field, f"None or a token id in [0, vocab_size={self.vocab_size})")
        if self.num_labels < 1:
            fail("num_labels", "at least 1 (every head scores at least one label)")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            fail("problem_type", f"None or one of {', '.join(map(repr, PROBLEM_TYPES))}")
        if self.nonlinearity != "tanh" and self.cell_type != "rnn":
            fail("nonlinearity", "'tanh' unless cell_type='rnn' (the other cells have fixed activations)")
        if self.head_type not in HEAD_TYPES:
            fail("head_type", f"None or one of {', '.join(map(repr, HEAD_TYPES))}")
        if self.use_crf != (self.head_type == "crf"):
            fail("use_crf", f"False with head_type={self.head_type!r} (use_crf=True means head_type='crf')")
        if self.head_type != "softmax" and (self.id2label is None or self.num_labels < 2):
            raise ValueError(
                f"RnnConfig.head_type={self.head_type!r}{' (use_crf=True)' if self.use_crf else ''} needs id2label "
                f"naming at least two tags (it scores moves between them), got id2label={self.id2label!r}"
            )
        if self.head_type == "semicrf":
            value = self.max_segment_length
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
                fail("max_segment_length", "an integer in [1, 1024] (the longest chunk in words)")
            try:
                segment_scheme(self.crf_labels)
            except ValueError as error:
                raise ValueError(f"RnnConfig.head_type='semicrf' cannot write chunks: {error}") from None
        elif self.max_segment_length is not None:
            fail("max_segment_length", "None unless head_type='semicrf'")
        if self.crf_constraints is not None:
            if not self.use_crf:
                fail("crf_constraints", "None unless head_type='crf'")
            if self.crf_constraints not in SCHEMES:
                fail("crf_constraints", f"None or one of {', '.join(map(repr, SCHEMES))}")
            try:
                scheme_constraints(self.crf_labels, self.crf_constraints)
            except ValueError as error:
                raise ValueError(
                    f"RnnConfig.crf_constraints={self.crf_constraints!r} does not fit id2label: {error}"
                ) from None


def _is_float_dtype(value: object) -> bool:
    """A floating-point torch dtype, or the name of one (as config.json stores it)."""
    if not is_torch_available():
        return isinstance(value, str)
    import torch

    dtype = getattr(torch, value, None) if isinstance(value, str) else value
    return isinstance(dtype, torch.dtype) and dtype.is_floating_point


def _with_new_head(config_dict: dict, kwargs: dict) -> dict:
    """A saved config with the head that `from_pretrained(..., head_type=...)` or `use_crf=` asks for (popped from
    `kwargs`, which the base class would set after `__init__`, past the check that `use_crf` and `head_type` agree):
    `use_crf=False` turns a CRF into a softmax, and the head-only fields of the old head are dropped."""
    if not {"head_type", "use_crf"} & kwargs.keys():
        return config_dict
    head = {name: kwargs.pop(name) for name in ("head_type", "use_crf") if name in kwargs}
    if "head_type" not in head:  # use_crf alone: True is the CRF, False leaves a CRF for the softmax
        saved = config_dict.get("head_type") or ("crf" if config_dict.get("use_crf") else "softmax")
        head["head_type"] = "crf" if head["use_crf"] is True else "softmax" if saved == "crf" else saved
    head.setdefault("use_crf", head["head_type"] == "crf")
    for field, owner in (("crf_constraints", "crf"), ("max_segment_length", "semicrf")):
        if head["head_type"] != owner and field not in kwargs:
            head[field] = None
    return {**config_dict, **head}


def _keep_saved_pooling(config_dict: dict, kwargs: dict) -> None:
    """A saved config's `contextual_pooling` and `contextual_memory_size` are refused other values: the tagger's
    first layer reads the pooled features (pooling added or removed changes its width), the memory holds sums, minima
    or maxima under that pooling, and its table has that size."""
    for field in ("contextual_pooling", "contextual_memory_size"):
        if field in kwargs and kwargs[field] != config_dict.get(field):
            raise ValueError(
                f"RnnConfig.{field}={kwargs[field]!r}: the saved model has {config_dict.get(field)!r}, which its "
                "weights and memory were made for; build a new tagger (from_language_models) to change it"
            )


def _scheme_of_new_labels(labels: list[str], saved: str) -> str | None:
    """The CRF constraints for labels that replace those a tagger was saved with under the scheme `saved`."""
    try:
        scheme = label_scheme(labels)
    except ValueError:  # chunk tags mixed with others, or BIOES's E/S with BILOU's L/U: no scheme to constrain
        scheme = None
    if scheme == "BIO" and saved == "IOB1":  # the same B-/I- labels: only sequences tell the two apart
        scheme = saved
    if scheme != saved:
        warnings.warn(
            f"RnnConfig.crf_constraints: the new labels {labels} are not written in the saved scheme {saved!r}; the "
            + (
                f"CRF now follows {scheme!r}"
                if scheme
                else "CRF is now unconstrained (crf_constraints=None; to keep it constrained, pass the new chunk "
                "labels to from_pretrained as id2label= and label2id=)"
            ),
            stacklevel=4,
        )
    return scheme


__all__ = ["RnnConfig"]
