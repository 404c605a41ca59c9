// Package kubernetes holds the Kubernetes manifests of usersigd and this
// test, which decodes every manifest STRICTLY into the real typed API object
// (so a misspelt field fails here, not silently in the cluster) and checks
// that the pieces fit together: the Deployment, its ConfigMap and Secrets,
// the Services, the NetworkPolicy, the PodDisruptionBudget and the
// HorizontalPodAutoscaler.
//
// The ConfigMap's config.yaml is the server's to judge: the server's
// TestDeployConfigLoads (server/deploy_test.go) loads it with the real
// loader. This test reads only the few fields of it that other objects
// must agree with (the listen ports of gRPC, the HTTP/JSON API and the
// metrics, key and TLS files, shutdown times), and
// reads them leniently, so that a key the server adds or a default it
// applies needs no change here.
//
// It is a module of its own so that the k8s.io dependencies stay out of the
// main module. Run it with:
//
//	cd deploy/kubernetes && go test ./...
package kubernetes

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Names the manifests must use; the server, its docs and the README refer
// to them.
const (
	deploymentName = "usersigd"
	configMapName  = "usersigd-config"
	secretName     = "usersigd-keys"
	serviceName    = "usersigd"
	headlessName   = "usersigd-headless"
	pdbName        = "usersigd"
	hpaName        = "usersigd"
	policyName     = "usersigd"
	// The server's certificate (gRPC and the HTTP API): a Secret of type
	// kubernetes.io/tls that cert-manager (or kubectl create secret tls)
	// creates out of band, so it is not among the manifests.
	tlsSecretName = "usersigd-tls"

	configKey       = "config.yaml"
	configMountPath = "/etc/usersig"
	secretMountPath = "/run/secrets/usersig"
	// The container's ports, by name: gRPC, the HTTP/JSON API (config.yaml's
	// http_api) and metrics and probes (config.yaml's http).
	grpcPortName = "grpc"
	apiPortName  = "http-api"
	httpPortName = "http"
	grpcPort     = 50051
	apiPort      = 8080
	httpPort     = 9090
	nonRootID    = 65532
)

// skippedFiles are *.yaml files in this directory that are not Kubernetes
// objects. There are none: a kustomization.yaml is deliberately absent,
// because `kubectl apply -f deploy/kubernetes/` would try to apply it as an
// object of kind Kustomization and fail. Anything that is not one of the
// kinds in newObject fails the test.
var skippedFiles = map[string]string{}

// newObject returns an empty typed object for apiVersion and kind, or nil
// when the pair is not one these manifests may contain.
func newObject(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	}
	return nil
}

