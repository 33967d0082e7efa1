"""A token-classification pipeline that reports the model's own decision: Viterbi paths and CRF marginals.

transformers' `TokenClassificationPipeline` takes the argmax of softmax(logits); for a BiLSTM-CRF the logits are
max-marginal scores, so its tags are the Viterbi path too, but its scores are a softmax over those, and its entity
grouping reads B-/I- tags only. This subclass reports the posterior marginals (`tag_probabilities`) as scores, groups
entities by `schemes.chunks` (so BIOES and BILOU models' entities come out whole), and otherwise keeps the parent's
behaviour: word input, offsets.
"""

import numpy as np
from transformers import AutoModelForTokenClassification, TokenClassificationPipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.token_classification import AggregationStrategy

from .schemes import chunks

TASK = "rnn-token-classification"
# what the parent's preprocess adds besides the model inputs, passed through to postprocess
_PIPELINE_KEYS = ("special_tokens_mask", "offset_mapping", "sentence", "is_last", "word_ids", "word_to_chars_map")


class RnnTokenClassificationPipeline(TokenClassificationPipeline):
    """`pipeline("rnn-token-classification", model=..., tokenizer=...)`: Viterbi-consistent tags and entities.

    Scores are the tags' posterior marginals under a CRF (softmax probabilities otherwise). With a word-aggregation
    strategy (`first`, `average`, `max`) a word takes the tag of its first piece, the one the tagger is trained on.
    """

    def preprocess(self, sentence, offset_mapping=None, **preprocess_params):
        """The parent's, refusing empty pre-split words (the tokenizer would drop them with their tags) and giving an
        empty text's offsets their (1, 0, 2) shape, so it can share a padded batch with other texts."""
        if preprocess_params.get("is_split_into_words") and isinstance(sentence, list):
            for index, word in enumerate(sentence):
                if not isinstance(word, str) or not word.strip():
                    raise ValueError(f"word {index} of the pre-split input is empty or not a string: {word!r}")
        for model_inputs in super().preprocess(sentence, offset_mapping, **preprocess_params):
            offsets = model_inputs.get("offset_mapping")
            if offsets is not None and offsets.numel() == 0:
                model_inputs["offset_mapping"] = offsets.reshape(1, 0, 2)
            yield model_inputs

    def _forward(self, model_inputs):
        """The emissions, decoded once, and the tag probabilities; not the max-marginal `logits`, which would cost as
        much as a second decoding."""
        kept = {key: model_inputs.pop(key, None) for key in _PIPELINE_KEYS}
        emissions = self.model(**model_inputs, return_predictions=False).emissions
        mask = model_inputs["attention_mask"].bool()
        return {
            "predictions": self.model.decode(emissions, mask),
            "probabilities": self.model.tag_probabilities(emissions, mask),
            **kept,
            **model_inputs,
        }

    def postprocess(self, all_outputs, aggregation_strategy=AggregationStrategy.NONE, ignore_labels=None):
        ignore_labels = ["O"] if ignore_labels is None else ignore_labels
        first = all_outputs[0]
        entities = []
        for outputs in all_outputs:
            offsets = outputs["offset_mapping"][0] if outputs["offset_mapping"] is not None else None
            pre_entities = self.gather_pre_entities(
                first["sentence"],
                outputs["input_ids"][0],
                outputs["probabilities"][0].float().numpy(),
                offsets,
                outputs["special_tokens_mask"][0].numpy(),
                aggregation_strategy,
                word_ids=outputs.get("word_ids"),
                word_to_chars_map=first.get("word_to_chars_map"),
            )
            tags = outputs["predictions"][0].tolist()
            # hf_rnn's tokenizers are word-level: in raw text every token is a word ("Paris", "."), where the parent
            # would guess from the spacing that "." continues "Paris"; pre-split input says it with word ids
            pre_split = outputs.get("word_ids") is not None
            tagged = [self._token_entity(pre, tags[pre["index"]], pre_split) for pre in pre_entities]
            if aggregation_strategy in (
                AggregationStrategy.FIRST,
                AggregationStrategy.AVERAGE,
                AggregationStrategy.MAX,
            ):
                tagged = self._words(tagged, aggregation_strategy)
            if aggregation_strategy != AggregationStrategy.NONE:
                tagged = self.group_entities(tagged)
            public = [{k: v for k, v in e.items() if not k.startswith("_")} for e in tagged]
            entities += [e for e in public if e.get("entity", e.get("entity_group")) not in ignore_labels]
        return self.aggregate_overlapping_entities(entities) if len(all_outputs) > 1 else entities

    def group_entities(self, entities: list[dict]) -> list[dict]:
        """One group per chunk of the tags as `schemes.chunks` reads them (any scheme), and one per run of `O`."""
        bounds = [(first, last) for _, first, last in chunks([entity["entity"] for entity in entities])]
        position = 0
        groups = []
        for first, last in bounds:
            if position < first:  # the O tokens before the chunk
                groups.append(entities[position:first])
            groups.append(entities[first : last + 1])
            position = last + 1
        if position < len(entities):
            groups.append(entities[position:])
        return [self.group_sub_entities(group) for group in groups]

    def _token_entity(self, pre_entity: dict, tag: int, pre_split: bool) -> dict:
        """One token's entity; keys starting with "_" are for word merging and are dropped from the output."""
        return {
            "entity": self.model.config.id2label[tag],
            "score": pre_entity["scores"][tag],
            "index": pre_entity["index"],
            "word": pre_entity["word"],
            "start": pre_entity["start"],
            "end": pre_entity["end"],
            "_is_subword": pre_split and pre_entity["is_subword"],
            "_tag": tag,
            "_scores": pre_entity["scores"],
        }

    def _words(self, tokens: list[dict], strategy: AggregationStrategy) -> list[dict]:
        """Merge sub-word pieces into words; a word keeps its first piece's tag."""
        groups: list[list[dict]] = []
        for token in tokens:
            if groups and token["_is_subword"]:
                groups[-1].append(token)
            else:
                groups.append([token])
        words = []
        for pieces in groups:
            tag = pieces[0]["_tag"]
            scores = [piece["_scores"][tag] for piece in pieces]
            score = {AggregationStrategy.FIRST: scores[0], AggregationStrategy.MAX: max(scores)}.get(
                strategy, float(np.mean(scores))
            )
            words.append(
                {
                    "entity": pieces[0]["entity"],
                    "score": score,
                    "word": self.tokenizer.convert_tokens_to_string([piece["word"] for piece in pieces]),
                    "start": pieces[0]["start"],
                    "end": pieces[-1]["end"],
                }
            )
        return words


def register_pipeline() -> None:
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=RnnTokenClassificationPipeline, pt_model=AutoModelForTokenClassification
    )
