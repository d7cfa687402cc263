package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"
)

// overlayDir is the example production overlay: the base with a managed
// Redis, a namespace, an image and a host of one's own.
var overlayDir = filepath.Join(root, "deploy", "overlays", "production")

// withoutDirectives drops the strategic-merge directives ($patch and the
// like) that are no fields of the object, so what is left decodes strictly.
func withoutDirectives(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if strings.HasPrefix(k, "$") {
				delete(v, k)
				continue
			}
			v[k] = withoutDirectives(x)
		}
	case []any:
		for i, x := range v {
			v[i] = withoutDirectives(x)
		}
	}
	return v
}

// jsonPointerExists tells whether path (RFC 6901) names a value in doc.
func jsonPointerExists(doc any, path string) bool {
	for _, tok := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch d := doc.(type) {
		case map[string]any:
			v, ok := d[tok]
			if !ok {
				return false
			}
			doc = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(d) {
				return false
			}
			doc = d[i]
		default:
			return false
		}
	}
	return true
}

// baseObject returns the base's object of that kind and name, as a generic
// JSON tree.
func baseObject(t *testing.T, m manifests, kind, name string) (any, bool) {
	t.Helper()
	for file, objs := range m.files {
		if strings.Contains(file, ".example.") {
			continue
		}
		for _, o := range objs {
			if !strings.HasSuffix(fmt.Sprintf("%T", o), "."+kind) || objectName(o) != name {
				continue
			}
			b, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			var tree any
			if err := json.Unmarshal(b, &tree); err != nil {
				t.Fatal(err)
			}
			return tree, true
		}
	}
	return nil, false
}

func TestKubernetesOverlay(t *testing.T) {
	base := loadManifests(t)
	src, err := os.ReadFile(filepath.Join(overlayDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeStrict(src)
	if err != nil || len(objs) != 1 {
		t.Fatalf("overlay kustomization.yaml: %d objects, %v", len(objs), err)
	}
	k, ok := objs[0].(*kustomization)
	if !ok {
		t.Fatalf("overlay kustomization.yaml is a %T", objs[0])
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join(overlayDir, r)); err != nil {
			t.Errorf("overlay resource %s: %v", r, err)
		}
	}
	if len(k.Patches) == 0 {
		t.Fatal("the overlay patches nothing")
	}

	for i, p := range k.Patches {
		switch {
		case p.Path != "":
			// Strategic-merge patches: each document decodes strictly as
			// its kind, once the directives are gone, and patches an object
			// of the base.
			raw, err := os.ReadFile(filepath.Join(overlayDir, p.Path))
			if err != nil {
				t.Fatalf("patch %s: %v", p.Path, err)
			}
			for _, doc := range strings.Split(string(raw), "\n---\n") {
				js, err := sigsyaml.YAMLToJSONStrict([]byte(doc))
				if err != nil {
					t.Fatalf("patch %s: %v", p.Path, err)
				}
				var tree any
				if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &tree); err != nil {
					t.Fatalf("patch %s: %v", p.Path, err)
				}
				clean, _ := json.Marshal(withoutDirectives(tree))
				objs, err := decodeStrict(clean)
				if err != nil || len(objs) != 1 {
					t.Fatalf("patch %s: %d objects, %v", p.Path, len(objs), err)
				}
				kind := strings.TrimPrefix(fmt.Sprintf("%T", objs[0]), "*")
				kind = kind[strings.LastIndex(kind, ".")+1:]
				if _, ok := baseObject(t, base, kind, objectName(objs[0])); !ok {
					t.Errorf("patch %s: the base has no %s %q", p.Path, kind, objectName(objs[0]))
				}
			}
		case p.Target != nil && p.Patch != "":
			// JSON 6902 patches: each operation's path exists in the
			// target object of the base.
			tree, ok := baseObject(t, base, p.Target.Kind, p.Target.Name)
			if !ok {
				t.Fatalf("patch %d: the base has no %s %q", i, p.Target.Kind, p.Target.Name)
			}
			js, err := sigsyaml.YAMLToJSONStrict([]byte(p.Patch))
			if err != nil {
				t.Fatalf("patch %d: %v", i, err)
			}
			var ops []struct {
				Op    string `json:"op"`
				Path  string `json:"path"`
				Value any    `json:"value"`
			}
			strict, err := sigsjson.UnmarshalStrict(js, &ops, sigsjson.DisallowUnknownFields, sigsjson.DisallowDuplicateFields)
			if err != nil || len(strict) > 0 {
				t.Fatalf("patch %d: %v %v", i, err, strict)
			}
			for _, op := range ops {
				if op.Op != "add" && !jsonPointerExists(tree, op.Path) {
					t.Errorf("patch %d: %s %s: no such path in %s %s", i, op.Op, op.Path, p.Target.Kind, p.Target.Name)
				}
			}
		default:
			t.Errorf("patch %d: neither a file nor a targeted patch", i)
		}
	}
}