// splitDocuments splits a YAML stream on "---" separator lines (optionally
// followed by a comment) and drops documents that hold only comments and
// blank lines.
func splitDocuments(data []byte) []string {
	var docs []string
	var cur strings.Builder
	flush := func() {
		if hasContent(cur.String()) {
			docs = append(docs, cur.String())
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if trimmed := strings.TrimRight(line, " \t\r"); trimmed == "---" || strings.HasPrefix(trimmed, "--- #") {
			flush()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

func hasContent(doc string) bool {
	for line := range strings.SplitSeq(doc, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			return true
		}
	}
	return false
}

// decodeStrict converts one YAML document to JSON (refusing duplicate keys)
// and decodes it into out, refusing fields out does not have. Two decoders
// are used: encoding/json with DisallowUnknownFields, and sigs.k8s.io/json's
// strict mode (what the API server uses), which also refuses keys that only
// match a field case-insensitively, such as "Replicas", which encoding/json
// would quietly accept.
func decodeStrict(doc []byte, out any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return fmt.Errorf("YAML: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("strict decode: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("strict decode: trailing data after the object")
	}
	strictErrs, err := sigsjson.UnmarshalStrict(js, out)
	if err != nil {
		return fmt.Errorf("strict decode: %w", err)
	}
	if len(strictErrs) > 0 {
		return fmt.Errorf("strict decode: %w", errors.Join(strictErrs...))
	}
	return nil
}

// decodeManifest reads apiVersion and kind of one document and decodes it
// strictly into the matching typed object.
func decodeManifest(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("reading apiVersion/kind: %w", err)
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return nil, fmt.Errorf("missing apiVersion or kind (apiVersion=%q kind=%q)", tm.APIVersion, tm.Kind)
	}
	obj := newObject(tm.APIVersion, tm.Kind)
	if obj == nil {
		return nil, fmt.Errorf("unexpected apiVersion/kind %s %s", tm.APIVersion, tm.Kind)
	}
	if err := decodeStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", tm.APIVersion, tm.Kind, err)
	}
	return obj, nil
}

// manifests is every object in this directory, by kind and name.
type manifests struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	pdbs        map[string]*policyv1.PodDisruptionBudget
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	policies    map[string]*networkingv1.NetworkPolicy
	deployment  *appsv1.Deployment // deploymentName
	container   *corev1.Container  // its first container
	configMap   *corev1.ConfigMap  // configMapName
	secret      *corev1.Secret     // secretName
	config      *deployedConfig    // configKey of configMap, leniently
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		configMaps:  map[string]*corev1.ConfigMap{},
		secrets:     map[string]*corev1.Secret{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
		hpas:        map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		policies:    map[string]*networkingv1.NetworkPolicy{},
	}
	var files []string
	for _, pattern := range []string{"*.yaml", "*.yml"} {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, matches...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatal("no *.yaml manifests found in the test's directory")
	}
	seen := map[string]string{} // kind/name -> where
	for _, file := range files {
		if why, ok := skippedFiles[file]; ok {
			t.Logf("skipping %s: %s", file, why)
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		docs := splitDocuments(data)
		if len(docs) == 0 {
			t.Errorf("%s: no YAML document in the file", file)
		}
		for i, doc := range docs {
			where := fmt.Sprintf("%s (document %d)", file, i+1)
			obj, err := decodeManifest([]byte(doc))
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			meta := objectMeta(obj)
			kind := fmt.Sprintf("%T", obj)
			if meta.Name == "" {
				t.Errorf("%s: %s has no metadata.name", where, kind)
				continue
			}
			if meta.Namespace != "" {
				t.Errorf("%s: %s %q sets metadata.namespace %q; the manifests must be namespace-less (kubectl apply -n X)", where, kind, meta.Name, meta.Namespace)
			}
			key := kind + "/" + meta.Name
			if prev, dup := seen[key]; dup {
				t.Errorf("%s: %s %q is defined again (first in %s)", where, kind, meta.Name, prev)
				continue
			}
			seen[key] = where
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deployments[o.Name] = o
			case *corev1.Service:
				m.services[o.Name] = o
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = o
			case *corev1.Secret:
				m.secrets[o.Name] = o
			case *policyv1.PodDisruptionBudget:
				m.pdbs[o.Name] = o
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpas[o.Name] = o
			case *networkingv1.NetworkPolicy:
				m.policies[o.Name] = o
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	m.deployment = m.deployments[deploymentName]
	m.configMap = m.configMaps[configMapName]
	m.secret = m.secrets[secretName]
	switch {
	case m.deployment == nil:
		t.Fatalf("no Deployment %q in the manifests", deploymentName)
	case len(m.deployment.Spec.Template.Spec.Containers) != 1:
		t.Fatalf("Deployment %q has %d containers, want 1", deploymentName, len(m.deployment.Spec.Template.Spec.Containers))
	case m.configMap == nil:
		t.Fatalf("no ConfigMap %q in the manifests", configMapName)
	case m.secret == nil:
		t.Fatalf("no Secret %q in the manifests", secretName)
	}
	m.container = &m.deployment.Spec.Template.Spec.Containers[0]
	cfg, err := readConfig(m.configMap)
	if err != nil {
		t.Fatal(err)
	}
	m.config = cfg
	return m
}

func objectMeta(obj any) metav1.ObjectMeta {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return o.ObjectMeta
	case *corev1.Service:
		return o.ObjectMeta
	case *corev1.ConfigMap:
		return o.ObjectMeta
	case *corev1.Secret:
		return o.ObjectMeta
	case *policyv1.PodDisruptionBudget:
		return o.ObjectMeta
	case *autoscalingv2.HorizontalPodAutoscaler:
		return o.ObjectMeta
	case *networkingv1.NetworkPolicy:
		return o.ObjectMeta
	}
	panic(fmt.Sprintf("objectMeta: unexpected %T", obj))
}

// deployedConfig is what the cross-object checks read of usersigd's
// config.yaml: where it listens, which files it reads and how long it
// drains. It is no copy of the server's schema: it is decoded leniently
// (other keys are ignored), and the server's TestDeployConfigLoads judges
// the whole file with the real loader.
type deployedConfig struct {
	GRPC struct {
		Listen string `json:"listen"`
		TLS    *struct {
			CertFile     string `json:"cert_file"`
			KeyFile      string `json:"key_file"`
			ClientCAFile string `json:"client_ca_file"`
		} `json:"tls"`
	} `json:"grpc"`
	// HTTPAPI is nil when config.yaml has no http_api section.
	HTTPAPI *struct {
		Listen string `json:"listen"`
		TLS    *struct {
			CertFile string `json:"cert_file"`
			KeyFile  string `json:"key_file"`
		} `json:"tls"`
	} `json:"http_api"`
	HTTP struct {
		Listen string `json:"listen"`
	} `json:"http"`
	Shutdown struct {
		Delay   string `json:"delay"`
		Timeout string `json:"timeout"`
	} `json:"shutdown"`
	Apps []struct {
		Keys []struct {
			ID   string `json:"id"`
			File string `json:"file"`
			Env  string `json:"env"`
		} `json:"keys"`
	} `json:"apps"`
}

// readConfig reads the deployedConfig of a ConfigMap's config.yaml.
func readConfig(cm *corev1.ConfigMap) (*deployedConfig, error) {
	raw, ok := cm.Data[configKey]
	if !ok {
		return nil, fmt.Errorf("ConfigMap %q has no data key %q", cm.Name, configKey)
	}
	var cfg deployedConfig
	if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
		return nil, fmt.Errorf("ConfigMap %q: %s is not YAML of the shape the server reads: %v", cm.Name, configKey, err)
	}
	return &cfg, nil
}

// check is one named property; fn returns nil when it holds, or an error
// that says what is wrong.
type check struct {
	name string
	fn   func() error
}

func runChecks(t *testing.T, checks []check) {
	t.Helper()
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if err := c.fn(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestDeployment(t *testing.T) {
	m := loadManifests(t)
	d, c := m.deployment, m.container
	pod := &d.Spec.Template.Spec
	podLabels := labels.Set(d.Spec.Template.Labels)

	runChecks(t, []check{
		{"replicas is 3", func() error {
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
				return fmt.Errorf("Deployment %q: spec.replicas = %s, want 3", d.Name, ptrString(d.Spec.Replicas))
			}
			return nil
		}},
		{"selector matches the pod template labels", func() error {
			return selects(d.Spec.Selector, podLabels, "Deployment spec.selector")
		}},
		{"pod runs as non-root 65532:65532", func() error {
			sc := pod.SecurityContext
			if sc == nil {
				return errors.New("pod securityContext is missing")
			}
			var errs []error
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				errs = append(errs, fmt.Errorf("pod securityContext.runAsNonRoot = %s, want true", ptrString(sc.RunAsNonRoot)))
			}
			if sc.RunAsUser == nil || *sc.RunAsUser != nonRootID {
				errs = append(errs, fmt.Errorf("pod securityContext.runAsUser = %s, want %d", ptrString(sc.RunAsUser), nonRootID))
			}
			if sc.RunAsGroup == nil || *sc.RunAsGroup != nonRootID {
				errs = append(errs, fmt.Errorf("pod securityContext.runAsGroup = %s, want %d", ptrString(sc.RunAsGroup), nonRootID))
			}
			if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				errs = append(errs, errors.New("pod securityContext.seccompProfile.type is not RuntimeDefault"))
			}
			return errors.Join(errs...)
		}},
		{"fsGroup is set so the non-root user can read the 0440 key files", func() error {
			sc := pod.SecurityContext
			if sc == nil || sc.FSGroup == nil {
				return errors.New("pod securityContext.fsGroup is not set: the key files (mode 0440) would be unreadable by uid 65532")
			}
			if *sc.FSGroup != nonRootID {
				return fmt.Errorf("pod securityContext.fsGroup = %d, want %d", *sc.FSGroup, nonRootID)
			}
			return nil
		}},
		{"container is locked down", func() error {
			sc := c.SecurityContext
			if sc == nil {
				return fmt.Errorf("container %q has no securityContext", c.Name)
			}
			var errs []error
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				errs = append(errs, fmt.Errorf("container %q: allowPrivilegeEscalation = %s, want false", c.Name, ptrString(sc.AllowPrivilegeEscalation)))
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				errs = append(errs, fmt.Errorf("container %q: readOnlyRootFilesystem = %s, want true", c.Name, ptrString(sc.ReadOnlyRootFilesystem)))
			}
			if sc.Privileged != nil && *sc.Privileged {
				errs = append(errs, fmt.Errorf("container %q is privileged", c.Name))
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
				errs = append(errs, fmt.Errorf("container %q: capabilities must drop [ALL] and add nothing, got %+v", c.Name, sc.Capabilities))
			}
			return errors.Join(errs...)
		}},
		{"resources are set", func() error {
			want := []struct {
				list  corev1.ResourceList
				where string
				name  corev1.ResourceName
				value string
			}{
				{c.Resources.Requests, "requests", corev1.ResourceCPU, "100m"},
				{c.Resources.Requests, "requests", corev1.ResourceMemory, "64Mi"},
				{c.Resources.Limits, "limits", corev1.ResourceCPU, "1"},
				{c.Resources.Limits, "limits", corev1.ResourceMemory, "128Mi"},
			}
			var errs []error
			for _, w := range want {
				got, ok := w.list[w.name]
				if !ok {
					errs = append(errs, fmt.Errorf("container %q: resources.%s.%s is not set, want %s", c.Name, w.where, w.name, w.value))
				} else if got.Cmp(resource.MustParse(w.value)) != 0 {
					errs = append(errs, fmt.Errorf("container %q: resources.%s.%s = %s, want %s", c.Name, w.where, w.name, got.String(), w.value))
				}
			}
			return errors.Join(errs...)
		}},
		{"GOMEMLIMIT, if set, is below the memory limit", func() error {
			for _, e := range c.Env {
				if e.Name != "GOMEMLIMIT" {
					continue
				}
				n, err := parseGoMemLimit(e.Value)
				if err != nil {
					return fmt.Errorf("container %q: GOMEMLIMIT %q: %v", c.Name, e.Value, err)
				}
				limit := c.Resources.Limits.Memory()
				if limit.IsZero() || n >= limit.Value() {
					return fmt.Errorf("container %q: GOMEMLIMIT %q (%d bytes) must be below the memory limit %s", c.Name, e.Value, n, limit.String())
				}
			}
			return nil
		}},
		{"container ports grpc 50051, http-api 8080 and http 9090", func() error {
			var errs []error
			for name, port := range map[string]int32{grpcPortName: grpcPort, apiPortName: apiPort, httpPortName: httpPort} {
				p := containerPortByName(c, name)
				switch {
				case p == nil:
					errs = append(errs, fmt.Errorf("container %q has no port named %q", c.Name, name))
				case p.ContainerPort != port:
					errs = append(errs, fmt.Errorf("container %q: port %q is %d, want %d", c.Name, name, p.ContainerPort, port))
				}
			}
			return errors.Join(errs...)
		}},
		{"container ports have valid, distinct names and distinct numbers", func() error {
			// The API server would refuse the Deployment otherwise; names
			// are what the Services, the probes and this test find ports by.
			var errs []error
			names, numbers := map[string]bool{}, map[int32]bool{}
			for _, p := range c.Ports {
				if msgs := validation.IsValidPortName(p.Name); len(msgs) > 0 {
					errs = append(errs, fmt.Errorf("container %q: port name %q: %s", c.Name, p.Name, strings.Join(msgs, "; ")))
				}
				if names[p.Name] {
					errs = append(errs, fmt.Errorf("container %q: two ports named %q", c.Name, p.Name))
				}
				if numbers[p.ContainerPort] {
					errs = append(errs, fmt.Errorf("container %q: two ports numbered %d", c.Name, p.ContainerPort))
				}
				names[p.Name], numbers[p.ContainerPort] = true, true
			}
			return errors.Join(errs...)
		}},
		{"readiness probe is GET /readyz on the http port (the kubelet's gRPC probe cannot speak TLS)", func() error {
			p := c.ReadinessProbe
			if p == nil {
				return fmt.Errorf("container %q has no readinessProbe", c.Name)
			}
			if err := probeTargetsDeclaredPort(c, p); err != nil {
				return fmt.Errorf("readinessProbe: %w", err)
			}
			if p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
				return errors.New("readinessProbe must be httpGet /readyz: gRPC is served with TLS, and the kubelet's grpc probe speaks plaintext only")
			}
			if cp := resolvePort(c, p.HTTPGet.Port); cp == nil || cp.Name != httpPortName {
				return fmt.Errorf("readinessProbe.httpGet.port %s is not the container port named http", p.HTTPGet.Port.String())
			}
			if p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP {
				return fmt.Errorf("readinessProbe.httpGet.scheme = %s, but the http port serves plain HTTP", p.HTTPGet.Scheme)
			}
			return nil
		}},
		{"liveness probe set (GET /healthz)", func() error {
			p := c.LivenessProbe
			if p == nil {
				return fmt.Errorf("container %q has no livenessProbe", c.Name)
			}
			if err := probeTargetsDeclaredPort(c, p); err != nil {
				return fmt.Errorf("livenessProbe: %w", err)
			}
			// Not the gRPC health service or /readyz: those go unhealthy while
			// draining, and liveness must not kill a draining pod.
			if p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
				return errors.New("livenessProbe must be httpGet /healthz (it stays 200 while the pod drains)")
			}
			return nil
		}},
		{"config comes from the ConfigMap, read-only at /etc/usersig", func() error {
			v, mount, err := volumeAndMount(pod, c, configMountPath)
			if err != nil {
				return err
			}
			if v.ConfigMap == nil {
				return fmt.Errorf("volume %q mounted at %s is not a configMap volume", v.Name, configMountPath)
			}
			if v.ConfigMap.Name != configMapName {
				return fmt.Errorf("volume %q refers to ConfigMap %q, want %q", v.Name, v.ConfigMap.Name, configMapName)
			}
			if _, ok := m.configMaps[v.ConfigMap.Name]; !ok {
				return fmt.Errorf("volume %q refers to ConfigMap %q, which the manifests do not define", v.Name, v.ConfigMap.Name)
			}
			return mountReadOnlyNoSubPath(mount)
		}},
		{"keys come from the Secret, read-only at /run/secrets/usersig, mode 0440", func() error {
			v, mount, err := volumeAndMount(pod, c, secretMountPath)
			if err != nil {
				return err
			}
			if v.Secret == nil {
				return fmt.Errorf("volume %q mounted at %s is not a secret volume", v.Name, secretMountPath)
			}
			if v.Secret.SecretName != secretName {
				return fmt.Errorf("volume %q refers to Secret %q, want %q", v.Name, v.Secret.SecretName, secretName)
			}
			if _, ok := m.secrets[v.Secret.SecretName]; !ok {
				return fmt.Errorf("volume %q refers to Secret %q, which the manifests do not define", v.Name, v.Secret.SecretName)
			}
			if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o440 {
				return fmt.Errorf("secret volume %q: defaultMode = %s, want 0440 (decimal 288); the server refuses key files readable by others", v.Name, modeString(v.Secret.DefaultMode))
			}
			for _, item := range v.Secret.Items {
				if item.Mode != nil && *item.Mode&0o007 != 0 {
					return fmt.Errorf("secret volume %q: item %q has mode %s, readable by others", v.Name, item.Key, modeString(item.Mode))
				}
			}
			return mountReadOnlyNoSubPath(mount)
		}},
		{"--config points into the ConfigMap mount", func() error {
			args := append(slices.Clone(c.Command), c.Args...)
			i := slices.Index(args, "--config")
			if i < 0 || i+1 >= len(args) {
				return fmt.Errorf("container %q: no `--config PATH` in command/args %q", c.Name, args)
			}
			p := args[i+1]
			if p != configMountPath+"/"+configKey {
				return fmt.Errorf("container %q: --config %q, want %s/%s (the ConfigMap's key %q)", c.Name, p, configMountPath, configKey, configKey)
			}
			return nil
		}},
		{"prometheus scrape annotations", func() error {
			want := map[string]string{
				"prometheus.io/scrape": "true",
				"prometheus.io/port":   strconv.Itoa(httpPort),
				"prometheus.io/path":   "/metrics",
			}
			var errs []error
			for k, v := range want {
				if got, ok := d.Spec.Template.Annotations[k]; !ok || got != v {
					errs = append(errs, fmt.Errorf("pod template annotation %s = %q, want %q", k, got, v))
				}
			}
			return errors.Join(errs...)
		}},
		{"replicas spread across nodes", func() error {
			for _, tsc := range pod.TopologySpreadConstraints {
				if tsc.TopologyKey == "kubernetes.io/hostname" && selects(tsc.LabelSelector, podLabels, "topologySpreadConstraint") == nil {
					return nil
				}
			}
			if a := pod.Affinity; a != nil && a.PodAntiAffinity != nil {
				for _, term := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
					if term.PodAffinityTerm.TopologyKey == "kubernetes.io/hostname" && selects(term.PodAffinityTerm.LabelSelector, podLabels, "podAntiAffinity") == nil {
						return nil
					}
				}
				for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
					if term.TopologyKey == "kubernetes.io/hostname" && selects(term.LabelSelector, podLabels, "podAntiAffinity") == nil {
						return nil
					}
				}
			}
			return errors.New("no topologySpreadConstraint or podAntiAffinity on kubernetes.io/hostname that selects the pods")
		}},
		{"image is set", func() error {
			if c.Image == "" {
				return fmt.Errorf("container %q has no image", c.Name)
			}
			return nil
		}},
	})
}

