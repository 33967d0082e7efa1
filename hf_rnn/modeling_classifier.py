"""The recurrent sentence classifier, [`RnnForSequenceClassification`]: an [`RnnModel`], a pooled summary of its
outputs and a linear layer.

`modeling_rnn.py` imports it only where it saves a checkpoint (every checkpoint carries this file, so any head loads
from any checkpoint with `trust_remote_code=True`). It imports only torch, transformers and its flat siblings.
"""

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import can_return_tuple

from .configuration_rnn import RnnConfig
from .masking import check_ids, real_tokens, value_checks
from .modeling_rnn import _LABEL_PROBLEM, RnnModel, RnnPreTrainedModel


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
        with value_checks():  # the labels' check and the encoder's, read in one synchronisation
            if labels is not None and self.num_labels > 1 and not labels.is_floating_point():  # class ids
                problem = _LABEL_PROBLEM.format("num_labels", self.num_labels)
                labels = check_ids(labels, self.num_labels, "labels", problem, -100)
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
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


__all__ = ["RnnForSequenceClassification"]
