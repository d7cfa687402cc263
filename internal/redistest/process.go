package redistest

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"time"
)

// process runs redis-server as a child process of the test binary.
type process struct {
	args []string // immutable

	mu   sync.Mutex    // guards cmd and done
	cmd  *exec.Cmd     // nil while halted
	done chan struct{} // closed when cmd has exited
}

func newProcess(args []string) *process { return &process{args: args} }

func (p *process) String() string { return "redis-server" }

func (p *process) start(ctx context.Context) error {
	cmd := exec.Command("redis-server", p.args...)
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	return nil
}

func (p *process) running(ctx context.Context) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return done != nil
	}
}

func (p *process) halt(kill bool) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	if kill {
		cmd.Process.Kill()
	} else {
		cmd.Process.Signal(os.Interrupt)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func (p *process) close() { p.halt(false) }
