#!/usr/bin/env python3
"""Refuse to publish a chart version that is already in an OCI registry or not above the highest one there.

    check_version.py REGISTRY CHART VERSION [--plain-http]

REGISTRY is oci://host[:port]/path; the chart's repository is path/CHART. Lists the repository's tags with the
OCI distribution API (GET /v2/<repository>/tags/list, following pagination), reads those that are semantic
versions (helm stores `+` as `_` in tags) and compares them by semver precedence. Credentials come from
REGISTRY_USERNAME/REGISTRY_PASSWORD, else from helm's registry config (HELM_REGISTRY_CONFIG), else none; both
Basic and Bearer-token challenges are answered. Standard library only, so any python3 runs it.

Exit codes: 0 the version may be published, 1 refused, 2 the registry could not be read.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from pathlib import Path

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
TIMEOUT = 30


class RegistryError(RuntimeError):
    pass


def semver_key(version: str) -> tuple:
    """A sort key with semver 2.0 precedence (build metadata ignored). ValueError when not a semver."""
    m = SEMVER.match(version)
    if not m:
        raise ValueError(f"{version!r} is not a semantic version")
    major, minor, patch, pre, _build = m.groups()
    # A release ranks above its pre-releases; numeric identifiers rank below alphanumeric ones.
    pre_key = (1,) if pre is None else (0, *((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    return int(major), int(minor), int(patch), pre_key


def tag_versions(tags: list[str]) -> list[str]:
    """The tags that are semantic versions, as versions (`_` back to `+`), highest first."""
    versions = []
    for tag in tags:
        version = tag.replace("_", "+")
        try:
            semver_key(version)
        except ValueError:
            continue  # latest, signatures (sha256-....sig) and other non-chart tags
        versions.append(version)
    return sorted(versions, key=semver_key, reverse=True)


def split_registry(registry: str) -> tuple[str, str]:
    if not registry.startswith("oci://"):
        raise RegistryError(f"REGISTRY must start with oci://, got {registry!r}")
    host, _, path = registry[len("oci://"):].strip("/").partition("/")
    if not host:
        raise RegistryError(f"REGISTRY {registry!r} names no host")
    return host, path


def credentials(host: str) -> tuple[str, str] | None:
    user, password = os.environ.get("REGISTRY_USERNAME", ""), os.environ.get("REGISTRY_PASSWORD", "")
    if user and password:
        return user, password
    config = Path(os.environ.get("HELM_REGISTRY_CONFIG", Path.home() / ".config/helm/registry/config.json"))
    try:
        auth = json.loads(config.read_text())["auths"][host]["auth"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    user, _, password = base64.b64decode(auth).decode().partition(":")
    return user, password


def _request(url: str, headers: dict[str, str]) -> tuple[int, Message, bytes]:
    """GET url; the response headers are looked up case-insensitively."""
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()
    except (urllib.error.URLError, OSError) as err:
        hint = " (a plain-HTTP registry? set PLAIN_HTTP=1)" if "SSL" in str(err) else ""
        raise RegistryError(f"cannot reach {url}: {err}{hint}") from err


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, params = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', params))


def _authorization(header: str, repository: str, creds: tuple[str, str] | None) -> str:
    """Answer a WWW-Authenticate challenge with an Authorization header value."""
    scheme, params = _challenge(header)
    basic = "Basic " + base64.b64encode(":".join(creds).encode()).decode() if creds else None
    if scheme == "basic":
        if not basic:
            raise RegistryError("the registry wants credentials: set REGISTRY_USERNAME and REGISTRY_PASSWORD")
        return basic
    if scheme == "bearer" and "realm" in params:
        query = {"scope": params.get("scope", f"repository:{repository}:pull")}
        if "service" in params:
            query["service"] = params["service"]
        status, _, body = _request(params["realm"] + "?" + urllib.parse.urlencode(query),
                                   {"Authorization": basic} if basic else {})
        if status != 200:
            raise RegistryError(f"token request to {params['realm']} answered HTTP {status}: {body[:200]!r}")
        token = json.loads(body)
        return "Bearer " + (token.get("token") or token["access_token"])
    raise RegistryError(f"unsupported authentication challenge: {header}")


def list_tags(registry: str, chart: str, plain_http: bool = False, page_size: int = 1000) -> list[str]:
    """Every tag of REGISTRY/CHART; [] when the repository does not exist yet."""
    host, path = split_registry(registry)
    repository = f"{path}/{chart}" if path else chart
    base = f"{'http' if plain_http else 'https'}://{host}"
    url = f"{base}/v2/{repository}/tags/list?n={page_size}"
    headers: dict[str, str] = {"Accept": "application/json"}
    creds = credentials(host)
    tags: list[str] = []
    while url:
        status, resp_headers, body = _request(url, headers)
        if status == 401 and "Authorization" not in headers:
            headers["Authorization"] = _authorization(resp_headers.get("WWW-Authenticate", ""), repository, creds)
            continue
        if status in (401, 403):
            raise RegistryError(f"GET {url} answered HTTP {status}: the registry refused the credentials "
                                f"(REGISTRY_USERNAME/REGISTRY_PASSWORD or `helm registry login`)")
        if status == 404:
            return tags  # NAME_UNKNOWN: nothing published under this name yet
        if status != 200:
            raise RegistryError(f"GET {url} answered HTTP {status}: {body[:300]!r}")
        tags += json.loads(body).get("tags") or []
        # Pagination: Link: </v2/<repository>/tags/list?last=...&n=...>; rel="next"
        link = re.search(r'<([^>]+)>;\s*rel="?next"?', resp_headers.get("Link", ""))
        url = urllib.parse.urljoin(base, link.group(1)) if link else ""
    return tags


def check(registry: str, chart: str, version: str, plain_http: bool = False) -> tuple[bool, str]:
    semver_key(version)
    ref = f"{registry.rstrip('/')}/{chart}"
    published = tag_versions(list_tags(registry, chart, plain_http))
    if version in published:
        return False, (f"{chart} {version} is already published at {ref}; a published version is never "
                       f"overwritten: bump `version` in Chart.yaml")
    if published and semver_key(version) <= semver_key(published[0]):
        return False, (f"{chart} {version} is not above the highest published version {published[0]} at {ref}: "
                       f"bump `version` in Chart.yaml above {published[0]}")
    highest = published[0] if published else "none"
    return True, f"{chart} {version} is new at {ref} (highest published: {highest})"


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--plain-http"]
    if len(args) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    registry, chart, version = args
    try:
        ok, message = check(registry, chart, version, plain_http="--plain-http" in argv)
    except (RegistryError, ValueError) as err:
        print(f"check_version: {err}", file=sys.stderr)
        return 2
    print(f"check_version: {message}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