func TestServices(t *testing.T) {
	runChecks(t, serviceChecks(loadManifests(t)))
}

// serviceChecks are the checks that the Services select the pods and lead
// to the container's ports.
func serviceChecks(m *manifests) []check {
	c := m.container
	podLabels := labels.Set(m.deployment.Spec.Template.Labels)

	var checks []check
	for _, name := range []string{serviceName, headlessName} {
		checks = append(checks, check{name + " exists and selects the Deployment's pods", func() error {
			s, ok := m.services[name]
			if !ok {
				return fmt.Errorf("no Service %q in the manifests", name)
			}
			if len(s.Spec.Selector) == 0 {
				return fmt.Errorf("Service %q has no selector", name)
			}
			if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
				return fmt.Errorf("Service %q: selector %v does not match the pod labels %v", name, s.Spec.Selector, podLabels)
			}
			return nil
		}})
	}
	// Every Service (not only the two above) must point at real container
	// ports, by name or number, under distinct port names and numbers.
	for name, s := range m.services {
		checks = append(checks, check{name + " targetPorts match container ports", func() error {
			var errs []error
			names, numbers := map[string]bool{}, map[int32]bool{}
			for _, sp := range s.Spec.Ports {
				target := serviceTarget(sp)
				cp := resolvePort(c, target)
				switch {
				case cp == nil:
					errs = append(errs, fmt.Errorf("Service %q port %q: targetPort %s is not a port of container %q", name, sp.Name, target.String(), c.Name))
				case protocolOrTCP(cp.Protocol) != protocolOrTCP(sp.Protocol):
					errs = append(errs, fmt.Errorf("Service %q port %q: protocol %s, container port %q is %s", name, sp.Name, protocolOrTCP(sp.Protocol), cp.Name, protocolOrTCP(cp.Protocol)))
				}
				if names[sp.Name] || numbers[sp.Port] {
					errs = append(errs, fmt.Errorf("Service %q: port %q (%d) repeats a name or number of another of its ports", name, sp.Name, sp.Port))
				}
				names[sp.Name], numbers[sp.Port] = true, true
			}
			return errors.Join(errs...)
		}})
	}
	// wantPort checks that Service name has a port portName on number,
	// with appProtocol app (unless app is ""), that reaches the container
	// port named target.
	wantPort := func(name, portName string, number int32, app, target string) error {
		s, ok := m.services[name]
		if !ok {
			return fmt.Errorf("no Service %q", name)
		}
		sp := servicePortByName(s, portName)
		if sp == nil {
			return fmt.Errorf("Service %q has no port named %s", name, portName)
		}
		var errs []error
		if sp.Port != number {
			errs = append(errs, fmt.Errorf("Service %q: port %s is %d, want %d", name, portName, sp.Port, number))
		}
		if app != "" && (sp.AppProtocol == nil || *sp.AppProtocol != app) {
			errs = append(errs, fmt.Errorf("Service %q: port %s has appProtocol %s, want %s", name, portName, ptrString(sp.AppProtocol), app))
		}
		if to := serviceTarget(*sp); resolvePort(c, to) == nil || resolvePort(c, to).Name != target {
			errs = append(errs, fmt.Errorf("Service %q: port %s has targetPort %s, which is not the container's port named %q", name, portName, to.String(), target))
		}
		return errors.Join(errs...)
	}
	checks = append(checks,
		check{"usersigd is ClusterIP with grpc (appProtocol grpc), http-api (appProtocol https) and http-metrics", func() error {
			s, ok := m.services[serviceName]
			if !ok {
				return fmt.Errorf("no Service %q", serviceName)
			}
			var errs []error
			if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
				errs = append(errs, fmt.Errorf("Service %q: type %s, want ClusterIP", serviceName, s.Spec.Type))
			}
			if s.Spec.ClusterIP == corev1.ClusterIPNone {
				errs = append(errs, fmt.Errorf("Service %q is headless; it should have a cluster IP", serviceName))
			}
			errs = append(errs,
				wantPort(serviceName, "grpc", grpcPort, "grpc", grpcPortName),
				wantPort(serviceName, "http-api", apiPort, "https", apiPortName),
				wantPort(serviceName, "http-metrics", httpPort, "", httpPortName))
			return errors.Join(errs...)
		}},
		check{"usersigd-headless is headless with the grpc and http-api ports", func() error {
			s, ok := m.services[headlessName]
			if !ok {
				return fmt.Errorf("no Service %q", headlessName)
			}
			var errs []error
			if s.Spec.ClusterIP != corev1.ClusterIPNone {
				errs = append(errs, fmt.Errorf("Service %q: clusterIP = %q, want None", headlessName, s.Spec.ClusterIP))
			}
			if s.Spec.PublishNotReadyAddresses {
				errs = append(errs, fmt.Errorf("Service %q publishes not-ready addresses: clients would keep calling draining pods", headlessName))
			}
			errs = append(errs,
				wantPort(headlessName, "grpc", grpcPort, "grpc", grpcPortName),
				wantPort(headlessName, "http-api", apiPort, "https", apiPortName))
			return errors.Join(errs...)
		}},
	)
	return checks
}

