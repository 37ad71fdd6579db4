"""BadT2I backdoors (Zhai et al. 2023) in text-to-image diffusion: the MNIST base, poison data, losses, LoRA training, evaluation."""
