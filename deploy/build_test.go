package deploy

import (
	"bytes"
	"debug/elf"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildChatd runs the image's build command (with the output moved into a
// temporary folder) and returns the binary's path.
func buildChatd(t *testing.T) string {
	t.Helper()
	env, rest, ok := strings.Cut(buildCommand, " ")
	if !ok || env != "CGO_ENABLED=0" {
		t.Fatalf("build command %q does not start with CGO_ENABLED=0", buildCommand)
	}
	// The shell would remove the quotes around -s -w.
	args := strings.Fields(strings.Replace(rest, `-ldflags="-s -w"`, "-ldflags=LDFLAGS", 1))
	out := filepath.Join(t.TempDir(), "chatd")
	for i, a := range args {
		switch a {
		case "-ldflags=LDFLAGS":
			args[i] = "-ldflags=-s -w"
		case "/out/chatd":
			args[i] = out
		}
	}
	if args[0] != "go" || args[1] != "build" {
		t.Fatalf("build command %q is not a go build", buildCommand)
	}
	cmd := exec.CommandContext(t.Context(), "go", args[1:]...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", buildCommand, err, b)
	}
	return out
}

// The image's binary builds, is static (the distroless static image has no
// C library), and its healthcheck subcommand, the image's HEALTHCHECK, says
// 0 while the server serves and 1 once it has stopped.
func TestImageBinary(t *testing.T) {
	bin := buildChatd(t)

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked: it will not start on distroless/static", bin)
		}
	}
	f.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := append(os.Environ(), "CHAT_ADDR="+addr, "CHAT_REDIS_URL=", "CHAT_LOG_FORMAT=json")

	healthcheck := func() (int, string) {
		cmd := exec.CommandContext(t.Context(), bin, "healthcheck")
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode(), out.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String()
	}
	if code, _ := healthcheck(); code != 1 {
		t.Fatalf("healthcheck with no server: exit %d, want 1", code)
	}

	srv := exec.Command(bin)
	srv.Env = env
	var logs bytes.Buffer
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	t.Cleanup(func() {
		srv.Process.Kill()
		<-done
	})

	// Poll until the server serves; the deadline only keeps a broken
	// server from hanging the test.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out := healthcheck()
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthcheck never passed: exit %d: %s\nserver log:\n%s", code, out, logs.String())
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("server exited: %v\n%s", err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s, want 200 OK", path, resp.Status)
		}
	}

	// SIGTERM, as Docker and the kubelet send it: the server drains and
	// exits 0, and the health check then fails.
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("after SIGTERM: %v, want exit 0\n%s", err, logs.String())
	}
	done <- nil
	if code, _ := healthcheck(); code != 1 {
		t.Errorf("healthcheck after the server stopped: exit %d, want 1", code)
	}
}
