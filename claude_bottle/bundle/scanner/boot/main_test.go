package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s holds no certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestTheCAIsMadeOnceWithMitmproxysShapeAndShared(t *testing.T) {
	dir := t.TempDir()
	confdir, shared := filepath.Join(dir, "mitm"), filepath.Join(dir, "ca.pem")
	if err := run(confdir, shared); err != nil {
		t.Fatal(err)
	}
	cert := readCert(t, shared)
	key, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Fatalf("want an ECDSA P-256 key, got %T", cert.PublicKey)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Fatalf("not a CA as mitmproxy makes one: %+v", cert)
	}
	if len(cert.SubjectKeyId) == 0 || cert.CheckSignatureFrom(cert) != nil {
		t.Fatal("want a subject key id and a valid self-signature")
	}
	if time.Since(cert.NotBefore) < 47*time.Hour || time.Until(cert.NotAfter) > validDays*24*time.Hour {
		t.Fatalf("validity %s .. %s", cert.NotBefore, cert.NotAfter)
	}
	for path, want := range map[string]os.FileMode{filepath.Join(confdir, "mitmproxy-ca.pem"): 0o600, shared: 0o444} {
		info, err := os.Stat(path)
		if err != nil || info.Mode().Perm() != want {
			t.Fatalf("%s: mode %v, want %v (%v)", path, info.Mode().Perm(), want, err)
		}
	}
	both, _ := os.ReadFile(filepath.Join(confdir, "mitmproxy-ca.pem"))
	if !strings.Contains(string(both), "EC PRIVATE KEY") || !strings.Contains(string(both), "CERTIFICATE") {
		t.Fatal("mitmproxy-ca.pem must hold the key and the certificate")
	}
	shown, _ := os.ReadFile(shared)
	if strings.Contains(string(shown), "PRIVATE") {
		t.Fatal("the shared file must hold no key")
	}
	// A second run (the supervisor's own) keeps the CA and shares it again.
	os.Remove(shared)
	if err := run(confdir, shared); err != nil {
		t.Fatal(err)
	}
	if !readCert(t, shared).Equal(cert) {
		t.Fatal("a second run made a new CA")
	}
}

func TestThePortIsBoundForTheNextProgram(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	fd, err := listen("127.0.0.1", port)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	survivesExec(t, fd)
	conn, err := net.DialTimeout("tcp", probe.Addr().String(), time.Second)
	if err != nil {
		t.Fatalf("a connection before anyone accepts must wait in the backlog, not fail: %v", err)
	}
	conn.Close()
	if sa, err := syscall.Getsockname(fd); err != nil || sa.(*syscall.SockaddrInet4).Addr != [4]byte{127, 0, 0, 1} {
		t.Fatalf("bound to %v, want loopback only (%v)", sa, err)
	}
	if _, err := listen("bundle", port); err == nil {
		t.Fatal("a host that is not an IPv4 address must be refused")
	}
}

func TestTheUnixSocketIsBoundForAnyUserAndReplacesAnOldOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.sock")
	if err := os.WriteFile(path, nil, 0o600); err != nil { // what a restarted container finds
		t.Fatal(err)
	}
	fd, err := listenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	survivesExec(t, fd)
	if info, err := os.Stat(path); err != nil || info.Mode()&os.ModeSocket == 0 || info.Mode().Perm() != 0o666 {
		t.Fatalf("want a socket any uid can connect to, got %v (%v)", info.Mode(), err)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		t.Fatalf("a connection before anyone accepts must wait in the backlog, not fail: %v", err)
	}
	conn.Close()
}

func survivesExec(t *testing.T, fd int) {
	t.Helper()
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
	if errno != 0 || flags&syscall.FD_CLOEXEC != 0 {
		t.Fatalf("the socket must survive exec (flags %v, %v)", flags, errno)
	}
}
