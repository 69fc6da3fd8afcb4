"""External PostgreSQL and Redis values (externalDatabase, externalRedis) and the connection Secret they render."""

from __future__ import annotations

import base64

PASSWORD = "p@ss:w/rd%?#+ &=é"


EXTERNAL_DB = {"postgresql": {"enabled": False},
               "externalDatabase": {"host": "db.example.net", "port": 6432, "database": "af_prod",
                                    "username": "af_app", "password": PASSWORD}}


def secret_data(objects) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in objects.get("Secret", "agentforge-secrets")["data"].items()}


USERNAME = "af@team:1/%é"  # an ACL user name: anything but whitespace


DB_CA = {"configMap": "db-ca", "key": "bundle.pem"}
