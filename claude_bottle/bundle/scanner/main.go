// claude-bottle-scanner: gitleaks' own detect engine, with the rules loaded once, serving scans over
// a Unix socket, so that a scan costs what gitleaks' matching costs instead of a process that loads
// every rule again.
//
// Protocol, on one connection as many times as the client likes: a request is a 4-byte big-endian
// length and that many bytes of text; the reply is a 4-byte big-endian length and a JSON object,
// {"rules": [rule ids, sorted]} (empty: clean) or {"error": "why the text was not scanned"}. An empty
// request is a ping: it is scanned like any other and answers {"rules": []}.
//
// The detector is set up as `gitleaks stdin -c CONFIG --ignore-gitleaks-allow --redact` sets up
// its own (config read with viper and ViperConfig.Translate, allowlists and [extend] included), and
// each request is one fragment: the whole text, never cut into 100 kB chunks and never skipped for
// looking like a binary file, so it finds everything `gitleaks stdin` finds in it, and more.
// Nothing it logs or answers ever holds scanned text or a match: rule ids only.
//
// Built with -tags gore2regex, as gitleaks' own release binaries are: its regexp package then runs
// the rules on RE2 (github.com/wasilibs/go-re2, pure Go through wazero) instead of Go's regexp, ten
// times faster on a small request and the same findings. -version says which engine a binary has.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/viper"
	"github.com/zricethezav/gitleaks/v8/config"
	"github.com/zricethezav/gitleaks/v8/detect"
	"github.com/zricethezav/gitleaks/v8/logging"
	glregexp "github.com/zricethezav/gitleaks/v8/regexp"
)

const (
	version = "1"
	// gitleaks' own defaults for `gitleaks stdin`: --max-decode-depth 5, --max-archive-depth 0.
	maxDecodeDepth = 5
	// Exit code of -stdin when it finds a leak (the addon's `gitleaks stdin --exit-code` too).
	leakExit = 99
)

var ruleIDChars = regexp.MustCompile(`[^A-Za-z0-9_.:-]`)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "claude-bottle-scanner: "+format+"\n", args...)
}

// loadDetector reads the gitleaks config at path the way `gitleaks stdin -c path` does and returns a
// detector that gitleaks:allow comments in the scanned text cannot silence.
func loadDetector(path string) (d *detect.Detector, err error) {
	defer func() { // Translate compiles the rules' regexes with MustCompile: a bad one panics
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("%v", r)
		}
	}()
	// gitleaks logs findings (values included) at trace level from inside the engine: never here.
	logging.Logger = zerolog.Nop()
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	viper.Reset()
	viper.SetConfigType("toml")
	viper.SetConfigFile(path)
	if err := viper.ReadInConfig(); err != nil {
		return nil, err
	}
	var vc config.ViperConfig
	if err := viper.Unmarshal(&vc); err != nil {
		return nil, err
	}
	cfg, err := vc.Translate()
	if err != nil {
		return nil, err
	}
	cfg.Path = path
	if len(cfg.Rules) == 0 {
		return nil, errors.New("the config has no rules")
	}
	d = detect.NewDetector(cfg)
	d.MaxDecodeDepth = maxDecodeDepth
	d.MaxArchiveDepth = 0
	d.IgnoreGitleaksAllow = true // --ignore-gitleaks-allow
	d.Redact = 100               // --redact: findings never hold the secret, even in memory
	d.Config.Path = path
	return d, nil
}

// scan returns the sorted rule ids gitleaks finds in data. A scan cut short by the timeout is an
// error, never a partial "clean". Safe to call from many goroutines at once: gitleaks' own `dir`
// and `git` scans share one detector between goroutines the same way.
func scan(d *detect.Detector, data []byte, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	found := d.DetectContext(ctx, detect.Fragment{Raw: string(data)})
	if ctx.Err() != nil {
		return nil, fmt.Errorf("scan timed out after %s", timeout)
	}
	seen := map[string]bool{}
	rules := []string{}
	for _, f := range found {
		id := ruleIDChars.ReplaceAllString(f.RuleID, "")
		if len(id) > 80 {
			id = id[:80]
		}
		if id == "" {
			id = "unnamed-rule"
		}
		if !seen[id] {
			seen[id] = true
			rules = append(rules, id)
		}
	}
	sort.Strings(rules)
	return rules, nil
}

func replyJSON(rules []string, err error) []byte {
	var out []byte
	if err != nil {
		out, _ = json.Marshal(map[string]string{"error": err.Error()})
	} else {
		out, _ = json.Marshal(map[string][]string{"rules": rules})
	}
	return out
}

