package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadyWaitsForTheCAThenTheProxy(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	listener.Close()
	if missing := ready(addr, ca); !strings.Contains(missing, "CA certificate") {
		t.Fatalf("without the CA: %q", missing)
	}
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if missing := ready(addr, ca); !strings.Contains(missing, "connection to the bundle's proxy") {
		t.Fatalf("without the proxy: %q", missing)
	}
	listener, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	if missing := ready(addr, ca); missing != "" {
		t.Fatalf("with both: %q", missing)
	}
}

func TestReadyDialsAUnixSocketByPath(t *testing.T) {
	dir := t.TempDir()
	ca, sock := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "proxy.sock")
	os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o444)
	if missing := ready(sock, ca); !strings.Contains(missing, "proxy "+sock) {
		t.Fatalf("without the socket: %q", missing)
	}
	listener, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	if missing := ready(sock, ca); missing != "" {
		t.Fatalf("with both: %q", missing)
	}
}

// The relay as the agent uses it: a TCP port on loopback, carried to a Unix socket, bytes intact both
// ways, and the client's half-close passed on (an HTTP/1.0 client, or `nc -N`, ends its request so).
func TestTheRelayCarriesBothWaysAndPassesHalfCloses(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "proxy.sock")
	upstream, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer upstream.Close()
	go func() {
		for {
			conn, err := upstream.Accept()
			if err != nil {
				return
			}
			go func() { // echo everything back, upper-cased, after the client's half-close
				defer conn.Close()
				data, _ := io.ReadAll(conn)
				conn.Write([]byte(strings.ToUpper(string(data))))
			}()
		}
	}()
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	go serveRelay(front, sock)
	for i := 0; i < 3; i++ {
		conn, err := net.Dial("tcp", front.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		payload := strings.Repeat("connect example.com:443 ", 5000)
		conn.Write([]byte(payload))
		conn.(*net.TCPConn).CloseWrite()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || string(got) != strings.ToUpper(payload) {
			t.Fatalf("round %d: %d bytes back, want %d (%v)", i, len(got), len(payload), err)
		}
	}
}

func TestTheRelayClosesWhenTheBundleIsGone(t *testing.T) {
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	go serveRelay(front, filepath.Join(t.TempDir(), "absent.sock"))
	conn, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("want the connection closed (fail closed), got %d bytes, %v", n, err)
	}
}
