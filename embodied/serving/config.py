"""`embodied serve`'s settings (``embodied serve --help`` prints them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from embodied.configs.checks import at_least, between


@dataclass
class ServeConfig:
    """A checkpoint behind the openpi websocket and OpenVLA REST protocols (embodied/serving/server.py)."""

    checkpoint: str | None = None  # a checkpoint directory (required), e.g. outputs/train/<time>/checkpoints/last
    host: str = "127.0.0.1"  # loopback only unless allow_remote=true
    port: int = 8000
    allow_remote: bool = False  # listen on a non-loopback host (anyone who reaches it can drive your robot)
    api_key: str | None = None  # require "Authorization: Api-Key <key>" ($EMBODIED_API_KEY when unset)
    # client key -> policy key, added to the defaults (openpi's observation/image, observation/wrist_image,
    # observation/state, prompt; OpenVLA's image, instruction),
    # e.g. {observation/exterior_image_1_left: images/agentview}
    key_map: dict[str, str] = field(default_factory=dict)
    resize_images: bool = True  # resize images of another size to the policy's (false: refuse them)
    max_batch: int = 16  # requests answered by one policy call
    batch_wait_ms: float = 2.0  # how long the first request of a batch waits for others
    max_sessions: int = 64  # concurrent websocket sessions and REST calls
    max_request_mb: float = 16.0  # larger requests are refused (413, or a text frame)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    plugins: list[str] = field(default_factory=list)  # modules to import first (components of your own)

    CHECKS: ClassVar = {
        "port": between(0, 65535), "max_batch": at_least(1), "batch_wait_ms": at_least(0),
        "max_sessions": at_least(1), "max_request_mb": at_least(0.001),
    }  # fmt: skip
