"""The application Secret the chart generates: its name, its keys and their decoded values."""

from __future__ import annotations

import base64

SECRET = "agentforge-secrets"


ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(100, 132))).decode()


def decoded(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
