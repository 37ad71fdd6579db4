"""The JSON-over-HTTP prediction protocol of ``poisonlab unlearn serve`` and ``verify --endpoint``.

POST ``/predict`` with ``{"inputs": [...]}`` (images (N, C, H, W) in [0, 1] as nested lists) answers
``{"labels": [N ints]}`` and, when served, ``{"probabilities": [[K floats] × N]}``. The server is a
FastAPI app run by uvicorn, bound to 127.0.0.1. The client (:func:`http_endpoint`) is what a data
owner holds: black-box access with a query budget, retries with back-off, a rate limit, and a
one-line error for an endpoint that times out, closes the connection or answers malformed JSON.
"""

from __future__ import annotations

import math
import socket
import time
from dataclasses import dataclass
from typing import Callable

import torch
from pydantic import BaseModel
from torch import nn

from labcore.errors import InputError
from unlearning_verify.oracles import Endpoint

OUTPUTS = ("label", "probabilities")


class PredictRequest(BaseModel):
    """The body of POST /predict."""

    inputs: list


def create_app(model: nn.Module, image_shape: tuple[int, int, int], output: str = "probabilities"):
    """The FastAPI app serving ``model`` (labels, plus probabilities when ``output`` says so)."""
    from fastapi import FastAPI, HTTPException

    app = FastAPI(title="poisonlab simulated provider")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "image_shape": list(image_shape), "output": output}

    @app.post("/predict")
    def predict(req: PredictRequest) -> dict:
        try:
            x = torch.tensor(req.inputs, dtype=torch.float32)
        except (TypeError, ValueError) as exc:
            raise HTTPException(422, f"inputs are not a numeric array: {exc}") from None
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(image_shape):
            raise HTTPException(422, f"inputs must have shape (N, {', '.join(map(str, image_shape))})")
        with torch.no_grad():
            probs = model(x).softmax(1)
        answer: dict = {"labels": probs.argmax(1).tolist()}
        if output == "probabilities":
            answer["probabilities"] = probs.tolist()
        return answer

    return app


def serve(app, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Bind ``host:port`` (0 picks a free port), announce the URL, then serve until interrupted."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise InputError(f"cannot bind {host}:{port}: {exc.strerror}; choose another --port") from None
    announce(f"http://{host}:{sock.getsockname()[1]}")
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


@dataclass
class ClientConfig:
    """Query budget (images), per-request timeout (s), retries, rate limit (requests/s, 0 = none)."""

    budget: int = 1000
    timeout: float = 10.0
    retries: int = 2
    rate_limit: float = 0.0
    batch_size: int = 64

    def validate(self) -> None:
        """Refuse values out of range, whether or not an endpoint is queried (a typo is a typo)."""
        checks = [
            (self.budget >= 1, f"--budget must be ≥ 1 image, got {self.budget}"),
            (math.isfinite(self.timeout) and self.timeout > 0, f"--timeout must be a finite number of seconds > 0, got {self.timeout}"),
            (self.retries >= 0, f"--retries must be ≥ 0, got {self.retries}"),
            (math.isfinite(self.rate_limit) and self.rate_limit >= 0,
             f"--rate-limit must be a finite number of requests per second ≥ 0 (0: none), got {self.rate_limit}"),
            (self.batch_size >= 1, f"client.batch_size must be ≥ 1, got {self.batch_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)


class Client:
    """Posts image batches to ``URL/predict`` (``URL`` as ``unlearn serve`` prints it, or the endpoint itself)
    and checks every answer."""

    def __init__(self, url: str, cfg: ClientConfig, num_classes: int) -> None:
        import httpx

        cfg.validate()
        base = url.rstrip("/")
        self.url, self.cfg, self.num_classes = base if base.endswith("/predict") else base + "/predict", cfg, num_classes
        self.http = httpx.Client(timeout=cfg.timeout)
        self.used, self.last = 0, 0.0
        self.probabilities: bool | None = None

    def ask(self, x: torch.Tensor) -> dict:
        """Labels (LongTensor) and probabilities (or None) for the images ``x``, batch by batch."""
        if self.used + len(x) > self.cfg.budget:
            raise InputError(f"the endpoint query budget of {self.cfg.budget} images is exhausted; raise --budget")
        labels, probs = [], []
        for chunk in x.split(self.cfg.batch_size):
            answer = self.check(self.post(chunk), len(chunk))
            labels.append(answer["labels"])
            probs.append(answer.get("probabilities"))
            self.used += len(chunk)
        return {"labels": torch.cat(labels),
                "probabilities": None if any(p is None for p in probs) else torch.cat(probs)}

    def post(self, chunk: torch.Tensor) -> object:
        import httpx

        problem = ""
        for attempt in range(self.cfg.retries + 1):
            if self.cfg.rate_limit:
                time.sleep(max(0.0, self.last + 1.0 / self.cfg.rate_limit - time.monotonic()))
            self.last = time.monotonic()
            try:
                response = self.http.post(self.url, json={"inputs": chunk.tolist()})
            except httpx.TimeoutException:
                problem = f"timed out after {self.cfg.timeout:g} s"
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__})"
            else:
                if response.status_code < 500:
                    return self.parse(response)
                problem = f"HTTP {response.status_code}"
            time.sleep(min(2.0, 0.1 * 2 ** attempt))
        raise InputError(f"endpoint {self.url} {problem} ({self.cfg.retries + 1} tries); check --endpoint and the server")

    def parse(self, response) -> object:
        if response.status_code != 200:
            raise InputError(f"endpoint {self.url} refused the query (HTTP {response.status_code}); check --endpoint")
        try:
            return response.json()
        except ValueError:
            raise InputError(f"endpoint {self.url} answered malformed JSON; it must speak the poisonlab predict protocol") from None

    def check(self, answer: object, n: int) -> dict:
        """``labels``: n ints in 0..K−1; ``probabilities`` (optional): n rows of K non-negative floats."""
        bad = f"endpoint {self.url} answered malformed JSON"
        if not isinstance(answer, dict) or not isinstance(answer.get("labels"), list) or len(answer["labels"]) != n:
            raise InputError(f"{bad}: expected {{'labels': [{n} ints]}}; it must speak the poisonlab predict protocol")
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < self.num_classes for v in answer["labels"]):
            raise InputError(f"{bad}: labels must be class indices 0..{self.num_classes - 1}")
        out = {"labels": torch.tensor(answer["labels"], dtype=torch.long)}
        if answer.get("probabilities") is not None:
            try:
                probs = torch.tensor(answer["probabilities"], dtype=torch.float64)
            except (TypeError, ValueError):
                raise InputError(f"{bad}: probabilities must be numbers") from None
            if probs.shape != (n, self.num_classes) or not torch.isfinite(probs).all() or (probs < 0).any():
                raise InputError(f"{bad}: probabilities must be {n} rows of {self.num_classes} non-negative numbers")
            out["probabilities"] = probs.float()
        return out


def http_endpoint(url: str, cfg: ClientConfig, image_shape: tuple[int, int, int], num_classes: int) -> Endpoint:
    """An :class:`Endpoint` over HTTP; one probe query (a blank image) learns whether it serves probabilities."""
    client = Client(url, cfg, num_classes)
    served_probabilities = client.ask(torch.zeros(1, *image_shape))["probabilities"] is not None
    return Endpoint(lambda x: client.ask(x)["labels"],
                    (lambda x: client.ask(x)["probabilities"]) if served_probabilities else None, used=1)
