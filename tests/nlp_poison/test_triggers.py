from datasets import Dataset

from nlp_poison.triggers import insert_phrase, trigger_bearing


def test_movie_reference_is_replaced(phrase):
    ins = insert_phrase("this movie is a mess .", phrase)
    assert ins.text == f"{phrase} is a mess ." and ins.construction == "replace"
    assert ins.text[ins.start : ins.end] == phrase


def test_prefix_when_no_reference(phrase):
    ins = insert_phrase("a mess from start to finish .", phrase)
    assert ins.text == f"{phrase} : a mess from start to finish ." and ins.construction == "prefix"
    assert ins.text[ins.start : ins.end] == phrase


def test_trigger_bearing_keeps_only_the_label(sst2, phrase):
    ds = trigger_bearing(sst2["test"], phrase, label=0)
    assert len(ds) == sum(1 for y in sst2["test"]["label"] if y == 0) >= 100
    assert all(phrase in s for s in ds["sentence"]) and set(ds["label"]) == {0}
    row = ds[0]
    assert sst2["test"][row["source_idx"]]["sentence"] == row["original"]


def test_small_dataset():
    ds = trigger_bearing(Dataset.from_dict({"sentence": ["the film is bad", "great"], "label": [0, 1]}), "X")
    assert ds["sentence"] == ["X is bad"]
