// claude-bottle-gate: the first program of the agent's container (Docker runtime). The agent and the
// bundle start at the same time; this waits until the bundle's CA certificate is in the volume the
// bundle shares with the agent, and the bundle's proxy port accepts a connection (the supervisor
// binds it before anything else and hands it to mitmdump, so a connection made now is answered as
// soon as mitmdump is up), then becomes the agent's own command.
//
//	gate COMMAND [ARG...]   with CLAUDE_BOTTLE_GATE_PROXY=HOST:PORT and CLAUDE_BOTTLE_GATE_CA=PATH
//
// Stdlib only, static: it runs in whatever image the agent uses.
package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

const defaultWait = 60 * time.Second

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "claude-bottle-gate: "+format+"\n", args...)
	os.Exit(125) // what docker run says when the container itself could not run the command
}

// ready says what is still missing, or "" once the CA is there and the proxy accepts.
func ready(proxy, ca string) string {
	if info, err := os.Stat(ca); err != nil || info.Size() == 0 {
		return "the bundle's CA certificate " + ca
	}
	conn, err := net.DialTimeout("tcp", proxy, 250*time.Millisecond)
	if err != nil {
		return "a connection to the bundle's proxy " + proxy + " (" + err.Error() + ")"
	}
	conn.Close()
	return ""
}

func main() {
	proxy, ca := os.Getenv("CLAUDE_BOTTLE_GATE_PROXY"), os.Getenv("CLAUDE_BOTTLE_GATE_CA")
	if proxy == "" || ca == "" || len(os.Args) < 2 {
		fail("usage: CLAUDE_BOTTLE_GATE_PROXY=HOST:PORT CLAUDE_BOTTLE_GATE_CA=PATH gate COMMAND [ARG...]")
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
	for _, name := range []string{"CLAUDE_BOTTLE_GATE_PROXY", "CLAUDE_BOTTLE_GATE_CA", "CLAUDE_BOTTLE_GATE_WAIT_S"} {
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
