// claude-bottle-boot: the bundle's entrypoint, and what must be there before anything else runs. The
// agent starts at the same time as the bundle and waits only for the session CA's certificate and
// the proxy (gate/main.go), so both come first, within milliseconds, before the supervisor's Python
// has even started: Go makes an ECDSA P-256 CA in about one (mitmproxy's RSA-2048 took 300), and the
// proxy's sockets are bound here and inherited, down to mitmdump, as $CLAUDE_BOTTLE_LISTEN_FD (TCP)
// and $CLAUDE_BOTTLE_UNIX_FD (the Unix socket in the shared volume).
//
//	claude-bottle-boot CONFDIR SHARED_CERT PORT SOCKET -- COMMAND [ARG...]   (PORT 0, SOCKET -: bind nothing)
//
// CONFDIR gets mitmproxy's files (mitmproxy-ca.pem: key and certificate, 0600; mitmproxy-ca-cert.pem:
// the certificate), which mitmdump loads instead of making its own; SHARED_CERT gets the certificate
// for the agent. An existing CA is kept, and shared again. The extensions are mitmproxy's own (its
// create_ca). PORT is bound on $CLAUDE_BOTTLE_PROXY_HOST (an IPv4 address; every address when unset):
// loopback in the Docker runtime, where the agent has no network and comes in through SOCKET, a Unix
// socket in the volume it mounts. Then it becomes COMMAND (exec), the supervisor. If the CA or a
// socket fails, it says so and goes on: the supervisor tries again and refuses to start without them.
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
	"net"
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

// listen binds the agent-facing port on host (every IPv4 address when ""), for COMMAND to inherit (no
// close-on-exec).
func listen(host string, port int) (int, error) {
	addr := &syscall.SockaddrInet4{Port: port}
	if host != "" {
		ip := net.ParseIP(host).To4()
		if ip == nil {
			return -1, fmt.Errorf("%q is not an IPv4 address", host)
		}
		copy(addr.Addr[:], ip)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, bindListen(fd, addr)
}

// listenUnix binds the Unix socket at path, connectable by any uid (the agent runs as the user's),
// for COMMAND to inherit. A socket an earlier start of this container left is replaced.
func listenUnix(path string) (int, error) {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return -1, err
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	if err := bindListen(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		return -1, err
	}
	if err := os.Chmod(path, 0o666); err != nil { // bind's mode is cut by the umask
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

func bindListen(fd int, addr syscall.Sockaddr) error {
	if err := syscall.Bind(fd, addr); err != nil {
		syscall.Close(fd)
		return err
	}
	if err := syscall.Listen(fd, 1024); err != nil {
		syscall.Close(fd)
		return err
	}
	return nil
}

func main() {
	args := os.Args[1:]
	port := -1
	if len(args) >= 6 && args[4] == "--" {
		if n, err := strconv.Atoi(args[2]); err == nil {
			port = n
		}
	}
	if port < 0 || port > 65535 { // 0: the CA only (the supervisor's second try)
		fmt.Fprintln(os.Stderr, "usage: claude-bottle-boot CONFDIR SHARED_CERT PORT SOCKET -- COMMAND [ARG...]")
		os.Exit(2)
	}
	if err := run(args[0], args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "claude-bottle-boot: %s\n", err)
	}
	if port != 0 {
		if fd, err := listen(os.Getenv("CLAUDE_BOTTLE_PROXY_HOST"), port); err != nil {
			fmt.Fprintf(os.Stderr, "claude-bottle-boot: binding port %d: %s\n", port, err)
		} else {
			os.Setenv("CLAUDE_BOTTLE_LISTEN_FD", strconv.Itoa(fd))
		}
	}
	if socket := args[3]; socket != "-" {
		if fd, err := listenUnix(socket); err != nil {
			fmt.Fprintf(os.Stderr, "claude-bottle-boot: binding %s: %s\n", socket, err)
		} else {
			os.Setenv("CLAUDE_BOTTLE_UNIX_FD", strconv.Itoa(fd))
		}
	}
	path, err := exec.LookPath(args[5])
	if err == nil {
		err = syscall.Exec(path, args[5:], os.Environ())
	}
	fmt.Fprintf(os.Stderr, "claude-bottle-boot: exec %s: %s\n", args[5], err)
	os.Exit(127)
}
