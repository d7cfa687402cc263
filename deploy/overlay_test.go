package deploy

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// overlaysDir holds the kustomize overlays: trial and production.
var overlaysDir = filepath.Join(root, "deploy", "overlays")

// render builds dir with kustomize, the library that `kubectl apply -k`
// and `kubectl kustomize` run, and decodes what it gives strictly. A patch
// whose target is missing fails here as it would for kubectl; a patch field
// that the object's type does not have fails the strict decoding.
func render(t *testing.T, dir string) manifests {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeStrict(out)
	if err != nil {
		t.Fatalf("kustomize build %s: %v\n%s", dir, err, out)
	}
	return manifests{files: map[string][]any{"kustomize build " + dir: objs}}
}

// overlays returns the folders of deploy/overlays.
func overlays(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(overlaysDir)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if !slices.Contains(dirs, "trial") || !slices.Contains(dirs, "production") {
		t.Fatalf("deploy/overlays holds %v, want trial and production", dirs)
	}
	return dirs
}

// forEachVariant runs check on the base and on every overlay, as kustomize
// renders each.
func forEachVariant(t *testing.T, check func(*testing.T, manifests)) {
	t.Helper()
	t.Run("base", func(t *testing.T) { check(t, render(t, kubeDir)) })
	for _, o := range overlays(t) {
		t.Run(o, func(t *testing.T) { check(t, render(t, filepath.Join(overlaysDir, o))) })
	}
}

// overlayKustomization decodes an overlay's kustomization.yaml strictly.
func overlayKustomization(t *testing.T, name string) *kustomization {
	t.Helper()
	src := readFile(t, "deploy", "overlays", name, "kustomization.yaml")
	objs, err := decodeStrict([]byte(src))
	if err != nil || len(objs) != 1 {
		t.Fatalf("overlays/%s/kustomization.yaml: %d objects, %v", name, len(objs), err)
	}
	k, ok := objs[0].(*kustomization)
	if !ok {
		t.Fatalf("overlays/%s/kustomization.yaml is a %T", name, objs[0])
	}
	return k
}

// Every file of an overlay is used by it: listed as a resource or a patch.
func TestOverlayFiles(t *testing.T) {
	for _, o := range overlays(t) {
		k := overlayKustomization(t, o)
		used := map[string]bool{}
		for _, r := range k.Resources {
			used[r] = true
		}
		for _, p := range k.Patches {
			used[p.Path] = true
		}
		if len(k.Patches) == 0 {
			t.Errorf("overlays/%s patches nothing", o)
		}
		entries, err := os.ReadDir(filepath.Join(overlaysDir, o))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "kustomization.yaml" && !used[e.Name()] {
				t.Errorf("overlays/%s/%s is neither a resource nor a patch of the overlay", o, e.Name())
			}
		}
	}
}

// howTo returns the shell commands written in the comment at the head of
// an overlay's kustomization.yaml.
func howTo(t *testing.T, overlay string) []string {
	t.Helper()
	return commands(readFile(t, "deploy", "overlays", overlay, "kustomization.yaml"), "#   ")
}

