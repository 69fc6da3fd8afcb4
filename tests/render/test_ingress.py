"""Ingress: `/` to the frontend, `/api` (REST and WebSockets) to the backend, with the settings of the controller
`ingress.controller` names (its preset). Off by default: the chart assumes no controller."""

import pytest

from harness.crdschema import module_dir
from harness.render import pinned, render_chart, render_error

FRONTEND, BACKEND = "agentforge-frontend", "agentforge-backend"
NGINX = "nginx.ingress.kubernetes.io/"
WEBSOCKET_PATH = "/api/v1/ws/chat/3f1c9a2e"
# Values sets rendered once each and shared by the tests that read them.
ON = {"enabled": True, "controller": "ingress-nginx"}
NGINX_ON = {"ingress": ON}
CUSTOM = {"ingress": {**ON, "wsPath": True, "hosts": ["a.example.com", "*.b.example.com"],
                      "ingressClassName": "traefik"}}
TUNED = {"ingress": {**ON, "affinityCookie": {"name": "route", "maxAge": 600}, "websocketTimeoutSeconds": 7200,
                     "proxyBodySize": "50m", "annotations": {NGINX + "proxy-body-size": "1g", "team": "ai"}}}
# A plain Ingress: no controller's settings, one backend pod (no affinity needed), the controller's namespace given.
PLAIN = {"ingress": {"enabled": True, "controller": "generic"},
         "backend": {"autoscaling": {"enabled": False}, "replicaCount": 1, "pdb": {"enabled": False}},
         "networkPolicy": {"ingressNamespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "edge"}}}}
TRAEFIK = "traefik.ingress.kubernetes.io/service.sticky.cookie"


@pytest.fixture(scope="module")
def nginx_render():
    return render_chart(NGINX_ON)


def prefix_matches(prefix: str, path: str) -> bool:
    """Ingress `Prefix` matching: element-wise on `/`-separated segments, a trailing slash ignored."""
    want = [s for s in prefix.split("/") if s]
    have = [s for s in path.split("?")[0].split("/") if s]
    return have[:len(want)] == want


def route(objects, host: str, path: str) -> tuple[dict, str, int]:
    """The Ingress, Service and port that serve a request: the longest matching Prefix path of any Ingress."""
    candidates = []
    for ingress in objects.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            if rule.get("host") != host:
                continue
            for p in rule["http"]["paths"]:
                assert p["pathType"] == "Prefix", p
                if prefix_matches(p["path"], path):
                    service = p["backend"]["service"]
                    candidates.append((len(p["path"].rstrip("/")), ingress, service["name"], service["port"]["number"]))
    assert candidates, f"no Ingress serves {host}{path}"
    _, ingress, service, port = max(candidates, key=lambda c: c[0])
    return ingress, service, port


class TestRouting:
    @pytest.mark.parametrize("path,service,port", [
        ("/", FRONTEND, 3000),
        ("/login", FRONTEND, 3000),
        ("/_next/static/chunk.js", FRONTEND, 3000),
        ("/apiary", FRONTEND, 3000),
        ("/api", BACKEND, 8000),
        ("/api/v1/health", BACKEND, 8000),
        (WEBSOCKET_PATH + "?token=abc", BACKEND, 8000),
        ("/ws/chat/1", FRONTEND, 3000),
    ])
    def test_default_routes(self, nginx_render, path, service, port):
        _, routed_service, routed_port = route(nginx_render, "agentforge.example.com", path)
        assert (routed_service, routed_port) == (service, port)

    def test_ws_path_optional(self):
        objects = render_chart(CUSTOM)
        _, service, port = route(objects, "a.example.com", "/ws/chat/1")
        assert (service, port) == (BACKEND, 8000)

    def test_backends_exist_with_those_ports(self, nginx_render):
        for ingress in nginx_render.of_kind("Ingress"):
            for rule in ingress["spec"]["rules"]:
                for p in rule["http"]["paths"]:
                    ref = p["backend"]["service"]
                    service = nginx_render.get("Service", ref["name"])
                    assert ref["port"]["number"] in [sp["port"] for sp in service["spec"]["ports"]]

    def test_every_host_gets_every_path(self):
        objects = render_chart(CUSTOM)
        for host in ("a.example.com", "*.b.example.com"):
            assert route(objects, host, "/")[1] == FRONTEND
            assert route(objects, host, WEBSOCKET_PATH)[1] == BACKEND

    def test_class_and_default_host(self, nginx_render):
        for name in (FRONTEND, BACKEND):
            spec = nginx_render.get("Ingress", name)["spec"]
            assert spec["ingressClassName"] == "nginx"
            assert [r["host"] for r in spec["rules"]] == ["agentforge.example.com"]

    def test_class_is_a_value_and_empty_leaves_the_default_class(self):
        assert render_chart(CUSTOM).get("Ingress", BACKEND)["spec"]["ingressClassName"] == "traefik"
        assert "ingressClassName" not in render_chart(PLAIN).get("Ingress", BACKEND)["spec"]

    def test_disabled(self):
        assert render_chart({"ingress": {"enabled": False}}).of_kind("Ingress") == []

    def test_off_by_default(self, default_render):
        """The chart assumes no controller: no Ingress, and no controller's settings on the backend's Service."""
        assert default_render.of_kind("Ingress") == []
        assert "annotations" not in default_render.get("Service", BACKEND)["metadata"]


class TestWebSocketSettings:
    """Upstream defect 7: the WebSocket timeouts must apply where the WebSockets go, under /api."""

    def test_websocket_path_has_long_timeouts_and_http11(self, nginx_render):
        ingress, _, _ = route(nginx_render, "agentforge.example.com", WEBSOCKET_PATH)
        annotations = ingress["metadata"]["annotations"]
        assert annotations[NGINX + "proxy-read-timeout"] == "3600"
        assert annotations[NGINX + "proxy-send-timeout"] == "3600"
        assert annotations[NGINX + "proxy-http-version"] == "1.1"
        assert annotations[NGINX + "proxy-body-size"] == "10m"

    def test_websocket_path_has_persistent_cookie_affinity(self, nginx_render):
        ingress, _, _ = route(nginx_render, "agentforge.example.com", WEBSOCKET_PATH)
        annotations = ingress["metadata"]["annotations"]
        assert annotations[NGINX + "affinity"] == "cookie"
        # "balanced" would move sessions to new pods on scale-up, and their WebSockets live in one pod.
        assert annotations[NGINX + "affinity-mode"] == "persistent"
        assert annotations[NGINX + "session-cookie-name"] == "agentforge_affinity"
        assert annotations[NGINX + "session-cookie-max-age"] == "172800"
        assert annotations[NGINX + "session-cookie-path"] == "/"

    def test_frontend_has_no_affinity(self, nginx_render):
        """One cookie over both paths would be rewritten by the frontend's location, unpinning the backend."""
        annotations = nginx_render.get("Ingress", FRONTEND)["metadata"].get("annotations", {})
        assert not [k for k in annotations if k.startswith(NGINX)]

    def test_settings_are_values(self):
        annotations = render_chart(TUNED).get("Ingress", BACKEND)["metadata"]["annotations"]
        assert annotations[NGINX + "session-cookie-name"] == "route"
        assert annotations[NGINX + "session-cookie-max-age"] == "600"
        assert annotations[NGINX + "proxy-read-timeout"] == annotations[NGINX + "proxy-send-timeout"] == "7200"

    def test_nginx_annotations_can_be_left_out(self):
        assert "annotations" not in render_chart(PLAIN).get("Ingress", BACKEND)["metadata"]

    def test_extra_annotations_on_both_and_win(self):
        objects = render_chart(TUNED)  # proxyBodySize 50m, overridden by the annotation
        backend = objects.get("Ingress", BACKEND)["metadata"]["annotations"]
        frontend = objects.get("Ingress", FRONTEND)["metadata"]["annotations"]
        assert backend[NGINX + "proxy-body-size"] == frontend[NGINX + "proxy-body-size"] == "1g"
        assert backend["team"] == frontend["team"] == "ai"


class TestTls:
    def test_no_tls_by_default(self, nginx_render):
        for ingress in nginx_render.of_kind("Ingress"):
            assert "tls" not in ingress["spec"]

    def test_given_tls_on_both(self):
        tls = [{"secretName": "web-cert", "hosts": ["agentforge.example.com"]}]
        objects = render_chart({"ingress": {**ON, "tls": tls}})
        for ingress in objects.of_kind("Ingress"):
            assert ingress["spec"]["tls"] == tls
            assert "cert-manager.io/cluster-issuer" not in ingress["metadata"].get("annotations", {})

    def test_cert_manager_issuer_requests_one_certificate_for_every_host(self):
        hosts = ["agentforge.example.com", "*.chat.example.com"]
        objects = render_chart({"ingress": {**ON, "hosts": hosts, "certManager": {"clusterIssuer": "letsencrypt"}}})
        for ingress in objects.of_kind("Ingress"):
            assert ingress["spec"]["tls"] == [{"secretName": "agentforge-tls", "hosts": hosts}]
        frontend = objects.get("Ingress", FRONTEND)["metadata"]["annotations"]
        backend = objects.get("Ingress", BACKEND)["metadata"]["annotations"]
        assert frontend["cert-manager.io/cluster-issuer"] == "letsencrypt"
        # Two Ingresses asking for one Secret would make cert-manager's ingress-shim fight over its Certificate.
        assert "cert-manager.io/cluster-issuer" not in backend

    def test_cert_manager_keeps_given_tls(self):
        tls = [{"secretName": "mine", "hosts": ["agentforge.example.com"]}]
        objects = render_chart({"ingress": {**ON, "tls": tls, "certManager": {"clusterIssuer": "letsencrypt"}}})
        assert objects.get("Ingress", FRONTEND)["spec"]["tls"] == tls


    def test_each_host_its_own_certificate(self):
        hosts = ["agentforge.example.com", "chat.example.org"]
        tls = [{"hosts": ["agentforge.example.com"], "secretName": "com-cert"},
               {"hosts": ["chat.example.org"], "secretName": "org-cert"}]
        objects = render_chart({"ingress": {**ON, "hosts": hosts, "tls": tls}})
        for ingress in objects.of_kind("Ingress"):
            assert ingress["spec"]["tls"] == tls

    def test_a_host_the_ingresses_do_not_serve_is_refused(self):
        error = render_error({"ingress": {**ON, "tls": [{"hosts": ["agentforge.example.com"], "secretName": "a"},
                                                         {"hosts": ["typo.example.com"], "secretName": "b"}]}})
        assert 'ingress.tls[1].hosts names "typo.example.com", which is not in ingress.hosts (agentforge.example.com)' \
            in error

    def test_an_entry_without_its_secret_is_refused(self):
        error = render_error({"ingress": {**ON, "tls": [{"hosts": ["agentforge.example.com"]}]}})
        assert "ingress.tls[0].secretName is required" in error


class TestPaths:
    MAINTENANCE = {"path": "/status", "pathType": "Exact",
                   "backend": {"service": {"name": "status-page", "port": {"number": 80}}}}
    LEGACY = {"path": "/legacy", "pathType": "Prefix", "position": "after",
              "backend": {"service": {"name": "legacy", "port": {"name": "http"}}}}

    def test_path_type_of_the_charts_paths(self, nginx_render):
        objects = render_chart({"ingress": {**ON, "pathType": "ImplementationSpecific"}})
        for ingress in objects.of_kind("Ingress"):
            types = {p["pathType"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
            assert types == {"ImplementationSpecific"}, ingress["metadata"]["name"]
        for ingress in nginx_render.of_kind("Ingress"):
            assert {p["pathType"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]} == {"Prefix"}

    def test_exact_refused(self):
        assert "at '/ingress/pathType'" in render_error({"ingress": {**ON, "pathType": "Exact"}})

    def test_extra_paths_before_or_after_on_the_frontends_ingress_of_every_host(self):
        hosts = ["a.example.com", "b.example.com"]
        objects = render_chart({"ingress": {**ON, "hosts": hosts, "extraPaths": [self.LEGACY, self.MAINTENANCE]}})
        frontend = objects.get("Ingress", FRONTEND)["spec"]["rules"]
        assert [r["host"] for r in frontend] == hosts
        for rule in frontend:
            paths = rule["http"]["paths"]
            assert [p["path"] for p in paths] == ["/status", "/", "/legacy"]
            assert paths[0] == self.MAINTENANCE
            assert paths[2] == {k: v for k, v in self.LEGACY.items() if k != "position"}
        for rule in objects.get("Ingress", BACKEND)["spec"]["rules"]:
            assert [p["path"] for p in rule["http"]["paths"]] == ["/api"]

    @pytest.mark.parametrize("path,key", [
        ({"path": "status", "pathType": "Prefix", "backend": {"service": {"name": "s"}}}, "/ingress/extraPaths/0/path"),
        ({"path": "/s", "pathType": "Prefix", "backend": {}}, "/ingress/extraPaths/0/backend"),
        ({"path": "/s", "pathType": "Prefix", "backend": {"service": {"name": "s"}}, "position": "middle"},
         "/ingress/extraPaths/0/position"),
    ])
    def test_bad_extra_path_refused_naming_the_key(self, path, key):
        assert f"at '{key}'" in render_error({"ingress": {**ON, "extraPaths": [path]}})


class TestValidation:
    @pytest.mark.parametrize("values,key", [
        ({"hosts": []}, "hosts"),
        ({"hosts": ["Bad_Host.example.com"]}, "hosts"),
        ({"hosts": ["https://agentforge.example.com"]}, "hosts"),
        ({"proxyBodySize": "10 MB"}, "proxyBodySize"),
        ({"websocketTimeoutSeconds": 5}, "websocketTimeoutSeconds"),
        ({"affinityCookie": {"name": "my cookie"}}, "name"),
        ({"controller": "nginx"}, "controller"),
        ({"tls": [{"secretName": "x", "host": ["a"]}]}, "host"),
    ])
    def test_bad_values_rejected(self, values, key):
        assert key in render_error({"ingress": values})


class TestPresets:
    """Each controller's own affinity cookie and WebSocket settings, where that controller reads them."""

    def test_a_controller_is_required_and_the_message_says_how_to_keep_the_old_defaults(self):
        message = render_error({"ingress": {"enabled": True}})
        assert "ingress.controller is required" in message and "ingress.controller=ingress-nginx" in message

    def test_the_removed_nginx_key_is_refused_with_what_to_set(self):
        message = render_error({"ingress": {**ON, "nginx": {"enabled": True}}})
        assert "ingress.nginx was removed" in message and "ingress.affinityCookie" in message

    def test_traefik_reads_its_sticky_cookie_from_the_backends_service(self):
        objects = render_chart({"ingress": {**ON, "controller": "traefik"}})
        service = objects.get("Service", BACKEND)["metadata"]["annotations"]
        assert service[TRAEFIK] == "true" and service[TRAEFIK + ".name"] == "agentforge_affinity"
        assert service[TRAEFIK + ".maxage"] == "172800"
        assert "annotations" not in objects.get("Service", FRONTEND)["metadata"]
        for name in (FRONTEND, BACKEND):
            ingress = objects.get("Ingress", name)
            assert ingress["spec"]["ingressClassName"] == "traefik"
            assert not [k for k in ingress["metadata"].get("annotations", {}) if k.startswith(NGINX)]

    def test_traefik_annotations_are_those_of_traefiks_reference(self):
        """Every annotation the preset sets is one Traefik's routing reference for Kubernetes Ingress documents (from
        the module of the Traefik the real-pod tier runs)."""
        module = module_dir("github.com/traefik/traefik/v3", pinned("TRAEFIK"))
        reference = (module / "docs/content/reference/routing-configuration/kubernetes/ingress.md").read_text()
        annotations = render_chart({"ingress": {**ON, "controller": "traefik"}}).get(
            "Service", BACKEND)["metadata"]["annotations"]
        assert annotations and not [k for k in annotations if f"`{k}`" not in reference]

    def test_haproxy_reads_cookie_persistence_from_the_backends_service(self):
        """HAProxy Technologies' annotation reference (documentation/annotations.md, kubernetes-ingress 3.2): it reads
        `cookie-persistence` on a ConfigMap or a Service, and ignores it on an Ingress."""
        objects = render_chart({"ingress": {**ON, "controller": "haproxy"}})
        service = objects.get("Service", BACKEND)["metadata"]["annotations"]
        assert service == {"haproxy.org/cookie-persistence": "agentforge_affinity"}
        for name in (FRONTEND, BACKEND):
            ingress = objects.get("Ingress", name)
            assert ingress["spec"]["ingressClassName"] == "haproxy"
            assert "annotations" not in ingress["metadata"]
        assert "annotations" not in objects.get("Service", FRONTEND)["metadata"]

    def test_user_annotations_win_over_the_preset_even_empty(self):
        objects = render_chart({"ingress": {**ON, "annotations": {NGINX + "proxy-body-size": ""}}})
        assert objects.get("Ingress", BACKEND)["metadata"]["annotations"][NGINX + "proxy-body-size"] == ""
        service = render_chart({"ingress": {**ON, "controller": "traefik"},
                                "backend": {"service": {"annotations": {TRAEFIK + ".name": "mine"}}}})
        assert service.get("Service", BACKEND)["metadata"]["annotations"][TRAEFIK + ".name"] == "mine"

    def test_generic_needs_affinity_of_its_own_with_several_backend_pods(self):
        values = {**PLAIN, "backend": {"autoscaling": {"enabled": False}, "replicaCount": 2}}  # PDB on
        assert "ingress.affinityProvidedByController=true" in render_error(values)
        values["ingress"] = {**PLAIN["ingress"], "affinityProvidedByController": True}
        assert render_chart(values).of_kind("Ingress")

    def test_generic_needs_the_controllers_namespace(self):
        values = {**PLAIN, "networkPolicy": {}}
        assert "networkPolicy.ingressNamespaceSelector is required" in render_error(values)
