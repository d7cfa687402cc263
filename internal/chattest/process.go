package chattest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wirechat/chat/internal/redistest"
)

// binary is the chatd built for this test binary, once.
var binary struct {
	once sync.Once
	path string
	err  error
}

// Main runs the tests of m, then stops the shared Redis (redistest.Main)
// and removes the chatd binary, if one was built. It returns m.Run's exit
// code:
//
//	func TestMain(m *testing.M) { os.Exit(chattest.Main(m)) }
func Main(m *testing.M) int {
	code := redistest.Main(m)
	if binary.path != "" {
		os.RemoveAll(filepath.Dir(binary.path))
	}
	return code
}

// Chatd builds ./cmd/chatd, as `go build` does, once per test binary, and
// returns the path of the binary.
func Chatd(t testing.TB) string {
	t.Helper()
	binary.once.Do(func() {
		dir, err := os.MkdirTemp("", "chattest-")
		if err != nil {
			binary.err = err
			return
		}
		binary.path = filepath.Join(dir, "chatd")
		out, err := exec.Command("go", "build", "-o", binary.path, "github.com/wirechat/chat/cmd/chatd").CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("go build ./cmd/chatd: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// Process is a chatd process serving on a free port of 127.0.0.1.
type Process struct {
	// URL is the node's base URL.
	URL string

	cmd    *exec.Cmd
	exited chan struct{}
}

// StartProcess starts the chatd binary with dev login on, no login rate
// limit and env (CHAT_ settings) added, waits until /readyz answers 200,
// and kills it when t ends.
func StartProcess(t testing.TB, env ...string) *Process {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(Chatd(t))
	cmd.Env = append(os.Environ(), "CHAT_ADDR="+addr, "CHAT_DEV_LOGIN=true", "CHAT_LOGIN_RATE_LIMIT=0",
		"CHAT_LOG_LEVEL=warn", "CHAT_PUBLIC_URL=http://"+addr)
	cmd.Env = append(cmd.Env, env...)
	if verbose() {
		cmd.Stderr = os.Stderr
	}
	setParentDeathSignal(cmd) // a test binary that dies takes its servers with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{URL: "http://" + addr, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.Kill)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(p.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("chatd on %s exited at start", addr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("chatd on %s not ready after 30s: %v", addr, err)
		}
	}
}

// Kill kills the process with SIGKILL, as a crash would, and waits until it
// is gone. It is safe to call more than once.
func (p *Process) Kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
