"""Every variable the chart gives a container is one that container's code reads, and the backend gets every setting
it cannot run without.

What the code reads is found by running it: in the container's own sandbox (its image layout, environment and
uid), a script imports what the container runs (the uvicorn module of its command; for the migration Job, what
alembic's env.py imports) and lists, for every module of the application that got loaded, the fields of its
pydantic settings classes that some loaded code uses (settings.X), and the names it passes to
os.getenv/os.environ. A module nothing imports (the collector's config.py) reads nothing; a field nothing uses
(DEFAULT_LLM_PROVIDER) does nothing. Shell containers read the variables their script references, plus those of
the one client tool they run; the frontend reads what its built server references as process.env.NAME.
"""

from __future__ import annotations

import base64
import json
import re

import pytest

from harness import appsrc
from harness.appstack import Stack, distinct_scenarios, release
from harness.objects import argv
from harness.render import RenderError, render_chart

READ_BY_CODE = r"""
import ast, configparser, importlib, json, os, sys
import pydantic_settings

entries = sys.argv[1:]
files = []
if entries == ["--alembic"]:
    ini = configparser.ConfigParser()
    ini.read("alembic.ini")
    env_py = os.path.join(ini["alembic"]["script_location"], "env.py")
    files.append(os.path.realpath(env_py))
    tree = ast.parse(open(env_py).read())
    entries = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    entries += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
roots = [os.path.realpath(p) for p in os.environ.get("PYTHONPATH", "").split(":") if p]
for entry in entries:
    try:
        importlib.import_module(entry)
    except ImportError:
        if any(os.path.exists(os.path.join(r, *entry.split("."))) for r in roots):
            raise
names, defaults, used = set(), {}, set()
for module in list(sys.modules.values()):
    path = os.path.realpath(getattr(module, "__file__", None) or "/nonexistent")
    if not any(path.startswith(r + "/") for r in roots):
        continue
    files.append(path)
    for value in list(vars(module).values()):
        if (isinstance(value, type) and issubclass(value, pydantic_settings.BaseSettings)
                and value.__module__ == module.__name__):
            prefix = value.model_config.get("env_prefix", "")
            for field, info in value.model_fields.items():
                defaults[(prefix + field).upper()] = (field, repr(info.default))
for path in set(files):
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Attribute):
            used.add(node.attr)
        call = node.func if isinstance(node, ast.Call) else None
        if call is not None and ast.unparse(call) in ("os.getenv", "os.environ.get") and node.args:
            if isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value)
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            if isinstance(node.slice, ast.Constant):
                names.add(node.slice.value)
# A settings field is read when some loaded code uses it (settings.X, self.X): pydantic fills every field, but a
# field nothing uses is a setting that does nothing.
names |= {name for name, (field, _) in defaults.items() if field in used}
print(json.dumps({"names": sorted(names), "defaults": {n: d for n, (_, d) in defaults.items()},
                  "modules": len(set(files))}))
"""
# CPython's own variables (docs.python.org/3/using/cmdline.html#environment-variables).
PYTHON_RUNTIME = {"PYTHONPATH", "PYTHONDONTWRITEBYTECODE"}
# Variables a library of the image reads itself, with the file of the installed library that reads it: asyncpg takes
# the CA for ssl=verify-ca/verify-full from PGSSLROOTCERT, where the chart points it (externalDatabase.sslRootCert).
LIBRARY_VARIABLES = {"PGSSLROOTCERT": "asyncpg/connect_utils.py"}
# Variables of the one client tool a wait container runs: libpq's (pg_isready) and redis-cli's.
TOOL_VARIABLES = {"wait-for-database": {"PGUSER"}, "wait-for-redis": {"REDISCLI_AUTH"}}
# What a container cannot run without besides (for the backend) every setting whose default points at localhost:
# backend/shared/config.py refuses to load without SECRET_KEY when DEBUG is false; backend/shared/encryption.py
# raises on every use without ENCRYPTION_KEY; the migrations need the database.
REQUIRED = {"backend": {"SECRET_KEY", "ENCRYPTION_KEY"}, "migrate": {"SECRET_KEY", "DATABASE_URL"},
            "data-collector": set()}

VALUES_KEYS = {"migrations": "backend", "backend": "backend", "data-collector": "dataCollector"}
PYTHON_CONTAINERS = [("migrations", "migrate", "backend"), ("backend", "backend", "backend"),
                     ("data-collector", "data-collector", "data-collector")]
CASES = [(scenario, component, container, image)
         for component, container, image in PYTHON_CONTAINERS
         for scenario in distinct_scenarios(component, container)]


def read_by_code(scenario: str, component: str, container: str, image: str) -> dict:
    stack = Stack(release(scenario))
    try:
        command = argv(stack.rel.container(component, container))
        entry = ["--alembic"] if "alembic" in command else [command[command.index("uvicorn") + 1].split(":")[0]]
        return stack.run_python(component, container, appsrc.python_image(image), READ_BY_CODE, *entry)
    finally:
        stack.close()


