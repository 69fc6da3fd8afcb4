// render-server: `helm template` and kubeconform in one long-lived process, so that a test session renders
// and validates thousands of objects without paying helm's start-up for each render.
//
// One JSON request per stdin line, one JSON reply per stdout line. A render takes the code path of the helm
// CLI's template command (action.Install with a client-side dry run, Replace, hooks appended in the CLI's
// format), values-schema validation included, from the helm module this go.mod pins (the same version as
// scripts/versions.env's HELM_VERSION), linked with the CLI's flags (scripts/install-tools.sh), so that
// .Capabilities is the CLI's. The one difference: a chart is read from disk once and kept while its files do not
// change (see loadedChart), where the CLI reads it for each render.
// With "validate", every object is validated by kubeconform's validator (pinned here as well) against the
// strict schemas of each listed Kubernetes version, from the schema folder given as the only argument.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/yannh/kubeconform/pkg/resource"
	"github.com/yannh/kubeconform/pkg/validator"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	valuesloader "helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

type request struct {
	Chart       string   `json:"chart"`
	Name        string   `json:"name"`
	Namespace   string   `json:"namespace"`
	KubeVersion string   `json:"kube_version"`
	Values      string   `json:"values"`  // a values file's contents (YAML or JSON)
	Install     bool     `json:"install"` // `helm install --dry-run=client` rather than `helm template`
	Validate    []string `json:"validate"`
	SkipKinds   []string `json:"skip_kinds"`
	Objects     bool     `json:"objects"` // reply with the objects as JSON rather than the manifest's text
}

type invalid struct {
	Object  string `json:"object"`
	Version string `json:"version"`
	Error   string `json:"error"`
}

type reply struct {
	Manifest string            `json:"manifest,omitempty"`
	Objects  []json.RawMessage `json:"objects,omitempty"`
	Error    string            `json:"error,omitempty"`
	Invalid  []invalid         `json:"invalid,omitempty"`
}

// A chart read from disk. Helm reads and parses the chart on each `helm template`; the server keeps a chart while
// no file under its path changes (same names, sizes and modification times).
type loadedChart struct {
	stamp string
	chart *chart.Chart
}

// Charts kept by path. Only charts without dependencies are kept: an install removes a parent chart's disabled
// subcharts from the chart it is given, while it copies the values it merges and leaves the rest as loaded.
var charts = map[string]loadedChart{}

// stamp lists every file and folder under path with its size and modification time.
func stamp(path string) (string, error) {
	var b strings.Builder
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s\x00%d\x00%d\n", p, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	return b.String(), err
}

func load(path string) (loadedChart, error) {
	st, err := stamp(path)
	if err != nil {
		return loadedChart{}, err
	}
	if c, ok := charts[path]; ok && c.stamp == st {
		return c, nil
	}
	loaded, err := loader.Load(path)
	if err != nil {
		return loadedChart{}, err
	}
	ch, ok := loaded.(*chart.Chart)
	if !ok {
		return loadedChart{}, fmt.Errorf("%s: not an apiVersion v1/v2 chart", path)
	}
	c := loadedChart{stamp: st, chart: ch}
	delete(charts, path)
	if len(ch.Metadata.Dependencies) == 0 && len(ch.Dependencies()) == 0 {
		charts[path] = c
	}
	return c, nil
}

func render(req request) (string, error) {
	vals, err := valuesloader.LoadValues(strings.NewReader(req.Values))
	if err != nil {
		return "", fmt.Errorf("failed to parse values: %w", err)
	}
	c, err := load(req.Chart)
	if err != nil {
		return "", err
	}
	ch := c.chart
	client := action.NewInstall(action.NewConfiguration())
	client.DryRunStrategy = action.DryRunClient
	client.ReleaseName = req.Name
	client.Namespace = req.Namespace
	client.Replace = !req.Install // the template command skips the name check
	if req.KubeVersion != "" {
		kv, err := common.ParseKubeVersion(req.KubeVersion)
		if err != nil {
			return "", fmt.Errorf("invalid kube version '%s': %w", req.KubeVersion, err)
		}
		client.KubeVersion = kv
	}
	r, err := client.RunWithContext(context.Background(), ch, vals)
	if err != nil {
		return "", err
	}
	rel := r.(*release.Release)
	var b strings.Builder
	fmt.Fprintln(&b, strings.TrimSpace(rel.Manifest))
	for _, h := range rel.Hooks {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", h.Path, h.Manifest)
	}
	return b.String(), nil
}

