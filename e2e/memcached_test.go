package e2e

import (
	"net"
	"os/exec"
	"testing"
	"time"
)

// memcachedNode is a real memcached on a fixed address that the test can
// kill and start again (empty, as a restarted pod would be), or freeze.
// Processes are stopped by PID when the test ends.
type memcachedNode struct {
	t        *testing.T
	ip, port string
	cmd      *exec.Cmd
}

// startMemcachedAt runs memcached on ip:port until the test ends.
func startMemcachedAt(t *testing.T, ip, port string) *memcachedNode {
	t.Helper()
	if _, err := exec.LookPath("memcached"); err != nil {
		t.Fatal("memcached not found: run make test, which installs it")
	}
	n := &memcachedNode{t: t, ip: ip, port: port}
	n.start()
	return n
}

// startMemcached runs memcached on a free loopback port; stop kills it.
func startMemcached(t *testing.T) (addr string, stop func()) {
	t.Helper()
	_, port, _ := net.SplitHostPort(freePort(t))
	n := startMemcachedAt(t, "127.0.0.1", port)
	return n.addr(), n.kill
}

func (n *memcachedNode) addr() string { return net.JoinHostPort(n.ip, n.port) }

func (n *memcachedNode) start() {
	n.t.Helper()
	n.cmd = exec.Command("memcached", "-l", n.ip, "-p", n.port, "-U", "0", "-m", "64", "-u", "root")
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	cmd := n.cmd
	n.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(n.t, 10*time.Second, "memcached on "+n.addr(), func() bool {
		c, err := net.Dial("tcp", n.addr())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// kill ends the process (SIGKILL): its records are gone.
func (n *memcachedNode) kill() {
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
}