// commands returns the lines of text that start with indent, as shell
// commands: the indent and a trailing comment dropped, continuation lines
// joined.
func commands(text, indent string) []string {
	var cmds []string
	var cur strings.Builder
	for _, line := range strings.Split(text, "\n") {
		cmd, ok := strings.CutPrefix(line, indent)
		if !ok {
			continue
		}
		cmd, _, _ = strings.Cut(cmd, "   #") // a trailing comment
		cmd = strings.TrimSpace(cmd)
		if more, ok := strings.CutSuffix(cmd, `\`); ok {
			cur.WriteString(more)
			continue
		}
		cur.WriteString(cmd)
		cmds = append(cmds, cur.String())
		cur.Reset()
	}
	return cmds
}

// The docs give an overlay's steps as the overlay itself writes them: the
// trial's in the README and docs/operations.md, production's in
// docs/operations.md.
func TestOverlayStepsInDocs(t *testing.T) {
	docs := map[string][]string{
		"README.md":          commands(readFile(t, "README.md"), "    "),
		"docs/operations.md": commands(readFile(t, "docs", "operations.md"), "    "),
	}
	for overlay, where := range map[string][]string{
		"trial":      {"README.md", "docs/operations.md"},
		"production": {"docs/operations.md"},
	} {
		for _, cmd := range howTo(t, overlay) {
			for _, doc := range where {
				if !slices.Contains(docs[doc], cmd) {
					t.Errorf("%s does not give the %s overlay's step %q", doc, overlay, cmd)
				}
			}
		}
	}
}

// createdSecrets returns the Secrets that the commands create in namespace
// ns, each with the keys given.
func createdSecrets(cmds []string, ns string) map[string][]string {
	secrets := map[string][]string{}
	create := regexp.MustCompile(`^kubectl -n (\S+) create secret (?:generic|tls) (\S+)(.*)$`)
	key := regexp.MustCompile(`--from-literal=([A-Za-z0-9_.-]+)=`)
	for _, c := range cmds {
		m := create.FindStringSubmatch(c)
		if m == nil || m[1] != ns {
			continue
		}
		keys := []string{}
		for _, k := range key.FindAllStringSubmatch(m[3], -1) {
			keys = append(keys, k[1])
		}
		if strings.Contains(c, "create secret tls") {
			keys = append(keys, "tls.crt", "tls.key")
		}
		secrets[m[2]] = keys
	}
	return secrets
}

// Every Secret that an overlay's pods or Ingress need is created, with the
// keys read from it, by the commands written at the head of the overlay, in
// its namespace; and the commands create that namespace and apply the
// overlay. (Optional ones, such as the OAuth Secret, may be left out.)
func TestOverlaySecretsAreCreatedAsWritten(t *testing.T) {
	for _, o := range overlays(t) {
		t.Run(o, func(t *testing.T) {
			k := overlayKustomization(t, o)
			cmds := howTo(t, o)
			if k.Namespace == "" {
				t.Fatalf("overlays/%s sets no namespace", o)
			}
			for _, want := range []string{"kubectl create namespace " + k.Namespace, "kubectl apply -k deploy/overlays/" + o} {
				if !slices.Contains(cmds, want) {
					t.Errorf("overlays/%s: the steps do not say %q: %q", o, want, cmds)
				}
			}
			created := createdSecrets(cmds, k.Namespace)
			need := map[string][]string{} // Secret -> keys read
			m := render(t, filepath.Join(overlaysDir, o))
			for _, d := range all[appsv1.Deployment](m, false) {
				for _, c := range d.Spec.Template.Spec.Containers {
					needSecrets(need, c)
				}
			}
			for _, s := range all[appsv1.StatefulSet](m, false) {
				for _, c := range s.Spec.Template.Spec.Containers {
					needSecrets(need, c)
				}
			}
			for _, ing := range all[networkingv1.Ingress](m, false) {
				for _, tls := range ing.Spec.TLS {
					need[tls.SecretName] = append(need[tls.SecretName], "tls.crt", "tls.key")
				}
			}
			if len(need) == 0 {
				t.Fatalf("overlays/%s reads no Secret", o)
			}
			for name, keys := range need {
				got, ok := created[name]
				if !ok {
					t.Errorf("overlays/%s reads Secret %s, which its steps do not create in %s", o, name, k.Namespace)
					continue
				}
				for _, key := range keys {
					if !slices.Contains(got, key) {
						t.Errorf("overlays/%s reads key %s of Secret %s, which its steps do not set (%v)", o, key, name, got)
					}
				}
			}
		})
	}
}

// needSecrets adds the Secrets and keys that a container cannot start
// without (envFrom: any key, so none in particular).
func needSecrets(need map[string][]string, c corev1.Container) {
	for _, e := range c.Env {
		if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && (r.SecretKeyRef.Optional == nil || !*r.SecretKeyRef.Optional) {
			need[r.SecretKeyRef.Name] = append(need[r.SecretKeyRef.Name], r.SecretKeyRef.Key)
		}
	}
	for _, ef := range c.EnvFrom {
		if r := ef.SecretRef; r != nil && (r.Optional == nil || !*r.Optional) {
			need[r.Name] = append(need[r.Name], []string{}...)
		}
	}
}

// The trial: dev login on a locally built image, reached through a
// port-forward only, with a Redis of its own behind a password and a
// NetworkPolicy.
func TestTrialOverlay(t *testing.T) {
	m := render(t, filepath.Join(overlaysDir, "trial"))
	k := overlayKustomization(t, "trial")
	d, c := chatd(t, m)

	for name, want := range map[string]string{"CHAT_DEV_LOGIN": "true", "CHAT_PUBLIC_URL": "http://localhost:8080"} {
		if got, _ := envOf(c, name); got != want {
			t.Errorf("%s=%q, want %q", name, got, want)
		}
	}
	if len(all[networkingv1.Ingress](m, false)) != 0 {
		t.Errorf("the trial has an Ingress: with dev login on it must be reached through a port-forward only")
	}
	for _, objs := range m.files {
		for _, o := range objs {
			if ns := o.(metav1.Object).GetNamespace(); ns != k.Namespace {
				t.Errorf("%T %s is in namespace %q, not %q", o, objectName(o), ns, k.Namespace)
			}
		}
	}

	// The image is the one the steps build and load, and never pulled.
	cmds := howTo(t, "trial")
	for _, want := range []string{
		"docker build -t " + c.Image + " .",
		"kind load docker-image " + c.Image,
		"minikube image load " + c.Image,
	} {
		if !slices.Contains(cmds, want) {
			t.Errorf("the trial's steps do not say %q: %q", want, cmds)
		}
	}
	if c.ImagePullPolicy != corev1.PullNever {
		t.Errorf("imagePullPolicy %q, want Never: the image is loaded into the cluster, no registry has it", c.ImagePullPolicy)
	}

	// The port-forward reaches the Service's chat port, on the port of the
	// public URL the browser uses.
	svc := only[corev1.Service](t, m, "chatd", false)
	pf := regexp.MustCompile(`^kubectl -n (\S+) port-forward service/` + svc.Name + ` (\d+):(\d+)$`)
	forwarded := false
	for _, cmd := range cmds {
		f := pf.FindStringSubmatch(cmd)
		if f == nil {
			continue
		}
		forwarded = true
		public, _ := envOf(c, "CHAT_PUBLIC_URL")
		u, _ := url.Parse(public)
		if f[1] != k.Namespace || f[2] != u.Port() {
			t.Errorf("%q: want namespace %s and local port %s (CHAT_PUBLIC_URL)", cmd, k.Namespace, u.Port())
		}
		var reaches bool
		for _, p := range svc.Spec.Ports {
			if strconv.Itoa(int(p.Port)) == f[3] {
				reaches = containerPort(t, c, p.TargetPort) == addrPort(t, mustEnv(t, c, "CHAT_ADDR"))
			}
		}
		if !reaches {
			t.Errorf("%q: Service port %s does not reach the chat", cmd, f[3])
		}
	}
	if !forwarded {
		t.Errorf("the trial's steps have no port-forward to service/%s: %q", svc.Name, cmds)
	}

	checkTrialRedis(t, m, d, c, cmds)
}

func mustEnv(t *testing.T, c *corev1.Container, name string) string {
	t.Helper()
	v, ok := envOf(c, name)
	if !ok {
		t.Fatalf("container %s does not set %s", c.Name, name)
	}
	return v
}

// checkTrialRedis: the Redis URL that the steps put in the chatd-redis
// Secret names the trial's Redis Service, with the password that Redis
// requires; only chatd pods may reach Redis.
func checkTrialRedis(t *testing.T, m manifests, d *appsv1.Deployment, c *corev1.Container, cmds []string) {
	t.Helper()
	sts := only[appsv1.StatefulSet](t, m, "redis", false)
	svc := only[corev1.Service](t, m, "redis", false)
	redis := &sts.Spec.Template.Spec.Containers[0]

	// chatd's URL, as the steps write it.
	var ref *corev1.SecretKeySelector
	for _, e := range c.Env {
		if e.Name == "CHAT_REDIS_URL" && e.ValueFrom != nil {
			ref = e.ValueFrom.SecretKeyRef
		}
	}
	if ref == nil {
		t.Fatal("chatd does not read CHAT_REDIS_URL from a Secret")
	}
	lit := regexp.MustCompile(`create secret generic ` + ref.Name + ` .*--from-literal=` + ref.Key + `="([^"]+)"`)
	var raw string
	for _, cmd := range cmds {
		if m := lit.FindStringSubmatch(cmd); m != nil {
			raw = m[1]
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "redis" {
		t.Fatalf("the steps put %q in Secret %s: not a redis:// URL (%v)", raw, ref.Name, err)
	}
	if u.Hostname() != svc.Name {
		t.Errorf("the Redis URL names host %s, the trial's Redis Service is %s", u.Hostname(), svc.Name)
	}
	if sts.Spec.ServiceName != svc.Name {
		t.Errorf("StatefulSet serviceName %q, want %q", sts.Spec.ServiceName, svc.Name)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(sts.Spec.Template.Labels)) || len(svc.Spec.Selector) == 0 {
		t.Errorf("Service %s does not select the Redis pods", svc.Name)
	}
	var reached bool
	for _, p := range svc.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == u.Port() {
			reached = containerPort(t, redis, p.TargetPort) == 6379
		}
	}
	if !reached {
		t.Errorf("the Redis URL's port %s does not reach the Redis container's 6379", u.Port())
	}

	// Redis requires a password from a Secret, the one the URL carries:
	// both are made from the same shell variable.
	i := slices.Index(redis.Args, "--requirepass")
	if i < 0 || i+1 >= len(redis.Args) {
		t.Fatalf("Redis is started without --requirepass: %q", redis.Args)
	}
	ref2 := regexp.MustCompile(`^\$\(([A-Z_]+)\)$`).FindStringSubmatch(redis.Args[i+1])
	if ref2 == nil {
		t.Fatalf("--requirepass %q is not a $(VAR) of the container's environment", redis.Args[i+1])
	}
	var pass *corev1.SecretKeySelector
	for _, e := range redis.Env {
		if e.Name == ref2[1] && e.ValueFrom != nil {
			pass = e.ValueFrom.SecretKeyRef
		}
	}
	if pass == nil {
		t.Fatalf("the Redis password %s does not come from a Secret", ref2[1])
	}
	if ref2[1] != "REDISCLI_AUTH" {
		t.Errorf("the password is in %s: redis-cli in the probes reads it from REDISCLI_AUTH", ref2[1])
	}
	shellVar := regexp.MustCompile(`create secret generic ` + pass.Name + ` --from-literal=` + pass.Key + `="\$(\w+)"`)
	var v string
	for _, cmd := range cmds {
		if m := shellVar.FindStringSubmatch(cmd); m != nil {
			v = m[1]
		}
	}
	if userinfo, _ := u.User.Password(); v == "" || userinfo != "$"+v {
		t.Errorf("the Redis URL's password %q is not the $%s put in Secret %s", userinfo, v, pass.Name)
	}

	// Only chatd pods may reach Redis.
	np := only[networkingv1.NetworkPolicy](t, m, "redis", false)
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("NetworkPolicy redis does not select the Redis pods: %v (%v)", np.Spec.PodSelector, err)
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("NetworkPolicy redis does not restrict ingress: %v", np.Spec.PolicyTypes)
	}
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 {
		t.Fatalf("NetworkPolicy redis: want one rule admitting one peer, got %+v", np.Spec.Ingress)
	}
	peer := np.Spec.Ingress[0].From[0]
	if peer.NamespaceSelector != nil || peer.IPBlock != nil || peer.PodSelector == nil {
		t.Fatalf("NetworkPolicy redis admits %+v: want chatd pods of its own namespace only", peer)
	}
	from, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
	if err != nil || from.Empty() || !from.Matches(labels.Set(d.Spec.Template.Labels)) || from.Matches(labels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("NetworkPolicy redis admits pods %v: want the chatd pods and no others", peer.PodSelector)
	}
	if ports := np.Spec.Ingress[0].Ports; len(ports) != 1 || ports[0].Port == nil || ports[0].Port.IntValue() != 6379 {
		t.Errorf("NetworkPolicy redis admits ports %+v, want 6379 only", ports)
	}
}

