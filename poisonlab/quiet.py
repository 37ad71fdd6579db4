"""The Hugging Face libraries' own logging turned down, for commands whose output is their own lines."""

from __future__ import annotations


def quiet_libraries() -> None:
    """Library logs down to errors and their loading bars off: the transformers load report (the
    classifier head "MISSING", expected when fine-tuning), "Loading weights/pipeline components" bars
    and datasets' "Generating split" lines. Python warnings and errors are left alone."""
    import logging

    import datasets
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