@pytest.mark.parametrize("scenario,component,container,image", CASES)
def test_python_container_gets_only_what_its_code_reads(app_ready, scenario, component, container, image):
    found = read_by_code(scenario, component, container, image)
    assert found["modules"] > 0
    rel = release(scenario)
    # What the chart gives: the user's own extraEnv and extraEnvFrom (passed to the migrations too) are the user's
    # business. The extraEnvFrom sources are the container's last envFrom entries.
    extra = {e["name"] for e in rel.value(VALUES_KEYS[component], "extraEnv") or []}
    env_from = rel.container(component, container).get("envFrom", [])
    for source in env_from[len(env_from) - len(rel.value(VALUES_KEYS[component], "extraEnvFrom") or []):]:
        kind, ref = ("Secret", source["secretRef"]) if "secretRef" in source else ("ConfigMap", source["configMapRef"])
        extra |= {source.get("prefix", "") + key for key in rel.store.data(kind, ref["name"]) or {}}
    given = set(rel.env(component, container)) - extra
    for name in given & set(LIBRARY_VARIABLES):  # read by the library as installed in the image's virtualenv
        library = next((appsrc.APP_TOOLS / image / "lib").glob(f"python3*/site-packages/{LIBRARY_VARIABLES[name]}"))
        assert f"os.getenv('{name}')" in library.read_text(), (name, library)
    unread = given - set(found["names"]) - PYTHON_RUNTIME - set(LIBRARY_VARIABLES)
    assert not unread, (f"{scenario}: {component} container {container} is given {sorted(unread)}, which its code "
                        f"never reads (it reads {found['names']})")
    needed = set(REQUIRED[container])
    if container == "backend":  # the server: every setting whose default points at this machine
        needed |= {name for name, default in found["defaults"].items() if "localhost" in default}
    assert needed <= given, f"{scenario}: {container} lacks {sorted(needed - given)}"


def test_the_collector_reads_nothing(app_ready):
    found = read_by_code("default", "data-collector", "data-collector", "data-collector")
    assert found["names"] == [], found
    assert set(release("default").env("data-collector", "data-collector")) <= PYTHON_RUNTIME


@pytest.mark.parametrize("component,container", [("migrations", "wait-for-database"), ("backend", "wait-for-redis")])
def test_wait_container_gets_only_what_its_script_reads(component, container):
    for scenario in distinct_scenarios(component, container):
        rel = release(scenario)
        rendered = rel.container(component, container)
        script = " ".join(rendered.get("command", []) + rendered.get("args", []))
        referenced = set(re.findall(r"\$\{?([A-Za-z_]\w*)", script)) - set(re.findall(r"\b([A-Za-z_]\w*)=", script))
        given = set(rel.env(component, container))
        assert given <= referenced | TOOL_VARIABLES[container], (scenario, sorted(given - referenced))
        assert referenced <= given | TOOL_VARIABLES[container], (scenario, sorted(referenced - given))


def test_frontend_gets_only_what_its_server_reads(app_ready):
    rel = release("default")
    given = set(rel.env("frontend", "frontend"))
    root = appsrc.frontend_image().mounts["/app"]
    code = (root / "server.js").read_text()
    code += "".join(p.read_text(errors="replace") for p in (root / "node_modules" / "next" / "dist").rglob("*.js"))
    read = set(re.findall(r"process\.env\.([A-Z_][A-Z0-9_]*)", code))
    read |= set(re.findall(r"process\.env\[['\"]([A-Z_][A-Z0-9_]*)['\"]\]", code))
    for names in re.findall(r"\{([\w\s,:]*)\}\s*=\s*process\.env\b", code):  # const { A, B } = process.env
        read |= {n.split(":")[0].strip() for n in names.split(",") if n.strip()}
    assert given <= read, f"the frontend is given {sorted(given - read)}, which its server never reads"


KEY_CHECK = """
import json, sys
from backend.shared import encryption
verdicts = []
for key in json.loads(sys.argv[1]):
    encryption.settings.ENCRYPTION_KEY = key
    encryption._get_encryption_key.cache_clear()
    try:
        encryption._get_encryption_key()
        verdicts.append(True)
    except RuntimeError:
        verdicts.append(False)
print(json.dumps(verdicts))
"""
KEY_CANDIDATES = [
    base64.urlsafe_b64encode(bytes(range(200, 232))).decode(),  # url-safe base64 of 32 bytes
    base64.b64encode(bytes(range(200, 232))).decode(),          # standard base64 of 32 bytes
    base64.urlsafe_b64encode(bytes(31)).decode(),
    base64.urlsafe_b64encode(bytes(33)).decode(),
    base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("="),
    base64.urlsafe_b64encode(bytes(48)).decode(),
    "k" * 44,
]


def test_schema_and_code_agree_on_encryption_keys(app_ready):
    """The values schema accepts the ENCRYPTION_KEY values the backend's own code accepts and refuses those it
    refuses (of these; the schema also refuses non-canonical base64, whose padding bits are not zero, which the
    code's lenient decoder would take)."""
    stack = Stack(release("default"))
    try:
        by_code = stack.run_python("backend", "backend", appsrc.python_image("backend"), KEY_CHECK,
                                   json.dumps(KEY_CANDIDATES))
    finally:
        stack.close()
    by_schema = []
    for key in KEY_CANDIDATES:
        try:
            render_chart({"secrets": {"encryptionKey": key}}, validate=False)
            by_schema.append(True)
        except RenderError:
            by_schema.append(False)
    assert by_code[:2] == [True, True] and not all(by_code)
    assert by_schema == by_code, list(zip(KEY_CANDIDATES, by_schema, by_code, strict=True))
