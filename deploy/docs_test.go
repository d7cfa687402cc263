package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// serverStrings returns every double-quoted string literal in the server's
// non-test Go files (deploy/ excluded: it is not the server).
func serverStrings(t *testing.T) map[string]bool {
	t.Helper()
	lit := regexp.MustCompile(`"([^"\\\n]*)"`)
	found := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() && (rel == "deploy" || d.Name() == "node_modules" || rel != "." && strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllStringSubmatch(string(src), -1) {
			found[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// docs/operations.md names only settings, metrics and files that exist.
func TestOperationsDoc(t *testing.T) {
	doc := readFile(t, "docs", "operations.md")

	names := regexp.MustCompile(`\bCHAT_[A-Z0-9_]+\b`).FindAllString(doc, -1)
	checkKnown(t, "docs/operations.md", names)

	// Metrics: the server's own (chat_...) are string literals in its code;
	// the k6 script's are declared in it; go_ and process_ come from the
	// Prometheus client's collectors.
	k6 := readFile(t, "deploy", "k6", "chat.js")
	server := serverStrings(t)
	metric := regexp.MustCompile("`(chat_[a-z_]+)(?:\\{[^}]*\\})?`")
	suffix := regexp.MustCompile(`_(bucket|sum|count)$`)
	for _, m := range metric.FindAllStringSubmatch(doc, -1) {
		name := m[1]
		if server[name] || server[suffix.ReplaceAllString(name, "")] || strings.Contains(k6, "'"+name+"'") {
			continue
		}
		t.Errorf("docs/operations.md names metric %s, which neither the server nor the k6 script has", name)
	}

	// Files of this repository that the page points at.
	path := regexp.MustCompile("(?:deploy|docs)/[A-Za-z0-9_./-]*[A-Za-z0-9_]|docker-compose\\.yml|\\.env\\.example|Dockerfile")
	for _, p := range path.FindAllString(doc, -1) {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("docs/operations.md points at %s: %v", p, err)
		}
	}
}

// Every setting the k6 script reads is documented, in the script's header
// and in docs/operations.md, and the documented command runs the script.
func TestK6Documented(t *testing.T) {
	k6 := readFile(t, "deploy", "k6", "chat.js")
	doc := readFile(t, "docs", "operations.md")
	var header strings.Builder
	for _, line := range strings.Split(k6, "\n") {
		if !strings.HasPrefix(line, "//") {
			break
		}
		header.WriteString(line + "\n")
	}

	var settings []string
	for _, m := range regexp.MustCompile(`__ENV\.([A-Z_]+)`).FindAllStringSubmatch(k6, -1) {
		if !slices.Contains(settings, m[1]) {
			settings = append(settings, m[1])
		}
	}
	if len(settings) == 0 {
		t.Fatal("the k6 script reads no setting")
	}
	for _, s := range settings {
		if !regexp.MustCompile(`\b` + s + `\b`).MatchString(header.String()) {
			t.Errorf("deploy/k6/chat.js: setting %s is not described in the script's header", s)
		}
		if !regexp.MustCompile("`" + s + "`|-e " + s + "=").MatchString(doc) {
			t.Errorf("docs/operations.md does not document the k6 setting %s", s)
		}
	}
	run := regexp.MustCompile(`k6 run (?:-e [A-Z_]+=\S+ )+deploy/k6/chat\.js`)
	for where, text := range map[string]string{"docs/operations.md": doc, "the script's header": header.String()} {
		if !run.MatchString(text) {
			t.Errorf("%s does not give the k6 run command against the compose stack", where)
		}
		if !strings.Contains(text, "BASE_URL=http://localhost:8080") {
			t.Errorf("%s: the k6 run command does not target the compose stack at http://localhost:8080", where)
		}
	}
}