// TestServiceChecksCatchMistakes proves serviceChecks can fail: each edit
// breaks a Service's link to the container's ports.
func TestServiceChecksCatchMistakes(t *testing.T) {
	portOf := func(t *testing.T, m *manifests, svc, name string) *corev1.ServicePort {
		s, ok := m.services[svc]
		if !ok {
			t.Fatalf("test bug: no Service %q", svc)
		}
		sp := servicePortByName(s, name)
		if sp == nil {
			t.Fatalf("test bug: Service %q has no port %q", svc, name)
		}
		return sp
	}
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, m *manifests)
	}{
		{"the API's targetPort a name the container lacks", func(t *testing.T, m *manifests) {
			portOf(t, m, serviceName, "http-api").TargetPort = intstr.FromString("https")
		}},
		{"the API's port leading to the metrics port", func(t *testing.T, m *manifests) {
			portOf(t, m, serviceName, "http-api").TargetPort = intstr.FromString(httpPortName)
		}},
		{"the API's appProtocol http", func(t *testing.T, m *manifests) {
			http := "http"
			portOf(t, m, headlessName, "http-api").AppProtocol = &http
		}},
		{"the API on another Service port", func(t *testing.T, m *manifests) { portOf(t, m, serviceName, "http-api").Port = 443 }},
		{"the headless Service without the API", func(t *testing.T, m *manifests) {
			s := m.services[headlessName]
			s.Spec.Ports = slices.DeleteFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Name == "http-api" })
		}},
		{"two ports named alike", func(t *testing.T, m *manifests) { portOf(t, m, serviceName, "http-metrics").Name = "http-api" }},
		{"the container without its API port", func(t *testing.T, m *manifests) {
			m.container.Ports = slices.DeleteFunc(m.container.Ports, func(p corev1.ContainerPort) bool { return p.Name == apiPortName })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := loadManifests(t)
			tc.edit(t, m)
			var failed []error
			for _, c := range serviceChecks(m) {
				if err := c.fn(); err != nil {
					failed = append(failed, fmt.Errorf("%s: %w", c.name, err))
				}
			}
			if len(failed) == 0 {
				t.Errorf("the Services with %s pass every check", tc.name)
			} else {
				t.Logf("refused as expected: %v", errors.Join(failed...))
			}
		})
	}
}

func TestConfigAndSecret(t *testing.T) {
	m := loadManifests(t)
	runChecks(t, append([]check{
		{"Secret is Opaque and has keys", func() error {
			if m.secret.Type != "" && m.secret.Type != corev1.SecretTypeOpaque {
				return fmt.Errorf("Secret %q: type %s, want Opaque", secretName, m.secret.Type)
			}
			if len(secretKeys(m.secret)) == 0 {
				return fmt.Errorf("Secret %q has no data or stringData keys", secretName)
			}
			return nil
		}},
	}, configChecks(m, m.config)...))
}

// configChecks are the checks that config.yaml and the other objects agree:
// the listen ports (gRPC, the HTTP API, metrics), the key files and
// variables, the TLS files and the shutdown times.
func configChecks(m *manifests, cfg *deployedConfig) []check {
	c := m.container
	pod := &m.deployment.Spec.Template.Spec
	return []check{
		{"listen addresses match the container ports, and every container port has a listener", func() error {
			// key in config.yaml, its address, the container port's name
			type listener struct{ key, addr, port string }
			listeners := []listener{
				{"grpc.listen", cfg.GRPC.Listen, grpcPortName},
				{"http.listen", cfg.HTTP.Listen, httpPortName},
			}
			if cfg.HTTPAPI != nil {
				listeners = append(listeners, listener{"http_api.listen", cfg.HTTPAPI.Listen, apiPortName})
			}
			var errs []error
			for _, cp := range c.Ports {
				if !slices.ContainsFunc(listeners, func(l listener) bool { return l.port == cp.Name }) {
					var keys []string
					for _, l := range listeners {
						keys = append(keys, l.key)
					}
					errs = append(errs, fmt.Errorf("container port %q (%d): none of config.yaml's listeners (%s) serves it", cp.Name, cp.ContainerPort, strings.Join(keys, ", ")))
				}
			}
			for _, l := range listeners {
				host, port, err := net.SplitHostPort(l.addr)
				if err != nil {
					errs = append(errs, fmt.Errorf("config %s %q: %v", l.key, l.addr, err))
					continue
				}
				if host != "0.0.0.0" && host != "" && host != "::" {
					errs = append(errs, fmt.Errorf("config %s %q listens on %s only; the kubelet and other pods cannot reach it", l.key, l.addr, host))
				}
				if cp := containerPortByName(c, l.port); cp == nil || strconv.Itoa(int(cp.ContainerPort)) != port {
					errs = append(errs, fmt.Errorf("config %s %q does not match the container port named %q", l.key, l.addr, l.port))
				}
			}
			return errors.Join(errs...)
		}},
		{"every key file lies in the Secret's mount and names a Secret key", func() error {
			keys := secretKeys(m.secret)
			var errs []error
			for i, app := range cfg.Apps {
				for _, k := range app.Keys {
					if k.File == "" {
						continue
					}
					dir, base := path.Split(path.Clean(k.File))
					if path.Clean(dir) != secretMountPath {
						errs = append(errs, fmt.Errorf("config apps[%d] key %q: file %s is not directly under the Secret's mountPath %s", i, k.ID, k.File, secretMountPath))
						continue
					}
					if !slices.Contains(keys, base) {
						errs = append(errs, fmt.Errorf("config apps[%d] key %q: file %s, but Secret %q has no key %q (it has %q)", i, k.ID, k.File, secretName, base, keys))
					}
				}
			}
			return errors.Join(errs...)
		}},
		{"env keys come from the container's environment", func() error {
			var errs []error
			for i, app := range cfg.Apps {
				for _, k := range app.Keys {
					if k.Env == "" {
						continue
					}
					if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == k.Env }) {
						errs = append(errs, fmt.Errorf("config apps[%d] key %q: env %s is not set on container %q", i, k.ID, k.Env, c.Name))
					}
				}
			}
			return errors.Join(errs...)
		}},
		{"terminationGracePeriodSeconds exceeds shutdown.delay + shutdown.timeout", func() error {
			// Both are stated in the ConfigMap, so that the grace period
			// is checked against what is written, not a default.
			delay, err := time.ParseDuration(cfg.Shutdown.Delay)
			if err != nil {
				return fmt.Errorf("ConfigMap %q: shutdown.delay %q (it must be set): %v", configMapName, cfg.Shutdown.Delay, err)
			}
			timeout, err := time.ParseDuration(cfg.Shutdown.Timeout)
			if err != nil {
				return fmt.Errorf("ConfigMap %q: shutdown.timeout %q (it must be set): %v", configMapName, cfg.Shutdown.Timeout, err)
			}
			if delay != 5*time.Second {
				return fmt.Errorf("ConfigMap %q: shutdown.delay = %s, want 5s", configMapName, delay)
			}
			if pod.TerminationGracePeriodSeconds == nil {
				return errors.New("terminationGracePeriodSeconds is not set (the default 30s happens to be enough, but say it)")
			}
			grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
			if grace <= delay+timeout {
				return fmt.Errorf("terminationGracePeriodSeconds = %s, must exceed shutdown.delay + shutdown.timeout = %s + %s = %s, or the pod is killed mid-drain",
					grace, delay, timeout, delay+timeout)
			}
			return nil
		}},
		{"gRPC and the HTTP API are served with TLS from the Secret usersigd-tls, mounted read-only where config.yaml says", func() error {
			return checkTLS(m, cfg)
		}},
	}
}

