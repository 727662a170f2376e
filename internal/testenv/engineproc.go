package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// engineProc is a restartable subprocess on a fixed loopback port, with its
// output appended to one log file. Stop kills it (SIGKILL) and waits;
// Start runs it again and waits until ready says it answers.
type engineProc struct {
	t       testing.TB
	name    string
	logFile string
	command func() *exec.Cmd
	ready   func(ctx context.Context) error

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	pid  int
}

func (p *engineProc) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

func (p *engineProc) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return
	}
	logf, err := os.OpenFile(p.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatalf("%s log: %v", p.name, err)
	}
	c := p.command()
	c.Stdout, c.Stderr = logf, logf
	// Die with the test binary even if cleanup never runs.
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.Start(); err != nil {
		logf.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	logf.Close()
	ch := make(chan struct{})
	go func() { c.Wait(); close(ch) }()
	p.cmd, p.done, p.pid = c, ch, c.Process.Pid
	if err := p.waitReady(ch); err != nil {
		c.Process.Kill()
		<-ch
		p.cmd = nil
		p.t.Fatalf("%s not ready: %v\n%s", p.name, err, readTail(p.logFile))
	}
}

func (p *engineProc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

func (p *engineProc) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("%s exited", p.name)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		last = p.ready(ctx)
		cancel()
		if last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not ready within 20s: %v", last)
}

// cleanup stops the engineProc at the end of the test, printing its log when
// the test failed.
func (p *engineProc) cleanup() {
	p.t.Cleanup(func() {
		p.Stop()
		if p.t.Failed() {
			p.t.Logf("%s log (%s):\n%s", p.name, p.logFile, readTail(p.logFile))
		}
	})
}
