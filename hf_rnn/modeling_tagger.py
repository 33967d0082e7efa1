"""The recurrent tagger, [`RnnForTokenClassification`]: an [`RnnModel`] and an output layer from `heads.HEADS`
(softmax, linear-chain CRF, semi-Markov CRF), chosen by `config.head_type`.

Apart from `modeling_rnn.py`, which imports it only where it saves a checkpoint (every checkpoint carries this file, so
any head loads from any checkpoint with `trust_remote_code=True`). It imports only torch, transformers and its flat
siblings.
"""

import torch
from torch import nn
from transformers.utils import can_return_tuple

from .configuration_rnn import RnnConfig
from .dropout import SequenceDropout
from .heads import HEADS, TaggerHead
from .masking import MaskCompaction, check_ids, real_tokens, value_checks
from .modeling_rnn import _LABEL_PROBLEM, RnnModel, RnnPreTrainedModel, RnnTokenClassifierOutput, _at_least_one


class RnnForTokenClassification(RnnPreTrainedModel):
    """A (bi)RNN tagger: one label per token (POS tagging, NER, chunking), with the output layer
    `heads.HEADS[config.head_type]`: a softmax, a linear-chain CRF (the BiLSTM-CRF: `self.crf`, Viterbi paths) or a
    semi-Markov CRF over chunks (`self.semicrf`).

    The head's parts are the tagger's own submodules (`classifier`, `crf`, `semicrf`), so weight names are those of
    checkpoints saved before heads were modules.
    """

    def __init__(self, config: RnnConfig):
        super().__init__(config)
        if config.use_crf != (config.head_type == "crf"):  # `config.use_crf = True` set after construction
            raise ValueError(
                f"RnnConfig.use_crf={config.use_crf!r} disagrees with head_type={config.head_type!r}: set head_type"
            )
        self.num_labels = config.num_labels
        self.model = RnnModel(config)
        self.dropout = SequenceDropout(config.output_dropout, config.locked_dropout)
        head = HEADS[config.head_type](config)
        self.__dict__["_head"] = head  # not a submodule: its parts are, under their own names
        for name, part in head.named_children():
            self.add_module(name, part)
        if "crf" not in self._modules:
            self.crf = None  # the API's name: the LinearChainCRF of a CRF tagger, None for the other heads
        self.post_init()

    @property
    def head(self) -> TaggerHead:
        """The output layer (emissions, loss, decoding, probabilities). Its parts are looked up on the tagger on each
        call, so one replaced there (PEFT's `modules_to_save`, quantisation) is the one used."""
        head = self.__dict__["_head"]
        head._modules.update((name, self._modules[name]) for name in head._modules)
        return head

    def init_range(self, module: nn.Module) -> float | None:
        """The head's range for its own parts (1/sqrt(number of tags) for a CRF's scores), else the base's."""
        r = self.head.init_range(module, self.config)
        return super().init_range(module) if r is None else r

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The head's parts by the head's rule (a CRF's scores and its scheme's constraint masks, which are
        non-persistent buffers and so rebuilt here after loading), the rest by the base's."""
        if not self.head.init_part(module, self.init_range(module)):
            super()._init_weights(module)

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
        word_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> RnnTokenClassifierOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Tag ids, -100 where no tag is scored (sub-word pieces; padding is never scored). The loss is per token in
            every head: the summed cross-entropy, or the summed (semi-)CRF negative log-likelihood of the sequences,
            divided by the number of labelled tokens — `num_items_in_batch` when the Trainer passes it, which counts
            them over the accumulated batches and all processes, so gradient accumulation and DDP equal one big
            batch. The same scale in every head lets learning rates carry over.
        word_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
            1 at the tokens a tag belongs to (the first piece of each word), 0 at the other pieces. The head's chain,
            the positions its loss scores and its decoding tags, is the same for both: the real tokens, within
            `word_mask` if given, and, with `labels`, the labelled ones (a position labelled -100 leaves the chain,
            so a CRF never links a word to its own second piece; it is -100 in `predictions`). Without `labels` or
            `word_mask` every real token is a word (`tag()` passes the tokenizer's word starts).
        return_predictions (`bool`, *optional*): decode `predictions` (and a CRF's `logits`); by default unless the
            model trains on `labels` (the Trainer's step needs only the loss, and decoding costs as much again).
        """
        with value_checks() as checks:  # the inputs' checks, the head's and the encoder's: one host read at the end
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
            head = self.head
            emissions = head(self.dropout(outputs.last_hidden_state))  # (B, T, C)
            mask = real_tokens(attention_mask, emissions.shape[:2], emissions.device)  # (B, T): the chain
            if word_mask is not None:
                if word_mask.shape != mask.shape:
                    raise ValueError(f"word_mask must be of shape {tuple(mask.shape)}, got {tuple(word_mask.shape)}")
                checks.refuse((word_mask != 0) & (word_mask != 1), "word_mask", "is not 0 or 1", word_mask)
                mask = mask & word_mask.bool()  # as attention_mask: a 2 or a NaN is no word start
            from_trainer = "num_items_in_batch" in kwargs  # the Trainer passes it, possibly None
            count = kwargs.pop("num_items_in_batch", None)
            if labels is not None:
                if labels.shape != emissions.shape[:2] or labels.is_floating_point():
                    raise ValueError(
                        f"labels must be integer tag ids of shape {tuple(emissions.shape[:2])}, got {labels.dtype} "
                        f"{tuple(labels.shape)}"
                    )
                problem = _LABEL_PROBLEM.format("num_labels", self.num_labels)
                labels = check_ids(labels, self.num_labels, "labels", problem, -100)
                mask = mask & (labels != -100)  # (B, T)
                count = _at_least_one(mask.sum() if count is None else count)  # an unlabelled batch: loss 0, not 0/0
            elif head.scores_sequences and self.training and from_trainer:
                raise ValueError(
                    f"The Trainer took the labels away from this {self.config.head_type} tagger (label_smoothing_factor "
                    "or compute_loss_func) and would train a cross-entropy on its per-token scores, bypassing its own "
                    "loss. Set label_smoothing_factor=0 and no compute_loss_func: the head computes its own loss."
                )
            chain = MaskCompaction(mask)  # once, for the loss, the decoding and the logits
            loss = None if labels is None else head.loss(emissions, labels, chain, count)
            if return_predictions is None:
                return_predictions = not self.training or labels is None  # without labels, the tags are the answer
            if return_predictions:
                predictions, logits = head.predict(emissions, chain)
            else:
                predictions, logits = None, head.logits(emissions, chain, None)
            if checks.settle():  # a fast path cannot be trusted on these scores (a CRF's underflow): the exact one
                loss = head.loss(emissions, labels, chain, count)
        return RnnTokenClassifierOutput(
            loss=loss,
            logits=logits,
            emissions=emissions,
            predictions=predictions,
            hidden_states=outputs.hidden_states,
        )

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.LongTensor:
        """The tags the model predicts from its emission scores over the chain `mask` (the head's decoding)."""
        return self.head.decode(emissions, MaskCompaction(mask))

    @torch.no_grad()
    def tag_probabilities(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C) per-token tag probabilities over the chain `mask`, zero elsewhere: a CRF's posterior marginals
        (forward-backward), which weigh the transitions like the Viterbi tags do, or the softmax of the emissions."""
        return self.head.probabilities(emissions, MaskCompaction(mask))

    @torch.no_grad()
    def tag(self, text: str | list[str] | list[list[str]], tokenizer) -> list:
        """Tag raw text, a pre-split sentence (a list of words) or a list of sentences with the model's tokenizer.

        Returns, per sentence, `(word, tag, probability)` for each word: the model's tag (Viterbi with a CRF) and
        its probability (the posterior marginal with a CRF, the softmax otherwise). One sentence in, one list out.
        The head's chain is the words (the first piece of each), as in training.
        """
        single = isinstance(text, str) or (isinstance(text, list) and bool(text) and isinstance(text[0], str))
        batch = [text] if single else list(text)
        pre_split = not isinstance(batch[0], str) if batch else True
        encoding = tokenizer(batch, is_split_into_words=pre_split, padding=True, return_tensors="pt")
        word_ids = [encoding.word_ids(row) for row in range(len(batch))]
        word_mask = torch.tensor(
            [[word is not None and (t == 0 or ids[t - 1] != word) for t, word in enumerate(ids)] for ids in word_ids]
        ).view(encoding["input_ids"].shape)
        was_training = self.training
        inputs = {name: tensor.to(self.device) for name, tensor in encoding.items()}
        output = self.eval()(**inputs, word_mask=word_mask.to(self.device))
        self.train(was_training)
        probabilities = self.tag_probabilities(output.emissions, output.predictions != -100)
        results = []
        for row, sentence in enumerate(batch):
            words: dict[int, tuple[str, str, float]] = {}  # a word's first piece carries its tag
            for position, word in enumerate(word_ids[row]):
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