type validators struct {
	schemas string
	mu      sync.Mutex
	byKey   map[string]validator.Validator
	// The documents found valid so far, by Kubernetes version and content: renders repeat most objects (Services,
	// NetworkPolicies, dashboards), and an object is validated once.
	valid map[[sha256.Size]byte]struct{}
}

func (v *validators) get(version string, skip []string) (validator.Validator, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	key := version + "|" + strings.Join(skip, ",")
	if val, ok := v.byKey[key]; ok {
		return val, nil
	}
	kinds := map[string]struct{}{}
	for _, k := range skip {
		kinds[k] = struct{}{}
	}
	val, err := validator.New([]string{v.schemas}, validator.Opts{KubernetesVersion: version, Strict: true, SkipKinds: kinds})
	if err != nil {
		return nil, err
	}
	v.byKey[key] = val
	return val, nil
}

func (v *validators) validate(docs []string, versions, skip []string) ([]invalid, error) {
	var out []invalid
	for _, version := range versions {
		val, err := v.get(version, skip)
		if err != nil {
			return nil, err
		}
		for _, doc := range docs {
			key := sha256.Sum256([]byte(version + "\x00" + strings.Join(skip, ",") + "\x00" + doc))
			if _, seen := v.valid[key]; seen {
				continue
			}
			res := val.ValidateResource(resource.Resource{Path: "render", Bytes: []byte(doc)})
			if res.Status != validator.Invalid && res.Status != validator.Error {
				v.valid[key] = struct{}{}
				continue
			}
			object := "?"
			if sig, err := res.Resource.Signature(); err == nil {
				object = sig.Kind + "/" + sig.Name
			}
			message := "invalid"
			if res.Err != nil {
				message = res.Err.Error()
			}
			out = append(out, invalid{Object: object, Version: version, Error: message})
		}
	}
	return out, nil
}

// documents splits a manifest into its YAML documents as kubectl reads a stream (the API machinery's YAMLReader),
// in the order of the manifest, leaving out blank ones.
func documents(manifest string) ([]string, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var out []string
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if strings.TrimSpace(string(doc)) != "" {
			out = append(out, string(doc))
		}
	}
}

// converted holds each document converted so far, by content: renders of one release repeat most documents. It
// is emptied when it reaches maxConverted documents, which bounds its memory.
var converted = map[[sha256.Size]byte]json.RawMessage{}

const maxConverted = 50000

// objects converts each YAML document of a manifest to JSON as the Kubernetes API machinery does (sigs.k8s.io/yaml),
// in the order of the manifest, leaving out empty documents.
func objects(docs []string) ([]json.RawMessage, error) {
	out := []json.RawMessage{}
	for _, text := range docs {
		key := sha256.Sum256([]byte(text))
		doc, seen := converted[key]
		if !seen {
			var err error
			if doc, err = yaml.YAMLToJSON([]byte(text)); err != nil {
				return nil, fmt.Errorf("%s: %w", strings.SplitN(text, "\n", 2)[0], err)
			}
			if len(converted) >= maxConverted {
				clear(converted)
			}
			converted[key] = doc
		}
		if string(doc) != "null" {
			out = append(out, doc)
		}
	}
	return out, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: render-server SCHEMA_DIR  (requests on stdin, one JSON object a line)")
		os.Exit(2)
	}
	// A render allocates much and keeps little: garbage is collected only when the heap reaches 512 MiB, rather
	// than each time it grows fourfold (GOGC=400): fewer collections, each of a heap that is mostly garbage.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(512 << 20)
	vals := &validators{schemas: os.Args[1], byKey: map[string]validator.Validator{}, valid: map[[sha256.Size]byte]struct{}{}}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		if err := out.Encode(serve(in.Bytes(), vals)); err != nil {
			os.Exit(1)
		}
	}
}

// serve answers one request: the render, split into documents once (and only when they are validated or
// returned as objects).
func serve(line []byte, vals *validators) (rep reply) {
	var req request
	m, err := "", json.Unmarshal(line, &req)
	if err == nil {
		m, err = render(req)
	}
	var docs []string
	if err == nil && (len(req.Validate) > 0 || req.Objects) {
		docs, err = documents(m)
	}
	if err == nil {
		rep.Invalid, err = vals.validate(docs, req.Validate, req.SkipKinds)
	}
	switch {
	case err != nil:
		rep.Error = err.Error()
	case !req.Objects:
		rep.Manifest = m
	default:
		if rep.Objects, err = objects(docs); err != nil {
			rep.Error = err.Error()
		}
	}
	return rep
}
