// render-server-oldest: `helm template` of the oldest Helm the chart supports, as a long-lived process, so the
// tests can give it every file of the invalid-values corpus without starting helm for each.
//
// The protocol is render-server's (one JSON request per stdin line, one JSON reply per stdout line), reduced to
// rendering: {"chart", "name", "namespace", "kube_version", "values"} -> {"manifest"} or {"error"}. It takes the
// code path of that Helm's template command (action.Install, DryRun, ClientOnly, Replace), from the helm module
// this go.mod pins (scripts/versions.env's HELM_OLDEST_VERSION), linked with the flags of .tools/bin/helm-oldest
// (scripts/install-tools.sh: its version and default Kubernetes version), so that .Capabilities is that CLI's.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
)

type request struct {
	Chart       string `json:"chart"`
	Name        string `json:"name"`
	Namespace   string `json:"namespace"`
	KubeVersion string `json:"kube_version"`
	Values      string `json:"values"`
}

type reply struct {
	Manifest string `json:"manifest,omitempty"`
	Error    string `json:"error,omitempty"`
}

func render(req request) (string, error) {
	vals, err := chartutil.ReadValues([]byte(req.Values))
	if err != nil {
		return "", fmt.Errorf("failed to parse values: %w", err)
	}
	ch, err := loader.Load(req.Chart)
	if err != nil {
		return "", err
	}
	client := action.NewInstall(&action.Configuration{})
	client.DryRun = true
	client.DryRunOption = "true"
	client.ClientOnly = true
	client.Replace = true
	client.ReleaseName = req.Name
	client.Namespace = req.Namespace
	if req.KubeVersion != "" {
		kv, err := chartutil.ParseKubeVersion(req.KubeVersion)
		if err != nil {
			return "", fmt.Errorf("invalid kube version '%s': %s", req.KubeVersion, err)
		}
		client.KubeVersion = kv
	}
	rel, err := client.Run(ch, vals)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintln(&b, strings.TrimSpace(rel.Manifest))
	for _, h := range rel.Hooks {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", h.Path, h.Manifest)
	}
	return b.String(), nil
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		var rep reply
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			rep.Error = err.Error()
		} else if m, err := render(req); err != nil {
			rep.Error = err.Error()
		} else {
			rep.Manifest = m
		}
		if err := out.Encode(rep); err != nil {
			os.Exit(1)
		}
	}
}