// checkTLS checks that config.yaml turns TLS on for gRPC and for the HTTP
// API (when it has one), and that each of their TLS files is a key of the
// Secret usersigd-tls, as cert-manager writes it, in a read-only mount of it.
func checkTLS(m *manifests, cfg *deployedConfig) error {
	t := cfg.GRPC.TLS
	if t == nil || t.CertFile == "" || t.KeyFile == "" {
		return fmt.Errorf("ConfigMap %q: grpc.tls.cert_file and key_file are not set: gRPC (tokens, tickets) would cross the pod network in clear", configMapName)
	}
	// Each TLS file: its key in config.yaml, its path, and the key of the
	// kubernetes.io/tls Secret that must hold it.
	type tlsFile struct{ field, file, key string }
	files := []tlsFile{
		{"grpc.tls.cert_file", t.CertFile, corev1.TLSCertKey},     // tls.crt
		{"grpc.tls.key_file", t.KeyFile, corev1.TLSPrivateKeyKey}, // tls.key
		{"grpc.tls.client_ca_file", t.ClientCAFile, "ca.crt"},     // cert-manager's key for the issuing CA
	}
	var errs []error
	if api := cfg.HTTPAPI; api != nil {
		if at := api.TLS; at == nil || at.CertFile == "" || at.KeyFile == "" {
			errs = append(errs, fmt.Errorf("ConfigMap %q: http_api.tls.cert_file and key_file are not set: the HTTP API (tokens, tickets) would cross the pod network in clear", configMapName))
		} else {
			files = append(files,
				tlsFile{"http_api.tls.cert_file", at.CertFile, corev1.TLSCertKey},
				tlsFile{"http_api.tls.key_file", at.KeyFile, corev1.TLSPrivateKeyKey})
		}
	}
	pod, c := &m.deployment.Spec.Template.Spec, m.container
	for _, tf := range files {
		field, f, key := tf.field, tf.file, tf.key
		if f == "" {
			continue
		}
		dir, base := path.Split(path.Clean(f))
		v, mount, err := volumeAndMount(pod, c, path.Clean(dir))
		if err != nil {
			errs = append(errs, fmt.Errorf("config %s %s: %v", field, f, err))
			continue
		}
		if v.Secret == nil || v.Secret.SecretName != tlsSecretName {
			errs = append(errs, fmt.Errorf("config %s %s: volume %q mounted at %s is not the Secret %q", field, f, v.Name, mount.MountPath, tlsSecretName))
			continue
		}
		// The file's name in the volume is its Secret key, unless items
		// map keys to other paths.
		name := key
		for _, item := range v.Secret.Items {
			if item.Key == key {
				name = item.Path
			}
		}
		if len(v.Secret.Items) > 0 && !slices.ContainsFunc(v.Secret.Items, func(it corev1.KeyToPath) bool { return it.Key == key }) {
			errs = append(errs, fmt.Errorf("secret volume %q lists items without the key %q that %s needs", v.Name, key, field))
		} else if base != name {
			errs = append(errs, fmt.Errorf("config %s is %s, but the Secret %q mounted at %s holds it as %s", field, f, tlsSecretName, mount.MountPath, path.Join(mount.MountPath, name)))
		}
		if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o440 {
			errs = append(errs, fmt.Errorf("secret volume %q: defaultMode = %s, want 0440 (decimal 288): the TLS key must be unreadable by others", v.Name, modeString(v.Secret.DefaultMode)))
		}
		if err := mountReadOnlyNoSubPath(mount); err != nil {
			errs = append(errs, err)
		}
	}
	if p := c.ReadinessProbe; p != nil && p.GRPC != nil {
		errs = append(errs, errors.New("grpc.tls is set but the readinessProbe is a kubelet gRPC probe, which speaks plaintext only: use httpGet /readyz"))
	}
	return errors.Join(errs...)
}

// Who the NetworkPolicy must admit, by label.
const (
	clientLabel          = "usersig.io/client"           // on a client pod, "true"
	clientNamespaceLabel = "usersig.io/client-namespace" // on a client namespace, "true"
	monitoringNamespace  = "monitoring"
	// The namespace the manifests are applied into, for the evaluation
	// below (they name none).
	ownNamespace = "usersig"
)

// source is where a connection comes from: a pod (with its labels and
// its namespace's) or, when pod is false, an address outside the cluster.
type source struct {
	name      string
	pod       bool
	namespace string
	podLabels labels.Set
	nsLabels  labels.Set
	ip        string
}

func podIn(name, ns string, nsLabels, podLabels labels.Set) source {
	ns2 := labels.Set{"kubernetes.io/metadata.name": ns}
	for k, v := range nsLabels {
		ns2[k] = v
	}
	return source{name: name, pod: true, namespace: ns, podLabels: podLabels, nsLabels: ns2, ip: "10.244.1.7"}
}

// sources is every kind of caller the policy must tell apart, and what it
// must admit each to: client is the callers' ports, gRPC and the HTTP API
// alike (one is no more private than the other), metrics the metrics port.
var sources = []struct {
	src             source
	client, metrics bool
}{
	{podIn("a labelled pod of this namespace", ownNamespace, nil, labels.Set{clientLabel: "true"}), true, false},
	{podIn("an unlabelled pod of this namespace", ownNamespace, nil, labels.Set{"app": "web"}), false, false},
	{podIn("a pod labelled \"false\"", ownNamespace, nil, labels.Set{clientLabel: "false"}), false, false},
	{podIn("a labelled pod of a labelled namespace", "shop", labels.Set{clientNamespaceLabel: "true"}, labels.Set{clientLabel: "true"}), true, false},
	{podIn("an unlabelled pod of a labelled namespace", "shop", labels.Set{clientNamespaceLabel: "true"}, nil), false, false},
	{podIn("a labelled pod of another namespace", "other", nil, labels.Set{clientLabel: "true"}), false, false},
	{podIn("a pod of the monitoring namespace", monitoringNamespace, nil, labels.Set{"app": "prometheus"}), false, true},
	{podIn("a labelled pod of the monitoring namespace", monitoringNamespace, nil, labels.Set{clientLabel: "true"}), false, true},
	{podIn("the usersigd pods' own kind", ownNamespace, nil, labels.Set{"app.kubernetes.io/name": "usersigd"}), false, false},
	{source{name: "an address outside the cluster", ip: "203.0.113.7"}, false, false},
}

// admits evaluates a NetworkPolicy as the API defines it: whether a TCP
// connection from src to port of a pod the policy selects is allowed.
// Named ports resolve against the container's ports.
func admits(np *networkingv1.NetworkPolicy, c *corev1.Container, src source, port int32) (bool, error) {
	for _, rule := range np.Spec.Ingress {
		portOK := len(rule.Ports) == 0
		for _, p := range rule.Ports {
			if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
				continue
			}
			if p.Port == nil {
				portOK = true
				continue
			}
			cp := resolvePort(c, *p.Port)
			if cp == nil {
				if p.Port.Type == intstr.String {
					return false, fmt.Errorf("NetworkPolicy %q: port %q is not a port of container %q", np.Name, p.Port.StrVal, c.Name)
				}
				// A number need not be declared; compare it as is.
				cp = &corev1.ContainerPort{ContainerPort: p.Port.IntVal}
			}
			end := cp.ContainerPort
			if p.EndPort != nil {
				end = *p.EndPort
			}
			if port >= cp.ContainerPort && port <= end {
				portOK = true
			}
		}
		if !portOK {
			continue
		}
		if len(rule.From) == 0 {
			return true, nil // every source
		}
		for _, peer := range rule.From {
			ok, err := peerMatches(peer, src)
			if err != nil {
				return false, fmt.Errorf("NetworkPolicy %q: %v", np.Name, err)
			}
			if ok {
				return true, nil
			}
		}
	}
	return false, nil
}

func peerMatches(peer networkingv1.NetworkPolicyPeer, src source) (bool, error) {
	if peer.IPBlock != nil {
		_, cidr, err := net.ParseCIDR(peer.IPBlock.CIDR)
		if err != nil {
			return false, fmt.Errorf("ipBlock %q: %v", peer.IPBlock.CIDR, err)
		}
		ip := net.ParseIP(src.ip)
		if !cidr.Contains(ip) {
			return false, nil
		}
		for _, e := range peer.IPBlock.Except {
			if _, ex, err := net.ParseCIDR(e); err == nil && ex.Contains(ip) {
				return false, nil
			}
		}
		return true, nil
	}
	if !src.pod {
		return false, nil
	}
	match := func(sel *metav1.LabelSelector, set labels.Set) (bool, error) {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			return false, err
		}
		return s.Matches(set), nil
	}
	switch {
	case peer.NamespaceSelector == nil && peer.PodSelector == nil:
		return false, errors.New("a peer with neither podSelector, namespaceSelector nor ipBlock")
	case peer.NamespaceSelector == nil:
		// podSelector alone: pods of the policy's own namespace.
		if src.namespace != ownNamespace {
			return false, nil
		}
		return match(peer.PodSelector, src.podLabels)
	}
	ok, err := match(peer.NamespaceSelector, src.nsLabels)
	if err != nil || !ok || peer.PodSelector == nil {
		return ok, err
	}
	return match(peer.PodSelector, src.podLabels)
}

