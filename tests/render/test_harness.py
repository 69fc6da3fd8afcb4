"""The harness itself: what keeps a test from proving less than it claims. Each check is shown to catch the fault it is
named after on a small source or input that has it."""

from pathlib import Path

import pytest

from harness import freshness
from harness.render import CHART, MAX_KUBE, RENDERER, CliCheck, render_chart
from harness.tiers import TIERS, selects

TESTS = Path(__file__).resolve().parents[1]


def test_no_test_compares_a_cached_render_with_itself():
    assert freshness.tree_problems(TESTS) == []


@pytest.mark.parametrize("source", [
    # two renders of one input, compared
    "def test_x():\n    a = render_chart(V)\n    b = render_chart(V)\n    assert a != b\n",
    # one of the two fresh is not enough: the other is the cached one
    "def test_x():\n    a = render_chart(V, fresh=True)\n    b = render_chart(V)\n    assert a != b\n",
    # the same input rendered on every turn of a loop
    "def test_x():\n    seen = [render_chart({'a': 1}) for _ in range(2)]\n    assert seen[0] != seen[1]\n",
    "def test_x():\n    for _ in range(2):\n        s.add(str(render_chart(V)))\n",
    # the default values beside the session's render of them
    "def test_x(default_render):\n    assert render_chart() != default_render\n",
    # a method of a test class, through the module
    "class TestX:\n    def test_y(self):\n        assert chart.render_chart(V) != chart.render_chart(V)\n",
])
def test_the_freshness_check_catches(source):
    assert freshness.problems(source)


@pytest.mark.parametrize("source", [
    "def test_x():\n    a = render_chart(V, fresh=True)\n    b = render_chart(V, fresh=True)\n    assert a != b\n",
    "def test_x():\n    a = render_chart(V)\n    b = render_chart(W)\n",
    "def test_x():\n    for v in VALUES:\n        render_chart(v)\n",
    "def test_x():\n    for obj in render_chart(V):\n        assert obj\n",
    "def test_x():\n    for path in PATHS:\n        values = {path: False}\n        render_chart(values)\n",
    "def test_x():\n    assert {o['kind'] for o in render_chart(V)}\n",
    "def helper():\n    return render_chart(V), render_chart(V)\n",
])
def test_the_freshness_check_leaves_alone(source):
    assert freshness.problems(source) == []


def test_cli_check_refuses_a_server_that_differs():
    """The CLI check (AGENTFORGE_CLI_CHECK) compares the server's reply with the helm CLI's render of the same request:
    a reply that differs in one object, or that refuses what the CLI renders, fails it."""
    request = dict(chart=str(CHART), name="agentforge", namespace="agentforge", kube_version=MAX_KUBE, values="{}",
                   install=False, validate=[], objects=True)
    objects = [dict(o) for o in render_chart({}, validate=False, fresh=True)]
    CliCheck.compare(RENDERER.cli, request, {"objects": objects})  # the true reply agrees
    changed = [dict(o) for o in objects]
    changed[0] = {**changed[0], "metadata": {**changed[0]["metadata"], "name": "renamed"}}
    with pytest.raises(AssertionError, match="different objects"):
        CliCheck.compare(RENDERER.cli, request, {"objects": changed})
    with pytest.raises(AssertionError, match="the server refused"):
        CliCheck.compare(RENDERER.cli, request, {"error": "made up"})


def test_cli_check_samples_by_input_and_seed():
    """A sample of one in N inputs: the same input is chosen (or not) for one seed, every input once at most, and
    another seed chooses others."""
    def chosen(seed: str, every: int) -> set[int]:
        check = CliCheck()
        check.every, check.seed = every, seed
        return {i for i in range(400) if check.chosen(dict(chart="c", name="n", namespace="ns", kube_version="1",
                                                            values=str(i), install=False))}
    today, tomorrow = chosen("2026-12-06", 8), chosen("2026-12-07", 8)
    assert today == chosen("2026-12-06", 8)
    assert 20 < len(today) < 80 and today != tomorrow
    assert chosen("any", 1) == set(range(400))


@pytest.mark.parametrize("markexpr,chosen", [
    ("not e2e and not servers and not app and not real", {"render"}),
    ("not e2e and not app and not real", {"render", "servers"}),
    ("not real", {"render", "servers", "app", "e2e"}),
    ("real", {"real"}),
    ("(app or e2e) and not real", {"app", "e2e"}),
    ("servers or not servers", set(TIERS)),
    ("custom(arg)", set(TIERS)),  # not a plain marker expression: nothing is left out
])
def test_a_tier_folder_is_collected_when_its_marker_can_be_selected(markexpr, chosen):
    assert {folder for folder, marker in TIERS.items() if selects(markexpr, marker)} == chosen
