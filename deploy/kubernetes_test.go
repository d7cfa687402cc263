package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"
)

// kubeDir holds the kustomize base.
var kubeDir = filepath.Join(root, "deploy", "kubernetes")

// kinds maps apiVersion/kind to a new typed object of that kind. A manifest
// of any other kind fails the test: add it here with its k8s.io/api type.
var kinds = map[string]func() any{
	"v1/ServiceAccount":                             func() any { return new(corev1.ServiceAccount) },
	"v1/Service":                                    func() any { return new(corev1.Service) },
	"v1/Secret":                                     func() any { return new(corev1.Secret) },
	"v1/ConfigMap":                                  func() any { return new(corev1.ConfigMap) },
	"apps/v1/Deployment":                            func() any { return new(appsv1.Deployment) },
	"apps/v1/StatefulSet":                           func() any { return new(appsv1.StatefulSet) },
	"networking.k8s.io/v1/Ingress":                  func() any { return new(networkingv1.Ingress) },
	"networking.k8s.io/v1/NetworkPolicy":            func() any { return new(networkingv1.NetworkPolicy) },
	"autoscaling/v2/HorizontalPodAutoscaler":        func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"policy/v1/PodDisruptionBudget":                 func() any { return new(policyv1.PodDisruptionBudget) },
	"kustomize.config.k8s.io/v1beta1/Kustomization": func() any { return new(kustomization) },
}