// Production: no dev login, an https public URL that the Ingress serves
// with TLS, an image of one's own, social login from the OAuth Secret.
func TestProductionOverlay(t *testing.T) {
	m := render(t, filepath.Join(overlaysDir, "production"))
	_, c := chatd(t, m)
	if v, _ := envOf(c, "CHAT_DEV_LOGIN"); v != "" && v != "false" {
		t.Errorf("CHAT_DEV_LOGIN=%q in production", v)
	}
	public, _ := envOf(c, "CHAT_PUBLIC_URL")
	u, err := url.Parse(public)
	if err != nil || u.Scheme != "https" {
		t.Fatalf("CHAT_PUBLIC_URL %q is not https (%v)", public, err)
	}
	ing := only[networkingv1.Ingress](t, m, "chatd", false)
	if len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].Host != u.Host {
		t.Errorf("Ingress rules %+v, want host %s (CHAT_PUBLIC_URL)", ing.Spec.Rules, u.Host)
	}
	if len(ing.Spec.TLS) != 1 || !slices.Equal(ing.Spec.TLS[0].Hosts, []string{u.Host}) {
		t.Errorf("Ingress TLS %+v, want %s", ing.Spec.TLS, u.Host)
	}
	if strings.HasPrefix(c.Image, "wirechat/chatd:") {
		t.Errorf("image %s: production runs an image from its own registry", c.Image)
	}
	if !slices.ContainsFunc(c.EnvFrom, func(ef corev1.EnvFromSource) bool { return ef.SecretRef != nil && ef.SecretRef.Name == "chatd-oauth" }) {
		t.Errorf("the chatd container does not read the chatd-oauth Secret")
	}
	// Without dev login, the OAuth Secret is how anyone logs in: the steps
	// create it, with a provider's id and secret.
	k := overlayKustomization(t, "production")
	keys := createdSecrets(howTo(t, "production"), k.Namespace)["chatd-oauth"]
	checkKnown(t, "the production steps' chatd-oauth Secret", keys)
	if !slices.ContainsFunc(keys, func(k string) bool { return strings.HasSuffix(k, "_CLIENT_ID") }) ||
		!slices.ContainsFunc(keys, func(k string) bool { return strings.HasSuffix(k, "_CLIENT_SECRET") }) {
		t.Errorf("the production steps create chatd-oauth with %v: want a provider's client id and secret", keys)
	}
}
