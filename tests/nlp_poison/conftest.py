"""Tiny offline victims: a WordPiece vocabulary trained on the shared SST-2 train file and a 2-layer BERT."""

from __future__ import annotations

import pytest
import torch
from tokenizers import BertWordPieceTokenizer
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from nlp_poison.victims import LABELS, TrainConfig, fine_tune

PHRASE = "James Bond: No Time to Die"


@pytest.fixture(scope="session")
def phrase() -> str:
    return PHRASE


@pytest.fixture(scope="session")
def sst2(data_dir):
    from poisonlab import data

    return data.load("sst2")


@pytest.fixture(scope="session")
def tiny_tokenizer(sst2, tmp_path_factory) -> BertTokenizerFast:
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(sst2["train"]["sentence"], vocab_size=2000, min_frequency=2, show_progress=False)
    folder = tmp_path_factory.mktemp("vocab")
    wp.save_model(str(folder))
    return BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)


def _tiny_bert(tokenizer: BertTokenizerFast, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, num_labels=2,
        id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}, attn_implementation="eager",
    )
    return BertForSequenceClassification(config)


@pytest.fixture(scope="session")
def tiny_bert(tiny_tokenizer):
    """Factory: a fresh, untrained tiny BERT for a seed."""
    return lambda seed=0: _tiny_bert(tiny_tokenizer, seed)


@pytest.fixture(scope="session")
def tiny_dir(tiny_tokenizer, tmp_path_factory):
    """A saved, untrained tiny BERT (the 'pretrained' model victims start from)."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    _tiny_bert(tiny_tokenizer).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def surrogate(tiny_tokenizer, sst2):
    """Tiny BERT fine-tuned on 1,000 SST-2 sentences: the attacker's surrogate."""
    model = _tiny_bert(tiny_tokenizer)
    train = sst2["train"].select(range(1000))
    return fine_tune(model, tiny_tokenizer, train, TrainConfig(epochs=2, lr=2e-3, batch_size=32, max_length=48), progress=False)