// selfTest fails unless the loaded rules find an AWS key, even one marked gitleaks:allow: a config
// that loads but finds nothing must stop the scanner, not pass every request as clean.
func selfTest(d *detect.Detector) error {
	key := "AKIA" + "QJ7K2M4N5P6R3S2T" // split so that no scanner flags this file
	for _, text := range []string{"aws_access_key_id = " + key, "aws_access_key_id = " + key + " # gitleaks:" + "allow"} {
		rules, err := scan(d, []byte(text), 10*time.Second)
		if err != nil {
			return err
		}
		if len(rules) == 0 {
			return errors.New("the loaded rules do not find an AWS access key (is gitleaks:allow honoured?)")
		}
	}
	return nil
}

type server struct {
	det      *detect.Detector
	maxBytes int
	timeout  time.Duration
	wg       sync.WaitGroup
}

func (s *server) serve(ln net.Listener) error {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(conn)
		}()
	}
}

// handle answers the requests on one connection until the client closes it or breaks the framing.
func (s *server) handle(conn net.Conn) {
	defer conn.Close()
	var head [4]byte
	for {
		_ = conn.SetReadDeadline(time.Time{}) // an idle pooled connection may wait as long as it likes
		if _, err := io.ReadFull(conn, head[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(head[:])
		deadline := time.Now().Add(s.timeout)
		_ = conn.SetDeadline(deadline)
		if int64(n) > int64(s.maxBytes) {
			// Read past it unkept (hanging up on unread data would reset the connection before the
			// client reads why), answer, and go on with the next request.
			if _, err := io.CopyN(io.Discard, conn, int64(n)); err != nil {
				return
			}
			if writeFrame(conn, replyJSON(nil, fmt.Errorf("request of %d bytes is over the scanner's %d-byte limit", n, s.maxBytes))) != nil {
				return
			}
			continue
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(conn, data); err != nil {
			return
		}
		rules, err := scan(s.det, data, time.Until(deadline))
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second)) // a timed-out scan still says so
		if writeFrame(conn, replyJSON(rules, err)) != nil {
			return
		}
	}
}

func writeFrame(w io.Writer, payload []byte) error {
	frame := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(frame, uint32(len(payload)))
	copy(frame[4:], payload)
	_, err := w.Write(frame)
	return err
}

// listen binds the Unix socket at path, readable by this user alone. A socket left behind by a
// scanner that died is replaced; one that still answers is not.
func listen(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s is in use by a running scanner", path)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return ln, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout))
}

func run(args []string, stdin io.Reader, stdout io.Writer) int {
	fs := flag.NewFlagSet("claude-bottle-scanner", flag.ContinueOnError)
	socketPath := fs.String("socket", "", "serve scans on this Unix socket")
	configPath := fs.String("config", "", "the gitleaks config (TOML) to load, as `gitleaks -c`")
	timeout := fs.Duration("timeout", 10*time.Second, "longest a request may take to arrive and be scanned")
	maxBytes := fs.Int("max-bytes", 16<<20, "largest request accepted")
	oneShot := fs.Bool("stdin", false, "scan stdin once, print the reply, exit 99 on a leak (0 clean, 1 error)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "claude-bottle-scanner %s (gitleaks v8.30.1 detect engine, regexp %s)\n", version, glregexp.Version)
		return 0
	}
	if *configPath == "" || (*socketPath == "" && !*oneShot) || fs.NArg() != 0 {
		logf("usage: claude-bottle-scanner -config GITLEAKS.toml (-socket PATH | -stdin)")
		return 2
	}
	started := time.Now()
	det, err := loadDetector(*configPath)
	if err != nil {
		logf("cannot load the gitleaks config %s: %v", *configPath, err)
		return 3
	}
	if err := selfTest(det); err != nil {
		logf("the gitleaks config %s fails its self-test: %v", *configPath, err)
		return 3
	}
	if *oneShot {
		data, err := io.ReadAll(io.LimitReader(stdin, int64(*maxBytes)+1))
		if err == nil && len(data) > *maxBytes {
			err = fmt.Errorf("input is over the %d-byte limit", *maxBytes)
		}
		var rules []string
		if err == nil {
			rules, err = scan(det, data, *timeout)
		}
		fmt.Fprintf(stdout, "%s\n", replyJSON(rules, err))
		switch {
		case err != nil:
			return 1
		case len(rules) > 0:
			return leakExit
		}
		return 0
	}
	ln, err := listen(*socketPath)
	if err != nil {
		logf("cannot listen on %s: %v", *socketPath, err)
		return 4
	}
	srv := &server{det: det, maxBytes: *maxBytes, timeout: *timeout}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-stop
		logf("signal %v: stopping", sig)
		ln.Close()
	}()
	logf("ready on %s: %d rules from %s (regexp %s), loaded in %s", *socketPath, len(det.Config.Rules),
		*configPath, glregexp.Version, time.Since(started).Round(time.Millisecond))
	if err := srv.serve(ln); err != nil {
		logf("accept failed: %v", err)
		return 1
	}
	return 0
}
