"""logctl: ship logs through RabbitMQ and operate the queues they travel on."""

from __future__ import annotations

__version__ = "0.1.0"
