// claude-bottle-boot: the bundle's entrypoint, and what must be there before anything else runs. The
// agent starts at the same time as the bundle and waits only for the session CA's certificate and
// the proxy port (gate/main.go), so both come first, within milliseconds, before the supervisor's
// Python has even started: Go makes an ECDSA P-256 CA in about one (mitmproxy's RSA-2048 took 300),
// and the port is bound here and inherited, down to mitmdump, as $CLAUDE_BOTTLE_LISTEN_FD.
//
//	claude-bottle-boot CONFDIR SHARED_CERT PORT -- COMMAND [ARG...]     (PORT 0: bind nothing)
//
// CONFDIR gets mitmproxy's files (mitmproxy-ca.pem: key and certificate, 0600; mitmproxy-ca-cert.pem:
// the certificate), which mitmdump loads instead of making its own; SHARED_CERT gets the certificate
// for the agent. An existing CA is kept, and shared again. The extensions are mitmproxy's own (its
// create_ca). Then it becomes COMMAND (exec), the supervisor. If the CA or the port fails, it says so
// and goes on: the supervisor tries both again and refuses to start without them.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

const validDays = 397 // a session CA outlives no session; mitmproxy's own lasts ten years

func writeFile(path string, data []byte, mode os.FileMode) error {
	partial := path + ".partial"
	if err := os.WriteFile(partial, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(partial, mode); err != nil { // WriteFile's mode is cut by the umask
		return err
	}
	return os.Rename(partial, path) // whole or not at all: the gate waits for the file to exist
}

func makeCA() (keyPEM, certPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	name := pkix.Name{CommonName: "claude-bottle session CA", Organization: []string{"claude-bottle"}}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      name,
		Issuer:       name,
		// mitmproxy's allowance for clocks that disagree (a microVM's, a cluster node's)
		NotBefore:             now.Add(-48 * time.Hour),
		NotAfter:              now.Add(validDays * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// SubjectKeyId: left out, so Go derives it from the key as RFC 5280 says (CAs only)
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return keyPEM, certPEM, nil
}

func run(confdir, shared string) error {
	keyFile := filepath.Join(confdir, "mitmproxy-ca.pem")
	certFile := filepath.Join(confdir, "mitmproxy-ca-cert.pem")
	if _, err := os.Stat(keyFile); os.IsNotExist(err) {
		keyPEM, certPEM, err := makeCA()
		if err != nil {
			return err
		}
		if err := os.MkdirAll(confdir, 0o700); err != nil {
			return err
		}
		if err := writeFile(certFile, certPEM, 0o644); err != nil {
			return err
		}
		if err := writeFile(keyFile, append(keyPEM, certPEM...), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "claude-bottle-boot: made the session CA (ECDSA P-256) in %s\n", confdir)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return err
	}
	if block, _ := pem.Decode(certPEM); block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("%s holds no certificate", certFile)
	}
	return writeFile(shared, certPEM, 0o444)
}

// listen binds the agent-facing port on every IPv4 address, for COMMAND to inherit (no close-on-exec).
func listen(port int) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port}); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if err := syscall.Listen(fd, 1024); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

func main() {
	args := os.Args[1:]
	port := -1
	if len(args) >= 5 && args[3] == "--" {
		if n, err := strconv.Atoi(args[2]); err == nil {
			port = n
		}
	}
	if port < 0 || port > 65535 { // 0: the CA only (the supervisor's second try)
		fmt.Fprintln(os.Stderr, "usage: claude-bottle-boot CONFDIR SHARED_CERT PORT -- COMMAND [ARG...]")
		os.Exit(2)
	}
	if err := run(args[0], args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "claude-bottle-boot: %s\n", err)
	}
	if port == 0 {
		// nothing to bind
	} else if fd, err := listen(port); err != nil {
		fmt.Fprintf(os.Stderr, "claude-bottle-boot: binding port %d: %s\n", port, err)
	} else {
		os.Setenv("CLAUDE_BOTTLE_LISTEN_FD", strconv.Itoa(fd))
	}
	path, err := exec.LookPath(args[4])
	if err == nil {
		err = syscall.Exec(path, args[4:], os.Environ())
	}
	fmt.Fprintf(os.Stderr, "claude-bottle-boot: exec %s: %s\n", args[4], err)
	os.Exit(127)
}
