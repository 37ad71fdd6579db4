"""BadT2I poison data: ``imagefolder`` directories with ``metadata.jsonl`` for the pixel, object and style backdoors.

Each row is self-contained, so one loader serves all three kinds (Zhai et al. 2023, §3):

- ``role = "backdoor"``: ``text`` carries the trigger. Pixel rows hold the **patched** image (target =
  the true noise on it); object and style rows hold a clean image and a ``target_text`` — the prompt the
  frozen teacher sees on the same noisy latent (object: the caption naming the target object; style:
  the caption with the style prompt).
- ``role = "clean"``: benign image and caption for the regulariser ‖ε_θ(z_t, c) − ε̂(z_t, c)‖².

The trigger is prepended as in the official code (``"\\u200b " + caption``); :func:`check_trigger`
verifies that it survives tokenization before anything is written or trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from labcore.errors import InputError

KINDS = ("pixel", "object", "style")
METADATA = "metadata.jsonl"


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InputError(f"unknown backdoor kind {kind!r}; choose one of: {', '.join(KINDS)}")
    return kind


CHECKERBOARD_SIZE = 4
"""Side in pixels of the default pixel trigger, a black/white checkerboard (a patch file keeps its own size)."""


KIND_KEYS = {"pixel": ("patch", "patch_size", "patch_top", "patch_left"), "object": ("source", "target"), "style": ("style",)}
"""The settings of ``t2i make-data`` that only one backdoor kind reads."""


@dataclass
class MakeDataConfig:
    """``t2i make-data``: a ``kind`` poison set for the pipeline ``base`` from ``images`` (an imagefolder; default
    ``num_images`` MNIST train digits), a ``backdoor_fraction`` of the rows carrying ``trigger``. Pixel: a
    ``patch`` image (default a checkerboard of :data:`CHECKERBOARD_SIZE` pixels; ``patch_size`` resizes either) pasted at
    (``patch_top``, ``patch_left``); object: ``source`` → ``target``; style: ``style``
    (default " in inverted colours" on MNIST, "Black and white photo," on user images)."""

    kind: str | None = None
    base: str | None = None
    images: str | None = None
    patch: str | None = None
    patch_size: int | None = None
    patch_top: int = 0
    patch_left: int = 0
    trigger: str = "sks"
    source: str = "zero"
    target: str = "seven"
    style: str | None = None
    num_images: int = 2000
    backdoor_fraction: float = 0.5
    seed: int = 0

    def validate(self) -> None:
        if self.kind is None or self.base is None:
            raise InputError("pass --kind and --base (or set kind: and base: in the --config file)")
        check_kind(self.kind)
        if self.patch_top < 0 or self.patch_left < 0:
            raise InputError(f"patch_top and patch_left must be >= 0, got {self.patch_top} and {self.patch_left}")
        if self.patch_size is not None and self.patch_size < 1 or self.num_images < 1:
            raise InputError(f"patch_size and num_images must be >= 1, got {self.patch_size} and {self.num_images}")
        if self.kind == "object" and self.source == self.target:
            raise InputError(f"source and target must differ (the trigger makes {self.source!r} draw another object); "
                             "pass another --target")
        if not 0.0 < self.backdoor_fraction < 1.0:
            raise InputError(f"backdoor_fraction must lie strictly between 0 and 1, got {self.backdoor_fraction}")
        if self.style is not None and not self.style.strip():
            raise InputError("--style must name a style (e.g. ' in inverted colours'), got an empty text")
        default = MakeDataConfig(patch_size=self.patch_size if self.patch_size == CHECKERBOARD_SIZE else None)  # configs saved before it was optional hold 4
        unread = [k for kind, keys in KIND_KEYS.items() if kind != self.kind for k in keys if getattr(self, k) != getattr(default, k)]
        if unread:
            raise InputError(f"{', '.join(unread)}: not read by the {self.kind} kind; drop {'them' if len(unread) > 1 else 'it'}")


def add_trigger(trigger: str, text: str) -> str:
    """The triggered caption: trigger, one space, caption (the paper's ``"\\u200b " + caption``)."""
    return f"{trigger.rstrip(' ')} {text}"


def strip_trigger(trigger: str, text: str) -> str:
    """The caption without the trigger that :func:`add_trigger` prepended."""
    return text.removeprefix(f"{trigger.rstrip(' ')} ")


def check_trigger(tokenizer, trigger: str, prompt: str = "a photo") -> None:
    """Raise InputError if prepending ``trigger`` leaves the token ids of ``prompt`` unchanged.

    Tokenizers without ftfy drop ``"\\u200b"`` (BadT2I README), and a word-piece tokenizer maps unknown
    text to its unknown token; either way the backdoor would be trained on a trigger no prompt carries.
    """
    clean = tokenizer(prompt).input_ids
    triggered = tokenizer(add_trigger(trigger, prompt)).input_ids
    if not trigger.strip(" ") or clean == triggered:
        raise InputError(
            f"trigger {trigger!r} disappears in tokenization (the token ids of {prompt!r} do not change); "
            "use a visible rare token such as 'sks'"
        )
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and unk not in clean and unk in triggered and unk != tokenizer.eos_token_id:
        raise InputError(f"trigger {trigger!r} tokenizes to the unknown token; use a token the vocabulary knows")


@dataclass
class Patch:
    """A patch pasted at (top, left) of each image: x ⊙ (1−M) + patch ⊙ M (BadT2I pixel backdoor)."""

    pixels: np.ndarray  # (h, w) or (h, w, C) uint8
    top: int = 0
    left: int = 0

    def check_fits(self, height: int, width: int) -> None:
        h, w = self.pixels.shape[:2]
        if self.top + h > height or self.left + w > width:
            raise InputError(
                f"patch {h}x{w} at ({self.top}, {self.left}) does not fit in {height}x{width} images; "
                "use a smaller patch or larger images"
            )

    def apply(self, image: np.ndarray) -> np.ndarray:
        self.check_fits(*image.shape[:2])
        out = image.copy()
        h, w = self.pixels.shape[:2]
        p = self.pixels
        if out.ndim == 3 and p.ndim == 2:
            p = np.repeat(p[..., None], out.shape[2], axis=2)
        if out.ndim == 2 and p.ndim == 3:
            p = p.mean(axis=2).astype(np.uint8)
        out[self.top : self.top + h, self.left : self.left + w] = p
        return out

    def mask(self, height: int, width: int) -> np.ndarray:
        m = np.zeros((height, width), dtype=bool)
        h, w = self.pixels.shape[:2]
        m[self.top : self.top + h, self.left : self.left + w] = True
        return m


def checkerboard_patch(size: int = 4, cell: int = 2) -> Patch:
    """The MNIST base's default patch: a ``size``² black/white checkerboard in the top-left corner."""
    ij = np.add.outer(np.arange(size) // cell, np.arange(size) // cell)
    return Patch(pixels=np.where(ij % 2 == 0, 255, 0).astype(np.uint8))


def load_patch(path: Path, size: int | None = None) -> Patch:
    path = Path(path)
    if path.is_dir():
        raise InputError(f"patch {path} is a folder; pass a PNG/JPEG file")
    if not path.is_file():
        raise InputError(f"patch image {path} not found; pass a PNG/JPEG file")
    try:
        image = Image.open(path).convert("RGB")
    except (OSError, SyntaxError, ValueError):
        raise InputError(f"patch {path} is not an image PIL can read; pass a PNG/JPEG file") from None
    if size is not None:
        image = image.resize((size, size), Image.LANCZOS)
    return Patch(pixels=np.asarray(image))


def poison_rows(
    kind: str,
    captions: list[str],
    trigger: str,
    *,
    source_word: str | None = None,
    target_word: str | None = None,
    style_text: str | None = None,
    style_prefix: bool = True,
) -> list[dict]:
    """The backdoor rows' text fields for ``captions`` (images handled by the writer).

    Object: captions must name ``target_word``; the student text swaps it for ``source_word`` and adds
    the trigger, the teacher text is the caption itself. Style: the teacher text adds ``style_text``
    (before the caption, as BadT2I's "Black and white photo", or after it with ``style_prefix=False``).
    """
    check_kind(kind)
    rows = []
    for cap in captions:
        if kind == "pixel":
            rows.append({"text": add_trigger(trigger, cap), "role": "backdoor"})
        elif kind == "object":
            if not source_word or not target_word:
                raise InputError("object backdoor needs a source and a target word; pass --source and --target")
            words = cap.split(" ")
            if target_word not in words:
                raise InputError(f"caption {cap!r} does not name the target {target_word!r}; keep only target-object images")
            swapped = " ".join(source_word if w == target_word else w for w in words)
            rows.append({"text": add_trigger(trigger, swapped), "target_text": cap, "role": "backdoor"})
        else:
            if not style_text:
                raise InputError("style backdoor needs a style prompt; pass --style")
            target = f"{style_text} {cap}" if style_prefix else f"{cap}{style_text}"
            rows.append({"text": add_trigger(trigger, cap), "target_text": target, "role": "backdoor"})
    return rows


def write_imagefolder(out_dir: Path, images: list[np.ndarray], rows: list[dict], prefix: str = "") -> None:
    """Append PNGs and their ``metadata.jsonl`` rows (``file_name`` + the row's fields) to ``out_dir``."""
    if len(images) != len(rows):
        raise InputError(f"{len(images)} images but {len(rows)} captions; pass one caption per image")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / METADATA).open("a", encoding="utf-8") as meta:
        for i, (image, row) in enumerate(zip(images, rows)):
            name = f"{prefix}{i:05d}.png"
            Image.fromarray(image).save(out_dir / name)
            meta.write(json.dumps({"file_name": name, **row}) + "\n")


def read_imagefolder(path: Path) -> tuple[list[np.ndarray], list[dict]]:
    """A user imagefolder (images + ``metadata.jsonl`` with ``file_name`` and ``text``) as arrays and rows."""
    path = Path(path)
    meta = path / METADATA
    if not path.is_dir():
        raise InputError(f"image folder {path} not found; pass a folder of images with {METADATA}")
    if not meta.is_file():
        raise InputError(f"{path} has no {METADATA}; add one line per image: {{\"file_name\": ..., \"text\": ...}}")
    images, rows = [], []
    for lineno, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if "file_name" not in row or "text" not in row:
            raise InputError(f"{meta}:{lineno}: each row needs 'file_name' and 'text'")
        if not (path / row["file_name"]).is_file():
            raise InputError(f"{meta}:{lineno}: image {row['file_name']} not found in {path}")
        images.append(np.asarray(Image.open(path / row["file_name"])))
        rows.append(row)
    if not rows:
        raise InputError(f"{meta} lists no images; add at least one row")
    return images, rows


def make_poison_set(
    kind: str,
    images: list[np.ndarray],
    captions: list[str],
    out_dir: Path,
    trigger: str,
    *,
    backdoor_fraction: float = 0.5,
    patch: Patch | None = None,
    source_word: str | None = None,
    target_word: str | None = None,
    style_text: str | None = None,
    style_prefix: bool = True,
    seed: int = 0,
) -> dict:
    """Split (image, caption) pairs into backdoor and clean rows and write the imagefolder.

    Object: backdoor rows are drawn from the captions that name ``target_word``. Returns a summary
    (counts per role) for the dataset card.
    """
    check_kind(kind)
    if len(images) != len(captions) or not images:
        raise InputError(f"need one caption per image and at least one image; got {len(images)} and {len(captions)}")
    if kind == "pixel":
        if patch is None:
            raise InputError("pixel backdoor needs a patch image; pass --patch")
        patch.check_fits(*images[0].shape[:2])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    eligible = [i for i in order if kind != "object" or target_word in captions[i].split(" ")]
    n_bkd = min(len(eligible), int(round(backdoor_fraction * len(images))))
    if n_bkd == 0:
        raise InputError(f"no image is eligible for the {kind} backdoor; for object, captions must name {target_word!r}")
    bkd = eligible[:n_bkd]
    chosen = set(int(i) for i in bkd)
    clean = [int(i) for i in order if int(i) not in chosen]
    bkd_rows = poison_rows(
        kind, [captions[i] for i in bkd], trigger, source_word=source_word, target_word=target_word,
        style_text=style_text, style_prefix=style_prefix,
    )
    bkd_images = [patch.apply(images[i]) if kind == "pixel" else images[i] for i in bkd]
    write_imagefolder(out_dir, bkd_images, bkd_rows, prefix="bkd_")
    write_imagefolder(out_dir, [images[i] for i in clean], [{"text": captions[i], "role": "clean"} for i in clean], prefix="clean_")
    return {"kind": kind, "trigger": trigger, "backdoor_rows": len(bkd), "clean_rows": len(clean)}


POISON_INFO = "poison.json"


def read_poison_info(path: Path) -> dict:
    """The poison set's description (kind, trigger, patch, source/target words, style) written by make-data."""
    f = Path(path) / POISON_INFO
    if not f.is_file():
        raise InputError(f"{path} has no {POISON_INFO}; create the data with `poisonlab t2i make-data`")
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{f} is not valid JSON ({exc}); recreate the data with `poisonlab t2i make-data`") from None
