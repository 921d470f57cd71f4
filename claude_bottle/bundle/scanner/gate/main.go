// claude-bottle-gate: the first program of the agent's container (Docker runtime). The agent and the
// bundle start at the same time; this waits until the bundle's CA certificate is in the volume the
// bundle shares with the agent, and the bundle's proxy accepts a connection (claude-bottle-boot binds
// it before anything else and hands it to mitmdump, so a connection made now is answered as soon as
// mitmdump is up), then becomes the agent's own command.
//
//	gate COMMAND [ARG...]   with CLAUDE_BOTTLE_GATE_PROXY=HOST:PORT or /PATH (a Unix socket),
//	                        CLAUDE_BOTTLE_GATE_CA=PATH, and optionally CLAUDE_BOTTLE_GATE_LISTEN=HOST:PORT
//
// With CLAUDE_BOTTLE_GATE_LISTEN, the agent has no network at all (`--network none`) and the proxy is a
// Unix socket in the shared volume: the gate binds HOST:PORT on the agent's loopback first, for the
// agent's proxy variables to name, and leaves a relay behind (this program again, in its own session,
// so a terminal's ^C never reaches it) that carries each connection to the socket.
//
// Stdlib only, static: it runs in whatever image the agent uses.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const defaultWait = 60 * time.Second

// relayEnv marks the relay: it is this program, started again with only this variable and the
// listening socket as fd 3.
const relayEnv = "CLAUDE_BOTTLE_GATE_RELAY"

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "claude-bottle-gate: "+format+"\n", args...)
	os.Exit(125) // what docker run says when the container itself could not run the command
}

// network says how to dial the proxy: an absolute path is a Unix socket, anything else HOST:PORT.
func network(proxy string) string {
	if strings.HasPrefix(proxy, "/") {
		return "unix"
	}
	return "tcp"
}

// ready says what is still missing, or "" once the CA is there and the proxy accepts.
func ready(proxy, ca string) string {
	if info, err := os.Stat(ca); err != nil || info.Size() == 0 {
		return "the bundle's CA certificate " + ca
	}
	conn, err := net.DialTimeout(network(proxy), proxy, 250*time.Millisecond)
	if err != nil {
		return "a connection to the bundle's proxy " + proxy + " (" + err.Error() + ")"
	}
	conn.Close()
	return ""
}

// startRelay binds listen, then starts the relay that serves it; it outlives this process's exec.
func startRelay(listen, proxy string) error {
	listener, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	file, err := listener.(*net.TCPListener).File()
	listener.Close()
	if err != nil {
		return err
	}
	defer file.Close()
	relay := exec.Command("/proc/self/exe")
	relay.Args = []string{"claude-bottle-gate-relay"}
	relay.Env = []string{relayEnv + "=" + proxy}
	relay.ExtraFiles = []*os.File{file}
	relay.Stderr = os.Stderr
	relay.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return relay.Start()
}

// serveRelay carries each connection on listener to proxy, both ways, half-closes included.
func serveRelay(listener net.Listener, proxy string) {
	for {
		client, err := listener.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			fmt.Fprintf(os.Stderr, "claude-bottle-gate-relay: %s\n", err)
			time.Sleep(50 * time.Millisecond) // out of descriptors, say: the agent's own doing
			continue
		}
		go pipe(client, proxy)
	}
}

type halfCloser interface{ CloseWrite() error }

func pipe(client net.Conn, proxy string) {
	defer client.Close()
	server, err := net.Dial(network(proxy), proxy)
	if err != nil {
		return // the agent sees the connection close: fail closed
	}
	defer server.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(server, client)
		if c, ok := server.(halfCloser); ok {
			c.CloseWrite()
		}
		close(done)
	}()
	io.Copy(client, server)
	if c, ok := client.(halfCloser); ok {
		c.CloseWrite()
	}
	<-done
}

func main() {
	if proxy := os.Getenv(relayEnv); proxy != "" {
		listener, err := net.FileListener(os.NewFile(3, "listener"))
		if err != nil {
			fmt.Fprintf(os.Stderr, "claude-bottle-gate-relay: %s\n", err)
			os.Exit(1)
		}
		serveRelay(listener, proxy)
	}
	proxy, ca := os.Getenv("CLAUDE_BOTTLE_GATE_PROXY"), os.Getenv("CLAUDE_BOTTLE_GATE_CA")
	if proxy == "" || ca == "" || len(os.Args) < 2 {
		fail("usage: CLAUDE_BOTTLE_GATE_PROXY=HOST:PORT|/SOCKET CLAUDE_BOTTLE_GATE_CA=PATH gate COMMAND [ARG...]")
	}
	wait := defaultWait
	if s := os.Getenv("CLAUDE_BOTTLE_GATE_WAIT_S"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			fail("CLAUDE_BOTTLE_GATE_WAIT_S=%q is not a positive number of seconds", s)
		}
		wait = time.Duration(n) * time.Second
	}
	deadline := time.Now().Add(wait)
	for missing := ready(proxy, ca); missing != ""; missing = ready(proxy, ca) {
		if time.Now().After(deadline) {
			fail("waited %s for %s: the bundle did not come up", wait, missing)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if listen := os.Getenv("CLAUDE_BOTTLE_GATE_LISTEN"); listen != "" {
		if err := startRelay(listen, proxy); err != nil {
			fail("relaying %s to the bundle's proxy: %s", listen, err)
		}
	}
	for _, name := range []string{"CLAUDE_BOTTLE_GATE_PROXY", "CLAUDE_BOTTLE_GATE_CA", "CLAUDE_BOTTLE_GATE_WAIT_S",
		"CLAUDE_BOTTLE_GATE_LISTEN"} {
		os.Unsetenv(name)
	}
	path, err := exec.LookPath(os.Args[1])
	if err != nil {
		fail("%s", err)
	}
	if err := syscall.Exec(path, os.Args[1:], os.Environ()); err != nil {
		fail("exec %s: %s", path, err)
	}
}
