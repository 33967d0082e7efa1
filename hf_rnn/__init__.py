"""hf_rnn: Elman RNN, GRU, LSTM, minGRU/minLSTM and BiLSTM-CRF models for the Hugging Face ecosystem.

Importing the package registers `RnnConfig` and every head with the `Auto*` classes, marks them for
`register_for_auto_class` (so `save_pretrained`/`push_to_hub` ship the model code with the weights), does the same for
the character-aware `RnnTokenizerFast` with `AutoTokenizer`, and registers the "rnn-token-classification" pipeline
task.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

from .configuration_rnn import RnnConfig
from .crf import LinearChainCRF
from .masking import set_value_checks
from .modeling_classifier import RnnForSequenceClassification
from .modeling_lm import RnnCausalLMOutput, RnnForCausalLM
from .modeling_rnn import RnnCache, RnnModel, RnnModelOutput, RnnPreTrainedModel, RnnTokenClassifierOutput
from .modeling_tagger import RnnForTokenClassification
from .pipelines import RnnTokenClassificationPipeline, register_pipeline
from .quantization import quantize_dynamic
from .schemes import scheme_constraints
from .tokenization_rnn import RnnTokenizerFast

__version__ = "0.1.0"

_AUTO_CLASSES = {
    AutoModel: RnnModel,
    AutoModelForCausalLM: RnnForCausalLM,
    AutoModelForTokenClassification: RnnForTokenClassification,
    AutoModelForSequenceClassification: RnnForSequenceClassification,
}

AutoConfig.register(RnnConfig.model_type, RnnConfig, exist_ok=True)
RnnConfig.register_for_auto_class()
for _auto_class, _model_class in _AUTO_CLASSES.items():
    _auto_class.register(RnnConfig, _model_class, exist_ok=True)
    _model_class.register_for_auto_class(_auto_class.__name__)
AutoTokenizer.register(RnnConfig, fast_tokenizer_class=RnnTokenizerFast, exist_ok=True)
RnnTokenizerFast.register_for_auto_class("AutoTokenizer")
register_pipeline()  # pipeline("rnn-token-classification", ...)

__all__ = [
    "LinearChainCRF",
    "RnnCache",
    "RnnCausalLMOutput",
    "RnnConfig",
    "RnnForCausalLM",
    "RnnForSequenceClassification",
    "RnnForTokenClassification",
    "RnnModel",
    "RnnModelOutput",
    "RnnPreTrainedModel",
    "RnnTokenClassificationPipeline",
    "RnnTokenClassifierOutput",
    "RnnTokenizerFast",
    "quantize_dynamic",
    "scheme_constraints",
    "set_value_checks",
]
