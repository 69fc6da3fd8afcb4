"""Gateway API HTTPRoutes: the Ingress's routes for a Gateway, checked against the pinned release's CRD schema."""

import copy
import functools
import json
import re

import jsonschema
import pytest

from harness import crdschema
from harness.crdschema import module_dir
from harness.render import ROOT, pinned, render_chart, render_error

FRONTEND, BACKEND = "agentforge-frontend", "agentforge-backend"
CRDS = ROOT / "tests" / "harness" / "crds" / "gateway-api"
# Routes on a Gateway that pins clients to backend pods by a policy of its own (standard channel).
BY_GATEWAY = {"providedByGateway": True}
ON = {"httpRoute": {"enabled": True, "parentRef": {"name": "public", "namespace": "gateway-system"},
                    "sessionPersistence": BY_GATEWAY}}
PERSISTENCE = {"httpRoute": {**ON["httpRoute"], "sessionPersistence": {"enabled": True}}}
# A Gateway in the release's namespace, one listener, the optional /ws path and another timeout.
CUSTOM = {"httpRoute": {"enabled": True, "parentRef": {"name": "gw", "sectionName": "https"}, "wsPath": True,
                        "backendTimeout": "90m", "sessionPersistence": BY_GATEWAY}}
# A browser-session cookie, no timeout.
SESSION = {"httpRoute": {**ON["httpRoute"], "backendTimeout": "0s",
                         "sessionPersistence": {"enabled": True, "sessionName": "af", "absoluteTimeout": ""}}}
WEBSOCKET_PATH = "/api/v1/ws/chat/3f1c9a2e"
DURATION = re.compile(r"(\d+)(h|ms|m|s)")