// checkNetworkPolicy checks that the policy guards the Deployment's pods
// and admits exactly the sources above to the gRPC, HTTP API and metrics
// ports, which it finds through the Services' target ports, and nothing to
// any other port.
func checkNetworkPolicy(m *manifests, np *networkingv1.NetworkPolicy) error {
	c := m.container
	if err := selects(&np.Spec.PodSelector, labels.Set(m.deployment.Spec.Template.Labels), "NetworkPolicy "+np.Name+" podSelector"); err != nil {
		return err
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		return fmt.Errorf("NetworkPolicy %q: policyTypes %v lacks Ingress, so it isolates nothing", np.Name, np.Spec.PolicyTypes)
	}
	var errs []error
	// Every port a rule names must be one the container serves.
	for i, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			errs = append(errs, fmt.Errorf("NetworkPolicy %q: ingress[%d] names no port, so it admits its sources to every port", np.Name, i))
		}
		for _, p := range rule.Ports {
			if p.Port == nil || resolvePort(c, *p.Port) == nil || p.EndPort != nil {
				errs = append(errs, fmt.Errorf("NetworkPolicy %q: ingress[%d] port %v is not one port of container %q (%v)", np.Name, i, p.Port, c.Name, c.Ports))
			}
		}
	}
	// The ports clients reach through the Services, by container port name.
	reached := map[string]int32{}
	for _, svc := range m.services {
		for _, sp := range svc.Spec.Ports {
			cp := resolvePort(c, serviceTarget(sp))
			if cp == nil {
				continue // TestServices reports it
			}
			switch cp.Name {
			case grpcPortName, apiPortName, httpPortName:
				reached[cp.Name] = cp.ContainerPort
			default:
				errs = append(errs, fmt.Errorf("Service %q port %q reaches container port %q, which the NetworkPolicy check does not know", svc.Name, sp.Name, cp.Name))
			}
		}
	}
	if reached[grpcPortName] == 0 || reached[apiPortName] == 0 || reached[httpPortName] == 0 {
		return errors.Join(append(errs, fmt.Errorf("the Services do not reach all of the container ports %s, %s and %s (found %v)", grpcPortName, apiPortName, httpPortName, reached))...)
	}
	undeclared := undeclaredPort(c)
	for _, s := range sources {
		for _, p := range []struct {
			what string
			port int32
			want bool
		}{
			{"gRPC", reached[grpcPortName], s.client},
			{"HTTP API", reached[apiPortName], s.client},
			{"metrics", reached[httpPortName], s.metrics},
			{"undeclared", undeclared, false},
		} {
			got, err := admits(np, c, s.src, p.port)
			if err != nil {
				return errors.Join(append(errs, err)...)
			}
			if got != p.want {
				verb := map[bool]string{true: "admits", false: "does not admit"}[got]
				errs = append(errs, fmt.Errorf("NetworkPolicy %q %s %s to the %s port %d; want the opposite", np.Name, verb, s.src.name, p.what, p.port))
			}
		}
	}
	return errors.Join(errs...)
}

// undeclaredPort is a port number next to the container's ports that is
// none of them.
func undeclaredPort(c *corev1.Container) int32 {
	for n := int32(apiPort + 1); ; n++ {
		if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == n }) {
			return n
		}
	}
}

func TestNetworkPolicy(t *testing.T) {
	m := loadManifests(t)
	runChecks(t, []check{
		{"only labelled clients reach gRPC and the HTTP API, only the monitoring namespace reaches metrics", func() error {
			np, ok := m.policies[policyName]
			if !ok {
				return fmt.Errorf("no NetworkPolicy %q in the manifests", policyName)
			}
			return checkNetworkPolicy(m, np)
		}},
		{"no other NetworkPolicy selects the pods", func() error {
			// Policies add up: another one could only admit more.
			for name, np := range m.policies {
				if name != policyName && selects(&np.Spec.PodSelector, labels.Set(m.deployment.Spec.Template.Labels), "") == nil {
					return fmt.Errorf("NetworkPolicy %q also selects the pods", name)
				}
			}
			return nil
		}},
	})
}

// TestNetworkPolicyCheckCatchesMistakes proves checkNetworkPolicy can
// fail: each of these edits to the shipped policy opens or closes
// something it must not, and must be refused.
func TestNetworkPolicyCheckCatchesMistakes(t *testing.T) {
	m := loadManifests(t)
	shipped, ok := m.policies[policyName]
	if !ok {
		t.Fatalf("no NetworkPolicy %q", policyName)
	}
	if err := checkNetworkPolicy(m, shipped); err != nil {
		t.Fatalf("the shipped policy fails the check: %v", err)
	}
	port := func(n int) *intstr.IntOrString { p := intstr.FromInt(n); return &p }
	// isAPIPort finds the HTTP API's port in a rule.
	isAPIPort := func(p networkingv1.NetworkPolicyPort) bool {
		return p.Port != nil && *p.Port == intstr.FromInt32(apiPort)
	}
	// withoutAPIPort takes the HTTP API's port out of a rule.
	withoutAPIPort := func(rule *networkingv1.NetworkPolicyIngressRule) {
		rule.Ports = slices.DeleteFunc(rule.Ports, isAPIPort)
	}
	for _, tc := range []struct {
		name string
		edit func(np *networkingv1.NetworkPolicy)
	}{
		{"no policyTypes Ingress", func(np *networkingv1.NetworkPolicy) {
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		}},
		{"selects other pods", func(np *networkingv1.NetworkPolicy) {
			np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}
		}},
		{"gRPC from every source", func(np *networkingv1.NetworkPolicy) { np.Spec.Ingress[0].From = nil }},
		{"gRPC on every port", func(np *networkingv1.NetworkPolicy) { np.Spec.Ingress[0].Ports = nil }},
		{"the namespace peer without its podSelector", func(np *networkingv1.NetworkPolicy) {
			for i := range np.Spec.Ingress[0].From {
				if np.Spec.Ingress[0].From[i].NamespaceSelector != nil {
					np.Spec.Ingress[0].From[i].PodSelector = nil
				}
			}
		}},
		{"the namespace and pod selectors as two peers", func(np *networkingv1.NetworkPolicy) {
			from := np.Spec.Ingress[0].From
			for i := range from {
				if from[i].NamespaceSelector != nil && from[i].PodSelector != nil {
					from = append(from, networkingv1.NetworkPolicyPeer{PodSelector: from[i].PodSelector})
					from[i].PodSelector = nil
				}
			}
			np.Spec.Ingress[0].From = from
		}},
		{"a wrong gRPC port", func(np *networkingv1.NetworkPolicy) { np.Spec.Ingress[0].Ports[0].Port = port(50052) }},
		{"the HTTP API port left out", func(np *networkingv1.NetworkPolicy) { withoutAPIPort(&np.Spec.Ingress[0]) }},
		{"the HTTP API port by a name the container lacks", func(np *networkingv1.NetworkPolicy) {
			for i, p := range np.Spec.Ingress[0].Ports {
				if isAPIPort(p) {
					name := intstr.FromString("https")
					np.Spec.Ingress[0].Ports[i].Port = &name
				}
			}
		}},
		{"the HTTP API from every source", func(np *networkingv1.NetworkPolicy) {
			withoutAPIPort(&np.Spec.Ingress[0])
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
				Ports: []networkingv1.NetworkPolicyPort{{Port: port(apiPort)}}})
		}},
		{"the HTTP API from the monitoring namespace instead of the clients", func(np *networkingv1.NetworkPolicy) {
			withoutAPIPort(&np.Spec.Ingress[0])
			np.Spec.Ingress[1].Ports = append(np.Spec.Ingress[1].Ports, networkingv1.NetworkPolicyPort{Port: port(apiPort)})
		}},
		{"metrics from the default namespace", func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[1].From[0].NamespaceSelector.MatchLabels = map[string]string{"kubernetes.io/metadata.name": "default"}
		}},
		{"metrics from every namespace", func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[1].From[0].NamespaceSelector = &metav1.LabelSelector{}
		}},
		{"metrics from everywhere by address", func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[1].From = append(np.Spec.Ingress[1].From, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}})
		}},
		{"the rules swapped", func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[0].Ports, np.Spec.Ingress[1].Ports = np.Spec.Ingress[1].Ports, np.Spec.Ingress[0].Ports
		}},
		{"an extra rule open to all", func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			np := shipped.DeepCopy()
			if len(np.Spec.Ingress) != 2 || len(np.Spec.Ingress[0].Ports) < 2 || !slices.ContainsFunc(np.Spec.Ingress[0].Ports, isAPIPort) ||
				len(np.Spec.Ingress[1].From) == 0 || np.Spec.Ingress[1].From[0].NamespaceSelector == nil {
				t.Fatalf("test bug: the shipped policy no longer has the shape these edits expect (a rule for gRPC, then the HTTP API, then a metrics rule)")
			}
			tc.edit(np)
			if err := checkNetworkPolicy(m, np); err == nil {
				t.Errorf("the policy with %s passes the check", tc.name)
			} else {
				t.Logf("refused as expected: %v", err)
			}
		})
	}
}

