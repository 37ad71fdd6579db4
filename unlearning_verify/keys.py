"""The owner's secret: a 256-bit key from which every watermark parameter is derived.

Guo et al. (2024, §II-B) derive a per-owner marker as PRF(k_u, ·); here the PRF is HMAC-SHA256 in
counter mode. The key file is JSON created owner-only (0o600 via ``os.open`` flags, so it is never
readable by others, not even briefly); the secret never appears in ``repr`` or logs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labcore.errors import InputError

SECRET_BYTES = 32
KEY_FILE_VERSION = 1


@dataclass(frozen=True)
class OwnerKey:
    """A data owner's secret plus the public watermark settings it was used with."""

    secret: bytes = field(repr=False)
    owner: int = 0
    family: str = "lsb"
    num_classes: int = 10

    def __post_init__(self) -> None:
        if len(self.secret) != SECRET_BYTES:
            raise InputError(f"the key secret must be {SECRET_BYTES} bytes, got {len(self.secret)}; generate a new key")

    @classmethod
    def generate(cls, owner: int, family: str, num_classes: int, seed: int | None = None) -> "OwnerKey":
        """A fresh random key; ``seed`` makes it reproducible (simulations and benchmarks only)."""
        if seed is None:
            secret = secrets.token_bytes(SECRET_BYTES)
        else:
            secret = hashlib.sha256(f"poisonlab-simulated-owner-key/{seed}/{owner}".encode()).digest()
        return cls(secret, owner, family, num_classes)

    def prf(self, label: str, num_bytes: int) -> bytes:
        """``num_bytes`` pseudo-random bytes: HMAC-SHA256(secret, label ‖ counter) blocks."""
        out = bytearray()
        counter = 0
        while len(out) < num_bytes:
            out += hmac.new(self.secret, f"{label}/{counter}".encode(), hashlib.sha256).digest()
            counter += 1
        return bytes(out[:num_bytes])

    def rng(self, label: str) -> np.random.Generator:
        """A numpy generator seeded by the PRF, for key-derived noise, grids and positions."""
        return np.random.default_rng(int.from_bytes(self.prf(label, 16), "big"))

    def target_label(self) -> int:
        """The owner's backdoor target class (a key-derived random label, as in Athena)."""
        return int.from_bytes(self.prf("target", 8), "big") % self.num_classes

    def save(self, path: Path) -> None:
        """Write the key file, created with mode 0o600; an existing file is an input error."""
        payload = json.dumps({
            "version": KEY_FILE_VERSION, "owner": self.owner, "family": self.family,
            "num_classes": self.num_classes, "secret": self.secret.hex(),
        }).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:
            raise InputError(f"key file {path} already exists; pass it to reuse it or choose a new path") from None
        except OSError as exc:
            raise InputError(f"cannot create key file {path}: {exc.strerror}; choose a writable path") from None
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, payload)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: Path) -> "OwnerKey":
        """Read a key file; missing, unreadable, others-readable or malformed files are input errors."""
        path = Path(path)
        if path.is_dir():
            raise InputError(f"key file {path} is a folder; pass the --key-file written by 'poisonlab unlearn mark'")
        if not path.is_file():
            raise InputError(f"key file {path} not found; pass the --key-file written by 'poisonlab unlearn mark'")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise InputError(f"key file {path} is accessible by other users (mode {mode:o}); run: chmod 600 {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            secret = bytes.fromhex(data["secret"])
            return cls(secret, int(data["owner"]), str(data["family"]), int(data["num_classes"]))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise InputError(f"{path} is not a poisonlab key file; pass the file written by 'unlearn mark'") from None
