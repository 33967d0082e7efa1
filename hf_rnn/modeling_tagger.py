"""The recurrent tagger, [`RnnForTokenClassification`]: an [`RnnModel`], a linear layer of emission scores, and a
softmax or CRF output layer (`heads.py`).

Apart from `modeling_rnn.py`, which imports it only where it saves a checkpoint (every checkpoint carries this file, so
any head loads from any checkpoint with `trust_remote_code=True`). It imports only torch, transformers and its flat
siblings.
"""

import torch
from torch import nn
from transformers import initialization as init
from transformers.utils import can_return_tuple

from .configuration_rnn import RnnConfig
from .dropout import SequenceDropout
from .heads import CrfHead, SoftmaxHead
from .masking import check_ids, real_tokens
from .modeling_rnn import _LABEL_PROBLEM, RnnModel, RnnPreTrainedModel, RnnTokenClassifierOutput, _at_least_one

_SOFTMAX = SoftmaxHead()  # stateless: one for every tagger


class RnnForTokenClassification(RnnPreTrainedModel):
    """A (bi)RNN tagger: one label per token (POS tagging, NER, chunking), with a softmax or a CRF output layer.

    With `config.use_crf` this is the BiLSTM-CRF: the classifier's outputs are emission scores, the CRF (`self.crf`)
    adds transition scores, training minimises the CRF negative log-likelihood and predictions are Viterbi paths.
    """

    def __init__(self, config: RnnConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = RnnModel(config)
        self.dropout = SequenceDropout(config.output_dropout, config.locked_dropout)
        self.classifier = nn.Linear(config.output_size, config.num_labels)
        self.crf = CrfHead(config.crf_labels, config.crf_constraints) if config.use_crf else None
        self.post_init()

    @property
    def head(self) -> CrfHead | SoftmaxHead:
        """The output layer (loss, decoding, probabilities): the CRF with `config.use_crf`, else the softmax. Looked
        up on each call, so a wrapped `self.crf` (PEFT's `modules_to_save`) is the one used."""
        return _SOFTMAX if self.crf is None else self.crf

    def init_range(self, module: nn.Module) -> float | None:
        """The base's, and 1/sqrt(number of tags) for the CRF's scores."""
        if isinstance(module, CrfHead) and self.config.initializer_range is None:
            return module.num_tags**-0.5
        return super().init_range(module)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The base's, and for the CRF: U[-r, r] scores and its scheme's constraint masks, which are non-persistent
        buffers (derived from the config) and so rebuilt here after loading."""
        if not isinstance(module, CrfHead):
            super()._init_weights(module)
            return
        r = self.init_range(module)
        for param in (module.transitions, module.start_transitions, module.end_transitions):
            init.uniform_(param, -r, r)
        module.reset_constraints()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        char_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        return_predictions: bool | None = None,
        lm_char_ids: torch.LongTensor | None = None,
        lm_char_lengths: torch.LongTensor | None = None,
        **kwargs,
    ) -> RnnTokenClassifierOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Tag ids, -100 where no tag is scored (sub-word pieces; padding is never scored; the CRF chain skips those
            positions). The loss is per token in both heads: the summed cross-entropy, or the summed CRF negative
            log-likelihood of the sequences, divided by the number of labelled tokens — `num_items_in_batch` when
            the Trainer passes it, which counts them over the accumulated batches and all processes, so gradient
            accumulation and DDP equal one big batch. The same scale in both heads lets learning rates carry over.
        return_predictions (`bool`, *optional*): decode `predictions` (and the CRF's `logits`); by default unless the
            model trains on `labels` (the Trainer's step needs only the loss, and decoding costs as much again).
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
        emissions = self.classifier(self.dropout(outputs.last_hidden_state))  # (B, T, C)
        mask = real_tokens(attention_mask, emissions.shape[:2], emissions.device)  # (B, T)
        head = self.head
        loss = None
        if labels is not None:
            if labels.shape != emissions.shape[:2] or labels.is_floating_point():
                raise ValueError(
                    f"labels must be integer tag ids of shape {tuple(emissions.shape[:2])}, got {labels.dtype} "
                    f"{tuple(labels.shape)}"
                )
            check_ids(labels, self.num_labels, "labels", _LABEL_PROBLEM.format("num_labels", self.num_labels), -100)
            scored = mask & (labels != -100)  # (B, T)
            count = kwargs.pop("num_items_in_batch", None)
            count = _at_least_one(scored.sum() if count is None else count)  # an unlabelled batch: loss 0, not 0/0
            loss = head.loss(emissions, labels.masked_fill(~scored, -100), count)
        elif self.crf is not None and self.training and "num_items_in_batch" in kwargs:
            raise ValueError(
                "The Trainer took the labels away from this CRF tagger (label_smoothing_factor or compute_loss_func) "
                "and would train a cross-entropy on its per-token scores, bypassing the CRF. Set "
                "label_smoothing_factor=0 and no compute_loss_func: the CRF computes its own loss."
            )
        if return_predictions is None:
            return_predictions = not self.training or labels is None  # without labels, the tags are the answer
        predictions = head.decode(emissions, mask) if return_predictions else None
        return RnnTokenClassifierOutput(
            loss=loss,
            logits=head.logits(emissions, mask, predictions),
            emissions=emissions,
            predictions=predictions,
            hidden_states=outputs.hidden_states,
        )

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.LongTensor:
        """The tags the model predicts from its emission scores: Viterbi with the CRF, argmax otherwise."""
        return self.head.decode(emissions, mask)

    @torch.no_grad()
    def tag_probabilities(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C) per-token tag probabilities, zero at padding: the CRF's posterior marginals (forward-backward),
        which weigh the transitions like the Viterbi tags do, or the softmax of the emissions."""
        return self.head.probabilities(emissions, mask)

    @torch.no_grad()
    def tag(self, text: str | list[str] | list[list[str]], tokenizer) -> list:
        """Tag raw text, a pre-split sentence (a list of words) or a list of sentences with the model's tokenizer.

        Returns, per sentence, `(word, tag, probability)` for each word: the model's tag (Viterbi with the CRF) and
        its probability (the posterior marginal with the CRF, the softmax otherwise). One sentence in, one list out.
        """
        single = isinstance(text, str) or (isinstance(text, list) and bool(text) and isinstance(text[0], str))
        batch = [text] if single else list(text)
        pre_split = not isinstance(batch[0], str) if batch else True
        encoding = tokenizer(batch, is_split_into_words=pre_split, padding=True, return_tensors="pt")
        was_training = self.training
        output = self.eval()(**{name: tensor.to(self.device) for name, tensor in encoding.items()})
        self.train(was_training)
        probabilities = self.tag_probabilities(output.emissions, output.predictions != -100)
        results = []
        for row, sentence in enumerate(batch):
            words: dict[int, tuple[str, str, float]] = {}  # a word's first piece carries its tag
            for position, word in enumerate(encoding.word_ids(row)):
                if word is None or word in words:
                    continue
                label = int(output.predictions[row, position])
                start, end = encoding.token_to_chars(row, position) if not pre_split else (None, None)
                surface = sentence[word] if pre_split else sentence[start:end]
                words[word] = (surface, self.config.id2label[label], float(probabilities[row, position, label]))
            if pre_split and len(words) != len(sentence):
                missing = next(i for i in range(len(sentence)) if i not in words)
                raise ValueError(
                    f"word {missing} of sentence {row} ({sentence[missing]!r}) gives the tokenizer no token"
                )
            results.append([words[index] for index in sorted(words)])
        return results[0] if single else results


__all__ = ["RnnForTokenClassification"]