// TestConfigChecks edits the shipped config.yaml and runs configChecks on
// it: the checks refuse an edit that breaks the link to another object,
// and let through what is the server's alone to judge (its loader,
// through server.TestDeployConfigLoads, does).
func TestConfigChecks(t *testing.T) {
	replace := func(old, new string) func(string) string {
		return func(s string) string { return strings.Replace(s, old, new, 1) }
	}
	drop := func(pattern string) func(string) string {
		re := regexp.MustCompile(pattern)
		return func(s string) string { return re.ReplaceAllString(s, "") }
	}
	for _, tc := range []struct {
		name    string
		edit    func(string) string
		refused bool
	}{
		// The server's schema and rules: defaults, optional keys, new keys.
		// These edits hold whatever the shipped values are.
		{"an app without default_ttl", drop(`(?m)^[ \t]*default_ttl:.*\n`), false},
		{"a rate without burst", drop(`,?[ \t]*burst:[ \t]*\d+`), false},
		{"a key this test does not know", func(s string) string { return s + "tracing: {sample: 0.1}\n" }, false},
		{"CORS for an origin", replace("listen: 0.0.0.0:8080\n", "listen: 0.0.0.0:8080\n  cors: {allowed_origins: [\"https://app.example.com\"]}\n"), false},
		// The links to the other objects.
		{"a key file the Secret lacks", replace("/run/secrets/usersig/primary-key", "/run/secrets/usersig/other-key"), true},
		{"a key file outside the Secret's mount", replace("/run/secrets/usersig/primary-key", "/etc/usersig/primary-key"), true},
		{"gRPC on another port than the container's", replace("0.0.0.0:50051", "0.0.0.0:50052"), true},
		{"HTTP on loopback only", replace("0.0.0.0:9090", "127.0.0.1:9090"), true},
		{"the HTTP API on another port than the container's", replace("0.0.0.0:8080", "0.0.0.0:8081"), true},
		{"the HTTP API on loopback only", replace("0.0.0.0:8080", "127.0.0.1:8080"), true},
		{"no http_api", replace("\nhttp_api:", "\nnot_http_api:"), true},
		{"the HTTP API on the metrics port", replace("0.0.0.0:8080", "0.0.0.0:9090"), true},
		{"a drain longer than the grace period", replace("timeout: 20s", "timeout: 30s"), true},
		{"no shutdown.timeout", drop(`(?m)^[ \t]*timeout:.*\n`), true},
		{"a misspelt cert_file", replace("cert_file:", "cert_fil:"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := loadManifests(t)
			shipped := m.configMap.Data[configKey]
			m.configMap.Data[configKey] = tc.edit(shipped)
			if tc.refused && m.configMap.Data[configKey] == shipped {
				t.Fatalf("test bug: the edit changes nothing in the shipped %s", configKey)
			}
			cfg, err := readConfig(m.configMap)
			if err != nil {
				t.Fatal(err)
			}
			var failed []error
			for _, c := range configChecks(m, cfg) {
				if err := c.fn(); err != nil {
					failed = append(failed, fmt.Errorf("%s: %w", c.name, err))
				}
			}
			switch {
			case tc.refused && len(failed) == 0:
				t.Errorf("the config with %s passes every check", tc.name)
			case !tc.refused && len(failed) > 0:
				t.Errorf("the config with %s is refused, but that is the server's to judge:\n%v", tc.name, errors.Join(failed...))
			case tc.refused:
				t.Logf("refused as expected: %v", errors.Join(failed...))
			}
		})
	}
}

// TestTLSCheckCatchesMistakes proves checkTLS can fail: each edit breaks
// the link between config.yaml's grpc.tls or http_api.tls and the mounted
// Secret.
func TestTLSCheckCatchesMistakes(t *testing.T) {
	shipped := loadManifests(t)
	if err := checkTLS(shipped, shipped.config); err != nil {
		t.Fatalf("the shipped manifests fail the check: %v", err)
	}
	if a := shipped.config.HTTPAPI; a == nil || a.TLS == nil {
		t.Fatalf("test bug: the shipped config has no http_api.tls for these edits to break")
	}
	tlsVolume := func(m *manifests) *corev1.Volume {
		for i, v := range m.deployment.Spec.Template.Spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName == tlsSecretName {
				return &m.deployment.Spec.Template.Spec.Volumes[i]
			}
		}
		t.Fatalf("test bug: no volume of the Secret %q", tlsSecretName)
		return nil
	}
	tlsMount := func(m *manifests) *corev1.VolumeMount {
		name := tlsVolume(m).Name
		for i, vm := range m.container.VolumeMounts {
			if vm.Name == name {
				return &m.container.VolumeMounts[i]
			}
		}
		t.Fatalf("test bug: volume %q is not mounted", name)
		return nil
	}
	for _, tc := range []struct {
		name string
		edit func(m *manifests)
	}{
		{"no grpc.tls", func(m *manifests) { m.config.GRPC.TLS = nil }},
		{"no http_api.tls", func(m *manifests) { m.config.HTTPAPI.TLS = nil }},
		{"http_api.tls without key_file", func(m *manifests) { m.config.HTTPAPI.TLS.KeyFile = "" }},
		{"http_api.tls.cert_file outside the mount", func(m *manifests) { m.config.HTTPAPI.TLS.CertFile = "/etc/usersig/tls.crt" }},
		{"http_api.tls.key_file under another name", func(m *manifests) {
			m.config.HTTPAPI.TLS.KeyFile = path.Join(path.Dir(m.config.HTTPAPI.TLS.KeyFile), "api.key")
		}},
		{"http_api.tls.cert_file the CA's", func(m *manifests) {
			m.config.HTTPAPI.TLS.CertFile = path.Join(path.Dir(m.config.HTTPAPI.TLS.CertFile), "ca.crt")
		}},
		{"cert_file outside the mount", func(m *manifests) { m.config.GRPC.TLS.CertFile = "/etc/usersig/tls.crt" }},
		{"key_file under another name", func(m *manifests) {
			m.config.GRPC.TLS.KeyFile = path.Join(path.Dir(m.config.GRPC.TLS.KeyFile), "server.key")
		}},
		{"client_ca_file under another name", func(m *manifests) {
			m.config.GRPC.TLS.ClientCAFile = path.Join(path.Dir(m.config.GRPC.TLS.KeyFile), "client-ca.pem")
		}},
		{"mounted elsewhere", func(m *manifests) { tlsMount(m).MountPath = "/run/secrets/tls" }},
		{"mounted writable", func(m *manifests) { tlsMount(m).ReadOnly = false }},
		{"mounted with subPath", func(m *manifests) { tlsMount(m).SubPath = "tls.crt" }},
		{"another Secret", func(m *manifests) { tlsVolume(m).Secret.SecretName = "usersigd-keys" }},
		{"readable by others", func(m *manifests) { mode := int32(0o444); tlsVolume(m).Secret.DefaultMode = &mode }},
		{"items without tls.key", func(m *manifests) {
			tlsVolume(m).Secret.Items = []corev1.KeyToPath{{Key: corev1.TLSCertKey, Path: corev1.TLSCertKey}}
		}},
		{"the kubelet's gRPC readiness probe", func(m *manifests) {
			m.container.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: grpcPort}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := loadManifests(t)
			tc.edit(m)
			if err := checkTLS(m, m.config); err == nil {
				t.Errorf("the manifests with %s pass the check", tc.name)
			} else {
				t.Logf("refused as expected: %v", err)
			}
		})
	}
}

