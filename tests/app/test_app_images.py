"""The upstream images the chart documents: the Dockerfiles its defaults target agree with what it renders, and the
ones it says cannot work do not, run with the application's own code. Chart.yaml points at the application's
repository."""

from __future__ import annotations

import os

import pytest

from harness import appsrc
from harness.appstack import Stack, release
from harness.components import SERVERS
from harness.objects import argv, container, env_of, pod_spec
from harness.render import CHART, load_yaml

PYTHON_COMPONENTS = SERVERS


def test_every_component_with_code_names_its_dockerfile():
    assert set(appsrc.documented_targets()) == {"backend", "data-collector", "frontend"}


@pytest.mark.parametrize("component", [*PYTHON_COMPONENTS, "frontend"])
def test_rendered_uid_is_the_images(app_ready, component):
    """An image with a USER runs as its uid and gid (which own its files); one without (root) as a non-root uid,
    whose run by the other app tests shows it needs no more. The README's table says the same."""
    target = appsrc.documented_targets()[component]
    src = appsrc.source_root()
    assert (src / target.dockerfile).is_file() and (src / target.context).is_dir(), target
    context = pod_spec(release("default").workload(component))["securityContext"]
    user = appsrc.image_user(target.dockerfile)
    if user is None:
        assert context["runAsUser"] != 0 and context["runAsNonRoot"] is True
    else:
        assert (context["runAsUser"], context["runAsGroup"]) == user
    assert target.uid == context["runAsUser"], "the README's table is stale"


@pytest.mark.parametrize("component", PYTHON_COMPONENTS)
def test_rendered_layout_is_the_dockerfiles(app_ready, component):
    """PYTHONPATH is the Dockerfile's ENV PYTHONPATH, and the module the command runs is a file it COPYs there."""
    target = appsrc.documented_targets()[component]
    stage = appsrc.parse_dockerfile(appsrc.source_root() / target.dockerfile)[-1]
    c = container(release("default").workload(component), component)
    assert env_of(c)["PYTHONPATH"]["value"] == stage.env["PYTHONPATH"]
    command = argv(c)
    module = command[command.index("uvicorn") + 1].split(":")[0]
    image = appsrc.python_image(component)
    root = stage.env["PYTHONPATH"]
    mount = next(m for m in image.mounts if root == m or root.startswith(m + "/"))
    on_disk = image.mounts[mount] / os.path.relpath(root, mount) / (module.replace(".", "/") + ".py")
    assert on_disk.is_file(), f"{module} is not at {root} in {target.dockerfile}"


@pytest.mark.parametrize("component,dockerfile,module,error", [
    ("backend", "docker/Dockerfile.backend.prod", "gateway.main", "No module named 'backend'"),
    ("data-collector", "docker/Dockerfile.collector.prod", "main", "attempted relative import"),
])
def test_production_dockerfiles_cannot_run_the_app(app_ready, component, dockerfile, module, error):
    """What the chart README says of the production Dockerfiles: the module their CMD names fails to import in the
    layout they build (run with the chart's environment, as the image's user)."""
    stage = appsrc.parse_dockerfile(appsrc.source_root() / dockerfile)[-1]
    assert f"{module}:app" in stage.cmd, stage.cmd
    stack = Stack(release("default"))
    try:
        pod = stack.pod(component, component, appsrc.python_image(component, dockerfile), upstreams=[],
                        env_override={"PYTHONPATH": stage.workdir}, working_dir=stage.workdir,
                        command=["python", "-c", f"import {module}"]).start()
        assert pod.wait(60) != 0
        assert error in pod.logs(), pod.logs()
    finally:
        stack.close()


def test_frontend_dockerfile_needs_a_public_folder_the_repository_lacks(app_ready):
    """Why scripts/install-app.sh (and the README's build instructions) create frontend/public first."""
    target = appsrc.documented_targets()["frontend"]
    stages = appsrc.parse_dockerfile(appsrc.source_root() / target.dockerfile)
    copies = [sources for origin, sources, _ in stages[-1].copies if origin == "builder"]
    assert ["/app/public"] in copies
    assert not (appsrc.source_root() / target.context / "public").exists()


def test_chart_links_name_the_applications_repository(app_ready):
    snapshot = appsrc.source_root() / "SNAPSHOT.md"
    if not snapshot.exists():
        pytest.skip("the source is a plain checkout (no SNAPSHOT.md naming its repository)")
    meta = load_yaml((CHART / "Chart.yaml").read_text())
    repository = meta["home"].removeprefix("https://github.com/")
    assert repository in snapshot.read_text(), f"{meta['home']} is not the repository of {snapshot}"
    assert meta["sources"] == [meta["home"]]
