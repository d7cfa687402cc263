package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// The client is ES modules: a browser refuses a module served with a type
// other than JavaScript, and an import of a file that is not embedded
// breaks the whole page.
func TestHandlerServesTheClient(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()

	get := func(path string) (string, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		return resp.Header.Get("Content-Type"), string(body)
	}

	typ, index := get("/")
	if !strings.HasPrefix(typ, "text/html") || !strings.Contains(index, `<script type="module" src="app.js">`) {
		t.Fatalf("GET /: %s\n%s", typ, index)
	}
	if typ, _ := get("/style.css"); !strings.HasPrefix(typ, "text/css") {
		t.Errorf("style.css served as %s", typ)
	}

	imports := regexp.MustCompile(`(?m)^import .* from '\./([a-z]+\.js)';$`)
	files, err := fs.Glob(static, "static/*.js")
	if err != nil || len(files) == 0 {
		t.Fatalf("no modules embedded: %v", err)
	}
	found := 0
	for _, f := range files {
		name := strings.TrimPrefix(f, "static/")
		typ, body := get("/" + name)
		if !strings.HasPrefix(typ, "text/javascript") && !strings.HasPrefix(typ, "application/javascript") {
			t.Errorf("%s served as %s", name, typ)
		}
		for _, m := range imports.FindAllStringSubmatch(body, -1) {
			found++
			if _, err := fs.Stat(static, "static/"+m[1]); err != nil {
				t.Errorf("%s imports %s, which is not embedded", name, m[1])
			}
		}
	}
	if found == 0 {
		t.Error("found no imports between the modules: the pattern is stale")
	}
}
