package deploy

import (
	"encoding/json"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// buildCommand is how the chatd binary is built, in the image and in CI.
const buildCommand = `CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/chatd ./cmd/chatd`

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// dockerfile returns the instructions of the root Dockerfile grouped by
// build stage.
func dockerfile(t *testing.T) [][]instruction {
	t.Helper()
	var stages [][]instruction
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %s before the first FROM", in.cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	for _, line := range strings.Split(readFile(t, "Dockerfile"), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return stages
}

func find(stage []instruction, cmd string) []string {
	var args []string
	for _, in := range stage {
		if in.cmd == cmd {
			args = append(args, in.args)
		}
	}
	return args
}

// execForm decodes an instruction in exec (JSON array) form.
func execForm(t *testing.T, what, args string) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil {
		t.Fatalf("Dockerfile %s %s: not in exec form (the image has no shell): %v", what, args, err)
	}
	return argv
}

func TestDockerfile(t *testing.T) {
	stages := dockerfile(t)
	if len(stages) != 2 {
		t.Fatalf("%d stages, want 2 (build and final)", len(stages))
	}
	build, final := stages[0], stages[1]

	if got := find(build, "FROM"); !slices.Equal(got, []string{"golang:1.26 AS build"}) {
		t.Errorf("build stage FROM %v, want golang:1.26 AS build", got)
	}
	if !slices.Contains(find(build, "RUN"), buildCommand) {
		t.Errorf("the build stage does not RUN the build command CI uses:\n%s", buildCommand)
	}

	if got := find(final, "FROM"); !slices.Equal(got, []string{"gcr.io/distroless/static-debian12:nonroot"}) {
		t.Errorf("final stage FROM %v, want gcr.io/distroless/static-debian12:nonroot", got)
	}
	if got := find(final, "COPY"); !slices.Contains(got, "--from=build /out/chatd /chatd") {
		t.Errorf("final stage COPY %v does not take /out/chatd from the build stage", got)
	}
	if users := find(final, "USER"); len(users) == 0 {
		t.Errorf("final stage runs as root: no USER")
	} else if u := strings.Split(users[len(users)-1], ":")[0]; u == "root" || u == "0" {
		t.Errorf("final stage USER %s", u)
	}

	// The port the server listens on is the one the image exposes, on
	// every interface of the container (set explicitly: with dev login on
	// and CHAT_ADDR unset, chatd listens on loopback, which a published
	// port does not reach).
	addr := ""
	for _, env := range find(final, "ENV") {
		if v, ok := strings.CutPrefix(env, "CHAT_ADDR="); ok {
			addr = v
		}
	}
	if addr == "" {
		t.Errorf("the image does not set CHAT_ADDR")
	}
	checkAllInterfaces(t, "the image's CHAT_ADDR", addr)
	port := strconv.Itoa(addrPort(t, addr))
	if got := find(final, "EXPOSE"); !slices.Equal(got, []string{port}) {
		t.Errorf("EXPOSE %v, want %s (CHAT_ADDR %q)", got, port, addr)
	}

	hc := find(final, "HEALTHCHECK")
	if len(hc) != 1 {
		t.Fatalf("HEALTHCHECK %v, want one", hc)
	}
	_, cmd, ok := strings.Cut(hc[0], "CMD ")
	if !ok || !slices.Equal(execForm(t, "HEALTHCHECK", cmd), []string{"/chatd", "healthcheck"}) {
		t.Errorf(`HEALTHCHECK %s, want CMD ["/chatd","healthcheck"]`, hc[0])
	}
	ep := find(final, "ENTRYPOINT")
	if len(ep) != 1 || !slices.Equal(execForm(t, "ENTRYPOINT", ep[0]), []string{"/chatd"}) {
		t.Errorf(`ENTRYPOINT %v, want ["/chatd"]`, ep)
	}
}

// outFlag is the output path of a go build command line.
var outFlag = regexp.MustCompile(`-o \S+`)

// CI builds the binary with the image's command; only the output path may
// differ.
func TestCIBuildsLikeTheImage(t *testing.T) {
	want := outFlag.ReplaceAllString(buildCommand, "-o OUT")
	var builds []string
	for _, line := range strings.Split(readFile(t, ".ci", "run"), "\n") {
		line = strings.TrimSpace(line)
		if strings.Contains(line, "go build") && strings.HasSuffix(line, "./cmd/chatd") {
			builds = append(builds, line)
			if outFlag.ReplaceAllString(line, "-o OUT") == want {
				return
			}
		}
	}
	t.Errorf(".ci/run builds chatd with %q, not with the image's command:\n%s", builds, buildCommand)
}

// .dockerignore keeps secrets out of the build context and nothing out that
// the build needs.
func TestDockerignore(t *testing.T) {
	var patterns []string
	for _, line := range strings.Split(readFile(t, ".dockerignore"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "!") {
			continue
		}
		patterns = append(patterns, strings.TrimPrefix(filepath.Clean(line), "/"))
	}
	ignored := func(path string) bool {
		for _, p := range patterns {
			// A pattern that matches a folder ignores all inside it.
			for dir := path; dir != "."; dir = filepath.Dir(dir) {
				if ok, _ := filepath.Match(p, dir); ok {
					return true
				}
			}
		}
		return false
	}
	for _, secret := range []string{".env", ".env.local", ".git"} {
		if !ignored(secret) {
			t.Errorf(".dockerignore lets %s into the build context", secret)
		}
	}

	// What the server's module needs: go.mod, go.sum and every file in a
	// subfolder (deploy/ is a module of its own; docs and the browser tests'
	// node_modules are no part of the build).
	needed := []string{"go.mod", "go.sum"}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() && (rel == "deploy" || rel == "docs" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".") && rel != ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && rel != filepath.Base(rel) {
			needed = append(needed, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range needed {
		if ignored(path) {
			t.Errorf(".dockerignore keeps %s, which the build needs, out of the build context", path)
		}
	}
}