// kustomization is the part of kustomize's Kustomization that this base
// uses; a field it does not know is an error like any other unknown field.
type kustomization struct {
	metav1.TypeMeta `json:",inline"`
	Resources       []string `json:"resources"`
	Labels          []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
		IncludeTemplates bool              `json:"includeTemplates,omitempty"`
	} `json:"labels,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Patches   []struct {
		Path   string `json:"path,omitempty"`
		Patch  string `json:"patch,omitempty"`
		Target *struct {
			Group   string `json:"group,omitempty"`
			Version string `json:"version,omitempty"`
			Kind    string `json:"kind,omitempty"`
			Name    string `json:"name,omitempty"`
		} `json:"target,omitempty"`
	} `json:"patches,omitempty"`
}

// decodeStrict decodes every YAML document of src into the k8s.io/api type of
// its kind, as strictly as the API server's strict field validation: an
// unknown or duplicate field, a field spelled in another case or a value of
// the wrong type is an error.
func decodeStrict(src []byte) ([]any, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(src)))
	var objs []any
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		js, err := sigsyaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, err
		}
		var tm metav1.TypeMeta
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
			return nil, err
		}
		newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			return nil, fmt.Errorf("apiVersion %q kind %q: not a kind this test knows", tm.APIVersion, tm.Kind)
		}
		obj := newObj()
		strict, err := sigsjson.UnmarshalStrict(js, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tm.Kind, err)
		}
		if len(strict) > 0 {
			return nil, fmt.Errorf("%s: %w", tm.Kind, errors.Join(strict...))
		}
		objs = append(objs, obj)
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

// manifests is a set of decoded objects: the files of a folder, or what
// kustomize renders from one.
type manifests struct {
	files map[string][]any // file name (or "kustomize build DIR") -> its objects
}

// loadManifests decodes the manifests of the kustomize base, file by file.
func loadManifests(t *testing.T) manifests {
	t.Helper()
	return loadFolder(t, kubeDir)
}

// loadFolder decodes every YAML file of dir strictly. Strategic-merge
// patches, which carry directives such as $patch, are left to rendering.
func loadFolder(t *testing.T, dir string) manifests {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := manifests{files: map[string][]any{}}
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			continue
		}
		src, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeStrict(src)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if len(objs) == 0 {
			t.Fatalf("%s holds no object", e.Name())
		}
		m.files[e.Name()] = objs
	}
	return m
}

// only returns the one object of type T named name, from the files that
// kustomization.yaml lists (or, with examples, from every file).
func only[T any](t *testing.T, m manifests, name string, examples bool) *T {
	t.Helper()
	var found []*T
	for _, v := range all[T](m, examples) {
		if objectName(v) == name {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T named %q, want 1", len(found), zero, name)
	}
	return found[0]
}

// all returns every object of type T (examples too, with examples).
func all[T any](m manifests, examples bool) []*T {
	var found []*T
	for file, objs := range m.files {
		if !examples && strings.Contains(file, ".example.") {
			continue
		}
		for _, o := range objs {
			if v, ok := o.(*T); ok {
				found = append(found, v)
			}
		}
	}
	return found
}

func objectName(o any) string {
	if a, ok := o.(interface{ GetName() string }); ok {
		return a.GetName()
	}
	return ""
}

func TestKubernetesDecoderIsStrict(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIp: None}\n", `unknown field "spec.clusterIp"`},
		{"wrong case", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80, targetport: 8080}]}\n", `unknown field "spec.ports[0].targetport"`},
		{"duplicate", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nmetadata: {name: b}\n", `"metadata" already set`},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {replicas: three}\n", "cannot unmarshal string"},
		{"bad quantity", "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {template: {spec: {containers: [{name: c, resources: {limits: {memory: lots}}}]}}}\n", "quantities must match"},
		{"unknown kind", "apiVersion: v1\nkind: Pdo\nmetadata: {name: a}\n", "not a kind this test knows"},
	} {
		_, err := decodeStrict([]byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %s", tc.name, err, tc.want)
		}
	}
	objs, err := decodeStrict([]byte("# c\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\n"))
	if err != nil || len(objs) != 2 {
		t.Fatalf("two valid documents: %d objects, %v", len(objs), err)
	}
}

func TestKustomization(t *testing.T) {
	m := loadManifests(t)
	objs := m.files["kustomization.yaml"]
	if len(objs) != 1 {
		t.Fatalf("kustomization.yaml: %d documents", len(objs))
	}
	k := objs[0].(*kustomization)
	seen := map[string]bool{}
	for _, r := range k.Resources {
		if seen[r] {
			t.Errorf("resource %s listed twice", r)
		}
		seen[r] = true
		if _, ok := m.files[r]; !ok {
			t.Errorf("resource %s: no such manifest in %s", r, kubeDir)
		}
	}
	// Every manifest is in the base, except the examples that people copy
	// and fill in.
	for file := range m.files {
		if file != "kustomization.yaml" && !strings.Contains(file, ".example.") && !seen[file] {
			t.Errorf("%s is not listed in kustomization.yaml", file)
		}
	}
	d := only[appsv1.Deployment](t, m, "chatd", false)
	image := d.Spec.Template.Spec.Containers[0].Image
	for _, img := range k.Images {
		if img.Name != strings.Split(image, ":")[0] {
			t.Errorf("kustomization images: %s matches no image (the Deployment runs %s)", img.Name, image)
		}
	}
}

// chatd returns the chatd Deployment and its chatd container.
func chatd(t *testing.T, m manifests) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	d := only[appsv1.Deployment](t, m, "chatd", false)
	for i, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "chatd" {
			return d, &d.Spec.Template.Spec.Containers[i]
		}
	}
	t.Fatal("the chatd Deployment has no container named chatd")
	return nil, nil
}

func envOf(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom == nil {
			return e.Value, true
		}
	}
	return "", false
}

// containerPort resolves a probe's or Service's port (a number or a name)
// against the container's ports.
func containerPort(t *testing.T, c *corev1.Container, p intstr.IntOrString) int {
	t.Helper()
	if p.Type == intstr.Int {
		return int(p.IntVal)
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, p.StrVal)
	return 0
}

// TestKubernetesDeployment checks the chatd Deployment as each variant
// (the base and every overlay) renders it.
func TestKubernetesDeployment(t *testing.T) {
	forEachVariant(t, checkDeployment)
}

func checkDeployment(t *testing.T, m manifests) {
	d, c := chatd(t, m)
	pod := d.Spec.Template.Spec

	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas %v, want at least 2", d.Spec.Replicas)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("selector %v does not match the pod labels %v (%v)", d.Spec.Selector, d.Spec.Template.Labels, err)
	}

	// The server listens where CHAT_ADDR says, set explicitly to every
	// interface of the pod (with dev login on and CHAT_ADDR unset, chatd
	// would listen on loopback, out of the probes' and the Service's
	// reach); the container port and the probes point there.
	addr, ok := envOf(c, "CHAT_ADDR")
	if !ok {
		t.Errorf("the chatd container does not set CHAT_ADDR")
	}
	checkAllInterfaces(t, "the chatd container's CHAT_ADDR", addr)
	port := addrPort(t, addr)
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == port }) {
		t.Errorf("no container port %d (CHAT_ADDR %q) in %v", port, addr, c.Ports)
	}
	for name, probe := range map[string]struct {
		p    *corev1.Probe
		path string
	}{
		"readiness": {c.ReadinessProbe, "/readyz"},
		"liveness":  {c.LivenessProbe, "/healthz"},
	} {
		if probe.p == nil || probe.p.HTTPGet == nil {
			t.Errorf("%s probe: none, or not HTTP GET", name)
			continue
		}
		if probe.p.HTTPGet.Path != probe.path {
			t.Errorf("%s probe path %q, want %q", name, probe.p.HTTPGet.Path, probe.path)
		}
		if got := containerPort(t, c, probe.p.HTTPGet.Port); got != port {
			t.Errorf("%s probe port %d, the server listens on %d", name, got, port)
		}
	}
	// Metrics on their own port (CHAT_METRICS_ADDR, on every interface
	// of the pod for Prometheus), which the scrape annotations name.
	metricsAddr, ok := envOf(c, "CHAT_METRICS_ADDR")
	if !ok {
		t.Fatalf("the chatd container does not set CHAT_METRICS_ADDR: /metrics would be served where the Ingress sends the internet")
	}
	checkAllInterfaces(t, "CHAT_METRICS_ADDR", metricsAddr)
	metricsPort := addrPort(t, metricsAddr)
	if metricsPort == port {
		t.Errorf("CHAT_METRICS_ADDR and CHAT_ADDR share port %d", port)
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == metricsPort && p.Name == "metrics" }) {
		t.Errorf("no container port named metrics on %d (CHAT_METRICS_ADDR %q) in %v", metricsPort, metricsAddr, c.Ports)
	}
	if a := d.Spec.Template.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" || a["prometheus.io/port"] != strconv.Itoa(metricsPort) {
		t.Errorf("scrape annotations %v, want /metrics on port %d", a, metricsPort)
	}

	// Draining: the preStop sleep lets load balancers stop sending before
	// SIGTERM; then the server has CHAT_SHUTDOWN_TIMEOUT to close its
	// websockets; the grace period must cover both.
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
		t.Fatalf("no preStop sleep: %+v", c.Lifecycle)
	}
	if c.Lifecycle.PreStop.Exec != nil {
		t.Errorf("preStop exec: the distroless image has no shell")
	}
	sleep := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	var shutdownEnv *string
	if v, ok := envOf(c, "CHAT_SHUTDOWN_TIMEOUT"); ok {
		shutdownEnv = &v
	}
	shutdown := shutdownTimeout(t, shutdownEnv)
	if pod.TerminationGracePeriodSeconds == nil {
		t.Errorf("no terminationGracePeriodSeconds")
	} else if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace <= sleep+shutdown {
		t.Errorf("terminationGracePeriodSeconds %v is not above preStop sleep %v + CHAT_SHUTDOWN_TIMEOUT %v", grace, sleep, shutdown)
	}

	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[res]
		lim, okLim := c.Resources.Limits[res]
		if !okReq || !okLim {
			t.Errorf("%s: request %v, limit %v: both must be set", res, req, lim)
		} else if req.Cmp(lim) > 0 {
			t.Errorf("%s: request %v above limit %v", res, req.String(), lim.String())
		}
	}

	// Non-root, read-only, no privilege escalation, no capabilities.
	nonRoot := (pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot) ||
		(c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil && *c.SecurityContext.RunAsNonRoot)
	if !nonRoot {
		t.Errorf("runAsNonRoot is not set")
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("readOnlyRootFilesystem is not set")
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("allowPrivilegeEscalation is not false")
	}
	if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("capabilities are not all dropped")
	}

	var names []string
	for _, e := range c.Env {
		names = append(names, e.Name)
	}
	checkKnown(t, "the chatd container", names)
}

// The OAuth Secret the pods read is the one the example creates.
func TestKubernetesOAuthSecretExample(t *testing.T) {
	m := loadManifests(t)
	_, c := chatd(t, m)
	secret := only[corev1.Secret](t, m, "chatd-oauth", true)
	found := false
	for _, ef := range c.EnvFrom {
		if ef.SecretRef != nil && ef.SecretRef.Name == secret.Name {
			found = true
			if ef.Prefix != "" {
				t.Errorf("envFrom %s has prefix %q: the keys are the variable names", secret.Name, ef.Prefix)
			}
		}
	}
	if !found {
		t.Errorf("the container does not read Secret %s (envFrom)", secret.Name)
	}
	var keys []string
	for k := range secret.StringData {
		keys = append(keys, k)
	}
	for k := range secret.Data {
		keys = append(keys, k)
	}
	checkKnown(t, "the OAuth Secret example", keys)
	if len(keys) == 0 {
		t.Errorf("the OAuth Secret example holds no key")
	}
}

func TestKubernetesServiceAndIngress(t *testing.T) {
	forEachVariant(t, checkServiceAndIngress)
}

// checkServiceAndIngress: the Service reaches the chat and the metrics
// ports; an Ingress, where there is one, only the chat's.
func checkServiceAndIngress(t *testing.T, m manifests) {
	d, c := chatd(t, m)
	addr, _ := envOf(c, "CHAT_ADDR")
	port := addrPort(t, addr)
	metricsAddr, _ := envOf(c, "CHAT_METRICS_ADDR")
	metricsPort := addrPort(t, metricsAddr)

	svc := only[corev1.Service](t, m, "chatd", false)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) || len(svc.Spec.Selector) == 0 {
		t.Errorf("Service selector %v does not select the chatd pods %v", svc.Spec.Selector, d.Spec.Template.Labels)
	}
	svcPorts := map[string]int32{} // the ports that reach the chat
	for _, p := range svc.Spec.Ports {
		switch got := containerPort(t, c, p.TargetPort); got {
		case port:
			svcPorts[p.Name] = p.Port
		case metricsPort:
			if p.Name != "metrics" {
				t.Errorf("Service port %s reaches the metrics port %d: name it metrics", p.Name, got)
			}
		default:
			t.Errorf("Service port %s targets %d, where the server does not listen (%d, metrics %d)", p.Name, got, port, metricsPort)
		}
	}
	if len(svcPorts) == 0 {
		t.Errorf("no Service port reaches the chat on %d", port)
	}

	ings := all[networkingv1.Ingress](m, false)
	if len(ings) == 0 {
		return
	}
	ing := only[networkingv1.Ingress](t, m, "chatd", false)
	// Only ports that reach the chat: /metrics stays inside the cluster.
	for _, rule := range ing.Spec.Rules {
		for _, path := range rule.HTTP.Paths {
			b := path.Backend.Service
			if b == nil || b.Name != svc.Name {
				t.Errorf("Ingress path %s: backend %+v is not Service %s", path.Path, b, svc.Name)
				continue
			}
			if _, ok := svcPorts[b.Port.Name]; b.Port.Name != "" && !ok {
				t.Errorf("Ingress path %s: Service %s has no port named %s", path.Path, svc.Name, b.Port.Name)
			}
			if b.Port.Name == "" && !slices.Contains(slices.Collect(maps.Values(svcPorts)), b.Port.Number) {
				t.Errorf("Ingress path %s: Service %s has no port %d", path.Path, svc.Name, b.Port.Number)
			}
		}
	}
	// Websockets stay open for hours; ingress-nginx cuts a connection that
	// has been idle for proxy-read-timeout (60s unless told).
	for _, a := range []string{"nginx.ingress.kubernetes.io/proxy-read-timeout", "nginx.ingress.kubernetes.io/proxy-send-timeout"} {
		n, err := strconv.Atoi(ing.Annotations[a])
		if err != nil || n < 600 {
			t.Errorf("Ingress annotation %s=%q, want at least 600 (seconds)", a, ing.Annotations[a])
		}
	}
}

func TestKubernetesScaling(t *testing.T) {
	forEachVariant(t, checkScaling)
}

func checkScaling(t *testing.T, m manifests) {
	d, _ := chatd(t, m)

	pdb := only[policyv1.PodDisruptionBudget](t, m, "chatd", false)
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("PDB selector %v does not select the chatd pods (%v)", pdb.Spec.Selector, err)
	}
	if mu := pdb.Spec.MaxUnavailable; mu == nil || mu.Type != intstr.Int || mu.IntVal < 1 || mu.IntVal >= *d.Spec.Replicas {
		t.Errorf("PDB maxUnavailable %v: want a number from 1 to below the replicas (%d)", mu, *d.Spec.Replicas)
	}

	if len(all[autoscalingv2.HorizontalPodAutoscaler](m, false)) == 0 {
		return
	}
	hpa := only[autoscalingv2.HorizontalPodAutoscaler](t, m, "chatd", false)
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != d.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA scales %+v, not the chatd Deployment", ref)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 || *hpa.Spec.MinReplicas > hpa.Spec.MaxReplicas {
		t.Errorf("HPA replicas %v..%d: want at least 2 and min <= max", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	// CPU, against the request: what fan-out spends. Not memory: the Go
	// heap grows towards GOMEMLIMIT, far above the request, whatever the
	// load.
	var cpu bool
	for _, metric := range hpa.Spec.Metrics {
		if metric.Resource != nil && metric.Resource.Name == corev1.ResourceCPU && metric.Resource.Target.AverageUtilization != nil {
			cpu = true
		}
		if metric.Resource != nil && metric.Resource.Name == corev1.ResourceMemory {
			t.Errorf("HPA scales on memory: with GOMEMLIMIT the heap says little about load")
		}
	}
	if !cpu {
		t.Errorf("HPA does not scale on CPU utilization: %+v", hpa.Spec.Metrics)
	}
}