def strict(schema):
    """The schema with unknown fields refused, as `kubectl apply` (server-side field validation Strict) does."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@functools.cache
def vendored(channel: str) -> dict:
    return json.loads((CRDS / f"httproute-v1-{channel}.json").read_text())


def schema_errors(route: dict, channel: str) -> list[str]:
    validator = jsonschema.Draft7Validator(strict(vendored(channel)["openAPIV3Schema"]))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(route)]


def seconds(duration: str) -> float:
    """A Gateway API duration (GEP-2257: 1h30m, 500ms) in seconds."""
    assert re.fullmatch(r"(\d{1,5}(h|m|s|ms)){1,4}", duration), duration
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(int(n) * unit[u] for n, u in DURATION.findall(duration))


def path_matches(prefix: str, path: str) -> bool:
    """HTTPRoute PathPrefix: element-wise on `/`, a trailing slash ignored."""
    want = [s for s in prefix.split("/") if s]
    return [s for s in path.split("?")[0].split("/") if s][:len(want)] == want


def route_for(objects, path: str) -> tuple[dict, dict]:
    """The HTTPRoute and rule that serve a path: the longest matching PathPrefix across the routes."""
    candidates = [(len(m["path"]["value"].rstrip("/")), r, rule)
                  for r in objects.of_kind("HTTPRoute") for rule in r["spec"]["rules"] for m in rule["matches"]
                  if m["path"]["type"] == "PathPrefix" and path_matches(m["path"]["value"], path)]
    assert candidates, f"no route serves {path}"
    _, found, rule = max(candidates, key=lambda c: c[0])
    return found, rule


@pytest.fixture(scope="module")
def routes():
    return render_chart(ON)


@pytest.fixture(scope="module")
def persistent_routes():
    return render_chart(PERSISTENCE)


class TestVendoredSchema:
    @pytest.mark.parametrize("channel", ["standard", "experimental"])
    def test_schema_is_of_the_pinned_release(self, channel):
        doc = vendored(channel)
        assert doc["bundleVersion"] == pinned("GATEWAY_API"), "run tests/harness/crds/gateway-api/vendor.py"
        assert doc["channel"] == channel
        assert doc["source"].startswith(f"sigs.k8s.io/gateway-api@{pinned('GATEWAY_API')} config/crd/{channel}/")

    def test_session_persistence_is_experimental_only(self):
        def rule_fields(channel):
            spec = vendored(channel)["openAPIV3Schema"]["properties"]["spec"]
            return set(spec["properties"]["rules"]["items"]["properties"])
        assert "sessionPersistence" not in rule_fields("standard")
        assert {"sessionPersistence", "timeouts"} <= rule_fields("experimental")
        assert "timeouts" in rule_fields("standard")

    def test_strict_validation_catches_unknown_fields(self, routes):
        route = copy.deepcopy(routes.get("HTTPRoute", BACKEND))
        route["spec"]["rules"][0]["timeout"] = "1h"
        assert schema_errors(route, "standard")


class TestRoutes:
    def test_off_by_default(self, default_render):
        assert default_render.of_kind("HTTPRoute") == []

    @pytest.mark.parametrize("name", [FRONTEND, BACKEND])
    def test_valid_against_the_standard_channel(self, routes, name):
        assert schema_errors(routes.get("HTTPRoute", name), "standard") == []

    def test_parent_ref_and_hostnames(self, routes):
        for route in routes.of_kind("HTTPRoute"):
            assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
            assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateway-system"}]
            assert route["spec"]["hostnames"] == ["agentforge.example.com"]

    def test_section_name_and_same_namespace_gateway(self):
        objects = render_chart(CUSTOM)
        for route in objects.of_kind("HTTPRoute"):
            assert route["spec"]["parentRefs"] == [{"name": "gw", "sectionName": "https"}]
            assert schema_errors(route, "standard") == []

    @pytest.mark.parametrize("path,service,port", [
        ("/", FRONTEND, 3000),
        ("/settings", FRONTEND, 3000),
        ("/apiary", FRONTEND, 3000),
        ("/api/v1/agents", BACKEND, 8000),
        (WEBSOCKET_PATH + "?token=t", BACKEND, 8000),
        ("/ws/chat/1", FRONTEND, 3000),
    ])
    def test_paths(self, routes, path, service, port):
        _, rule = route_for(routes, path)
        assert rule["backendRefs"] == [{"name": service, "port": port}]

    def test_ws_path_optional(self):
        objects = render_chart(CUSTOM)
        route, rule = route_for(objects, "/ws/chat/1")
        assert route["metadata"]["name"] == BACKEND
        assert schema_errors(route, "standard") == []

    def test_backend_refs_name_rendered_services(self, routes):
        for route in routes.of_kind("HTTPRoute"):
            for rule in route["spec"]["rules"]:
                for ref in rule["backendRefs"]:
                    service = routes.get("Service", ref["name"])
                    assert ref["port"] in [p["port"] for p in service["spec"]["ports"]]

    def test_parent_name_required(self):
        stderr = render_error({"httpRoute": {"enabled": True}})
        assert "httpRoute.parentRef.name is required" in stderr

    def test_ingress_and_routes_side_by_side(self):
        """Moving from ingress-nginx: both can run at once."""
        both = render_chart({**ON, "ingress": {"enabled": True, "controller": "ingress-nginx"}})
        assert {o["kind"] for o in both if o["metadata"]["name"] == BACKEND} >= {"Ingress", "HTTPRoute"}


class TestTraefik:
    """httpRoute.controller=traefik: Traefik's Gateway provider ignores rules[].sessionPersistence, so /api goes
    through a TraefikService with a sticky cookie (the real-pod tier runs it: test_real_edge.py)."""

    VALUES = {"httpRoute": {"enabled": True, "controller": "traefik", "parentRef": {"name": "edge"}}}

    @pytest.fixture(scope="class")
    def objects(self):
        return render_chart(self.VALUES)

    def test_api_goes_through_the_traefikservice_and_the_page_does_not(self, objects):
        _, rule = route_for(objects, "/api/v1/ws/chat/1")
        assert rule["backendRefs"] == [{"group": "traefik.io", "kind": "TraefikService", "name": BACKEND}]
        assert "sessionPersistence" not in rule
        _, page = route_for(objects, "/login")
        assert page["backendRefs"][0]["name"] == "agentforge-frontend"

    def test_the_traefikservice_pins_the_backend_service_with_the_cookie(self, objects):
        (service,) = objects.of_kind("TraefikService")
        (entry,) = service["spec"]["weighted"]["services"]
        assert (entry["name"], entry["port"]) == (BACKEND, 8000)
        assert entry["sticky"]["cookie"]["name"] == "agentforge_affinity"
        assert entry["sticky"]["cookie"]["maxAge"] == 48 * 3600  # absoluteTimeout 48h

    def test_the_traefikservice_is_valid_for_traefiks_crd(self, objects):
        crd = (module_dir("github.com/traefik/traefik/v3", pinned("TRAEFIK"))
               / "docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml")
        (service,) = objects.of_kind("TraefikService")
        assert crdschema.errors(crd, service) == []
        broken = {**service, "spec": {"weighted": {"services": [{"name": "x", "port": 1, "stickky": {}}]}}}
        assert crdschema.errors(crd, broken)

    def test_a_sub_second_cookie_lifetime_is_rounded_up_not_to_zero(self):
        """maxAge 0 is a cookie that never expires (Traefik's reference)."""
        values = {"httpRoute": {**self.VALUES["httpRoute"], "sessionPersistence": {"absoluteTimeout": "1500ms"}}}
        (service,) = render_chart(values).of_kind("TraefikService")
        assert service["spec"]["weighted"]["services"][0]["sticky"]["cookie"]["maxAge"] == 2

    def test_none_without_the_preset(self, routes):
        assert routes.of_kind("TraefikService") == []


class TestWebSocketTimeouts:
    def test_websocket_rule_has_long_timeouts(self, routes):
        _, rule = route_for(routes, WEBSOCKET_PATH)
        assert seconds(rule["timeouts"]["request"]) >= 3600
        assert seconds(rule["timeouts"]["backendRequest"]) >= 3600

    def test_backend_request_not_longer_than_request(self, routes):
        """The CRD's CEL rule, which jsonschema cannot run."""
        for route in routes.of_kind("HTTPRoute"):
            for rule in route["spec"]["rules"]:
                timeouts = rule.get("timeouts", {})
                if "request" in timeouts and "backendRequest" in timeouts and seconds(timeouts["request"]):
                    assert seconds(timeouts["backendRequest"]) <= seconds(timeouts["request"])

    def test_frontend_keeps_implementation_timeouts(self, routes):
        _, rule = route_for(routes, "/")
        assert "timeouts" not in rule

    @pytest.mark.parametrize("values,value,channel", [(CUSTOM, "90m", "standard"), (SESSION, "0s", "experimental")])
    def test_timeout_is_a_value(self, values, value, channel):
        objects = render_chart(values)
        _, rule = route_for(objects, WEBSOCKET_PATH)
        assert rule["timeouts"] == {"request": value, "backendRequest": value}
        assert schema_errors(objects.get("HTTPRoute", BACKEND), channel) == []

    @pytest.mark.parametrize("value", ["1 hour", "3600", "1d", "100000s"])
    def test_bad_timeout_rejected(self, value):
        assert "backendTimeout" in render_error({"httpRoute": {**ON["httpRoute"], "backendTimeout": value}})


class TestAffinity:
    """Discussion sessions and pipeline runs live in one backend pod: with several, the route needs affinity."""

    BARE = {"enabled": True, "parentRef": {"name": "public"}}

    @pytest.mark.parametrize("backend,pods", [
        ({}, 5),
        ({"autoscaling": {"enabled": False}, "replicaCount": 2}, 2),
        ({"autoscaling": {"minReplicas": 2, "maxReplicas": 2}}, 2),
    ])
    def test_several_backend_pods_without_affinity_refused(self, backend, pods):
        stderr = render_error({"httpRoute": self.BARE, "backend": backend})
        assert f"httpRoute.enabled with up to {pods} backend pods needs affinity" in stderr
        for key in ("httpRoute.sessionPersistence.enabled=true", "httpRoute.sessionPersistence.providedByGateway=true",
                    "backend.autoscaling.enabled=false, backend.replicaCount=1"):
            assert key in stderr

    @pytest.mark.parametrize("values", [
        {"httpRoute": {**BARE, "sessionPersistence": {"enabled": True}}},
        {"httpRoute": {**BARE, "sessionPersistence": {"providedByGateway": True}}},
        {"httpRoute": BARE,
         "backend": {"autoscaling": {"enabled": False}, "replicaCount": 1, "pdb": {"enabled": False}}},
    ])
    def test_affinity_or_one_pod_accepted(self, values):
        assert len(render_chart(values).of_kind("HTTPRoute")) == 2


class TestSessionPersistence:
    def test_off_by_default(self, routes):
        for route in routes.of_kind("HTTPRoute"):
            for rule in route["spec"]["rules"]:
                assert "sessionPersistence" not in rule

    def test_cookie_on_the_backend_rule(self, persistent_routes):
        _, rule = route_for(persistent_routes, WEBSOCKET_PATH)
        assert rule["sessionPersistence"] == {"type": "Cookie", "sessionName": "agentforge_affinity",
                                              "absoluteTimeout": "48h", "cookieConfig": {"lifetimeType": "Permanent"}}
        _, frontend_rule = route_for(persistent_routes, "/")
        assert "sessionPersistence" not in frontend_rule

    def test_valid_against_experimental_not_standard(self, persistent_routes):
        route = persistent_routes.get("HTTPRoute", BACKEND)
        assert schema_errors(route, "experimental") == []
        assert any("sessionPersistence" in e for e in schema_errors(route, "standard"))

    def test_session_cookie_without_absolute_timeout(self):
        objects = render_chart(SESSION)
        route = objects.get("HTTPRoute", BACKEND)
        persistence = route["spec"]["rules"][0]["sessionPersistence"]
        assert persistence == {"type": "Cookie", "sessionName": "af", "cookieConfig": {"lifetimeType": "Session"}}
        assert schema_errors(route, "experimental") == []

    def test_cel_rules_of_session_persistence(self, persistent_routes):
        """The CRD's CEL rules: Permanent needs absoluteTimeout; cookieConfig only with type Cookie."""
        persistence = route_for(persistent_routes, WEBSOCKET_PATH)[1]["sessionPersistence"]
        if persistence.get("cookieConfig", {}).get("lifetimeType") == "Permanent":
            assert seconds(persistence["absoluteTimeout"]) > 0
        if "cookieConfig" in persistence:
            assert persistence["type"] == "Cookie"

    @pytest.mark.parametrize("values,key", [
        ({"sessionName": ""}, "sessionName"),
        ({"sessionName": "x" * 129}, "sessionName"),
        ({"absoluteTimeout": "2 days"}, "absoluteTimeout"),
    ])
    def test_bad_values_rejected(self, values, key):
        stderr = render_error({"httpRoute": {**ON["httpRoute"], "sessionPersistence": {"enabled": True, **values}}})
        assert key in stderr


class TestValuesValidation:
    @pytest.mark.parametrize("values,key", [
        ({"parentRef": {"name": "gw", "namespace": "Not_A_Namespace"}}, "namespace"),
        ({"parentRef": {"name": "gw", "sectionName": "HTTPS"}}, "sectionName"),
        ({"hostnames": ["bad host"]}, "hostnames"),
        ({"parentRefs": [{"name": "gw"}]}, "parentRefs"),
    ])
    def test_bad_values_rejected(self, values, key):
        assert key in render_error({"httpRoute": {"enabled": True, **values}})