func TestDisruptionBudgetAndAutoscaler(t *testing.T) {
	m := loadManifests(t)
	d := m.deployment
	podLabels := labels.Set(d.Spec.Template.Labels)

	runChecks(t, []check{
		{"PDB selects the Deployment's pods and allows one disruption", func() error {
			pdb, ok := m.pdbs[pdbName]
			if !ok {
				return fmt.Errorf("no PodDisruptionBudget %q in the manifests", pdbName)
			}
			if err := selects(pdb.Spec.Selector, podLabels, "PodDisruptionBudget selector"); err != nil {
				return err
			}
			mu, ma := pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable
			switch {
			case mu != nil && ma != nil:
				return errors.New("PodDisruptionBudget sets both maxUnavailable and minAvailable")
			case mu != nil && *mu == intstr.FromInt32(1):
			case ma != nil && *ma == intstr.FromInt32(2):
			default:
				return fmt.Errorf("PodDisruptionBudget: want maxUnavailable 1 (or minAvailable 2), got maxUnavailable=%v minAvailable=%v", mu, ma)
			}
			return nil
		}},
		{"HPA targets the Deployment, 3..10 on 70% CPU, with a scale-down window", func() error {
			hpa, ok := m.hpas[hpaName]
			if !ok {
				return fmt.Errorf("no HorizontalPodAutoscaler %q in the manifests", hpaName)
			}
			var errs []error
			ref := hpa.Spec.ScaleTargetRef
			if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
				errs = append(errs, fmt.Errorf("HPA scaleTargetRef = %s %s %q, want apps/v1 Deployment %q", ref.APIVersion, ref.Kind, ref.Name, d.Name))
			}
			if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 3 || hpa.Spec.MaxReplicas != 10 {
				errs = append(errs, fmt.Errorf("HPA replicas %s..%d, want 3..10", ptrString(hpa.Spec.MinReplicas), hpa.Spec.MaxReplicas))
			}
			if d.Spec.Replicas != nil && hpa.Spec.MinReplicas != nil && *d.Spec.Replicas < *hpa.Spec.MinReplicas {
				errs = append(errs, fmt.Errorf("Deployment replicas %d is below the HPA's minReplicas %d", *d.Spec.Replicas, *hpa.Spec.MinReplicas))
			}
			cpu := false
			for _, metric := range hpa.Spec.Metrics {
				if metric.Type == autoscalingv2.ResourceMetricSourceType && metric.Resource != nil &&
					metric.Resource.Name == corev1.ResourceCPU && metric.Resource.Target.Type == autoscalingv2.UtilizationMetricType &&
					metric.Resource.Target.AverageUtilization != nil && *metric.Resource.Target.AverageUtilization == 70 {
					cpu = true
				}
			}
			if !cpu {
				errs = append(errs, errors.New("HPA has no Resource metric cpu with target Utilization 70"))
			}
			if b := hpa.Spec.Behavior; b == nil || b.ScaleDown == nil || b.ScaleDown.StabilizationWindowSeconds == nil || *b.ScaleDown.StabilizationWindowSeconds <= 0 {
				errs = append(errs, errors.New("HPA has no behavior.scaleDown.stabilizationWindowSeconds"))
			}
			if _, ok := d.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]; !ok {
				errs = append(errs, errors.New("HPA on CPU utilization needs a CPU request on the container"))
			}
			return errors.Join(errs...)
		}},
	})
}

// TestStrictDecodingRejectsMistakes proves that the checks above can fail:
// each broken manifest must be refused, while the same manifest without the
// mistake decodes.
func TestStrictDecodingRejectsMistakes(t *testing.T) {
	const good = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
spec:
  replicas: 3
  selector:
    matchLabels: {app: x}
  template:
    metadata:
      labels: {app: x}
    spec:
      containers:
        - name: x
          image: x
          readinessProbe:
            grpc: {port: 50051}
`
	if _, err := decodeManifest([]byte(good)); err != nil {
		t.Fatalf("the well-formed control manifest fails to decode: %v", err)
	}
	cases := []struct {
		name, old, new string
	}{
		{"misspelt field replica", "  replicas: 3", "  replica: 3"},
		{"misspelt field readinessProbes", "readinessProbe:", "readinessProbes:"},
		{"wrong case Replicas", "  replicas: 3", "  Replicas: 3"},
		{"duplicate key", "  replicas: 3", "  replicas: 3\n  replicas: 4"},
		{"wrong type", "  replicas: 3", "  replicas: three"},
		{"unknown kind", "kind: Deployment", "kind: Deploymnet"},
		{"unknown apiVersion", "apiVersion: apps/v1", "apiVersion: apps/v1beta9"},
		{"missing kind", "kind: Deployment\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(good, tc.old, tc.new, 1)
			if bad == good {
				t.Fatalf("test bug: %q not found in the control manifest", tc.old)
			}
			if _, err := decodeManifest([]byte(bad)); err == nil {
				t.Errorf("manifest with %s decoded without error:\n%s", tc.name, bad)
			} else {
				t.Logf("refused as expected: %v", err)
			}
		})
	}
}

func TestSplitDocuments(t *testing.T) {
	in := "# only a comment\n---\na: 1\n---   \n\n--- # c\nb: 2\n  # trailing\n"
	got := splitDocuments([]byte(in))
	want := []string{"a: 1\n", "b: 2\n  # trailing\n"}
	if !slices.Equal(got, want) {
		t.Errorf("splitDocuments = %q, want %q", got, want)
	}
}

// helpers

func ptrString[T any](p *T) string {
	if p == nil {
		return "<unset>"
	}
	return fmt.Sprint(*p)
}

func modeString(p *int32) string {
	if p == nil {
		return "<unset>"
	}
	return fmt.Sprintf("%#o (decimal %d)", *p, *p)
}

func selects(sel *metav1.LabelSelector, podLabels labels.Set, what string) error {
	if sel == nil {
		return fmt.Errorf("%s is missing", what)
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return fmt.Errorf("%s: %v", what, err)
	}
	if s.Empty() {
		return fmt.Errorf("%s is empty and would select every pod", what)
	}
	if !s.Matches(podLabels) {
		return fmt.Errorf("%s %q does not match the pod labels %v", what, s.String(), podLabels)
	}
	return nil
}

func containerPortByName(c *corev1.Container, name string) *corev1.ContainerPort {
	for i := range c.Ports {
		if c.Ports[i].Name == name {
			return &c.Ports[i]
		}
	}
	return nil
}

func resolvePort(c *corev1.Container, p intstr.IntOrString) *corev1.ContainerPort {
	if p.Type == intstr.String {
		return containerPortByName(c, p.StrVal)
	}
	for i := range c.Ports {
		if c.Ports[i].ContainerPort == p.IntVal {
			return &c.Ports[i]
		}
	}
	return nil
}

func probeTargetsDeclaredPort(c *corev1.Container, p *corev1.Probe) error {
	n := 0
	var port intstr.IntOrString
	if p.GRPC != nil {
		n++
		port = intstr.FromInt32(p.GRPC.Port)
	}
	if p.HTTPGet != nil {
		n++
		port = p.HTTPGet.Port
	}
	if p.TCPSocket != nil {
		n++
		port = p.TCPSocket.Port
	}
	if p.Exec != nil {
		// The distroless image has no shell or tools to exec.
		return errors.New("exec probes cannot work in the distroless image")
	}
	if n != 1 {
		return fmt.Errorf("want exactly one probe handler, got %d", n)
	}
	if resolvePort(c, port) == nil {
		return fmt.Errorf("port %s is not a port of container %q", port.String(), c.Name)
	}
	return nil
}

// serviceTarget is the container port a Service port reaches: its
// targetPort, or its port when targetPort is unset.
func serviceTarget(sp corev1.ServicePort) intstr.IntOrString {
	if sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal == 0 {
		return intstr.FromInt32(sp.Port)
	}
	return sp.TargetPort
}

func servicePortByName(s *corev1.Service, name string) *corev1.ServicePort {
	for i := range s.Spec.Ports {
		if s.Spec.Ports[i].Name == name {
			return &s.Spec.Ports[i]
		}
	}
	return nil
}

func protocolOrTCP(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func volumeAndMount(pod *corev1.PodSpec, c *corev1.Container, mountPath string) (*corev1.Volume, *corev1.VolumeMount, error) {
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if path.Clean(c.VolumeMounts[i].MountPath) == mountPath {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil {
		return nil, nil, fmt.Errorf("container %q mounts nothing at %s", c.Name, mountPath)
	}
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == mount.Name {
			return &pod.Volumes[i], mount, nil
		}
	}
	return nil, nil, fmt.Errorf("container %q mounts volume %q at %s, but the pod has no such volume", c.Name, mount.Name, mountPath)
}

func mountReadOnlyNoSubPath(mount *corev1.VolumeMount) error {
	if !mount.ReadOnly {
		return fmt.Errorf("volumeMount %q at %s is not readOnly", mount.Name, mount.MountPath)
	}
	if mount.SubPath != "" || mount.SubPathExpr != "" {
		return fmt.Errorf("volumeMount %q at %s uses subPath: the kubelet never updates subPath mounts, so the server's reload would never see changes", mount.Name, mount.MountPath)
	}
	return nil
}

func secretKeys(s *corev1.Secret) []string {
	var keys []string
	for k := range s.Data {
		keys = append(keys, k)
	}
	for k := range s.StringData {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return slices.Compact(keys)
}

// parseGoMemLimit parses a GOMEMLIMIT value: a byte count with an optional
// B, KiB, MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("not a positive byte count with an optional B/KiB/MiB/GiB/TiB suffix")
	}
	return n * mult, nil
}
