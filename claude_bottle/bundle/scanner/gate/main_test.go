package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
