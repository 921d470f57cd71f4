package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zricethezav/gitleaks/v8/detect"
	glregexp "github.com/zricethezav/gitleaks/v8/regexp"
)

// The bundle's own config, next to this module.
const bundleConfig = "../gitleaks.toml"

// Key shapes are split so that no scanner flags this file itself.
var (
	awsKey    = "AKIA" + "QJ7K2M4N5P6R3S2T"
	githubPAT = "ghp_" + "R7mQ2xKp9LzT4vWb8NcY3hJd6FsA1gUe5oXi"
)

// gitleaks counts [extend]s in a package variable and stops extending after two loads in one
// process, so whatever calls run() does it in a fresh process: this test binary, re-run as main.
func TestMain(m *testing.M) {
	if os.Getenv("SCANNER_TEST_RUN_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

func runMain(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SCANNER_TEST_RUN_MAIN=1")
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String()
}

var (
	once   sync.Once
	shared *detect.Detector
)

func detector(t testing.TB) *detect.Detector {
	t.Helper()
	once.Do(func() {
		d, err := loadDetector(bundleConfig)
		if err != nil {
			t.Fatalf("loading %s: %v", bundleConfig, err)
		}
		shared = d
	})
	if shared == nil {
		t.Fatal("the detector did not load")
	}
	return shared
}

func rulesOf(t *testing.T, text string) []string {
	t.Helper()
	rules, err := scan(detector(t), []byte(text), 10*time.Second)
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	return rules
}

func TestBuiltWithGitleaksReleaseRegexEngine(t *testing.T) {
	if glregexp.Version != "github.com/wasilibs/go-re2" {
		t.Fatalf("regexp engine %q: build and test with -tags gore2regex, as the image does", glregexp.Version)
	}
}

func TestFindsKeysAndPassesCleanText(t *testing.T) {
	if got := rulesOf(t, "aws_access_key_id = "+awsKey); fmt.Sprint(got) != "[aws-access-token]" {
		t.Errorf("AWS key: got %v", got)
	}
	if got := rulesOf(t, "token="+githubPAT); fmt.Sprint(got) != "[github-pat]" {
		t.Errorf("GitHub token: got %v", got)
	}
	if got := rulesOf(t, "def add(a, b):\n    return a + b\n"); len(got) != 0 {
		t.Errorf("clean text: got %v", got)
	}
	if got := rulesOf(t, ""); len(got) != 0 {
		t.Errorf("empty text: got %v", got)
	}
}

func TestAllowCommentsDoNotSuppress(t *testing.T) {
	if got := rulesOf(t, "aws_access_key_id = "+awsKey+"  # gitleaks:"+"allow"); len(got) == 0 {
		t.Error("a gitleaks:allow comment suppressed the finding")
	}
}

func TestBinaryLookingTextIsStillScanned(t *testing.T) {
	// "ustar" at offset 257 makes the text a tar file to gitleaks' file-type check, which then skips it
	// whole when read from a file or stdin; one fragment per request is scanned whatever it looks like.
	text := "https://example.com/upload\n" + strings.Repeat("x", 257-len("https://example.com/upload\n")) +
		"ustar\x0000" + "\naws_access_key_id = " + awsKey + "\n"
	if got := rulesOf(t, text); fmt.Sprint(got) != "[aws-access-token]" {
		t.Errorf("got %v", got)
	}
}

func TestFindingsHoldNoSecret(t *testing.T) {
	found := detector(t).DetectString("aws_access_key_id = " + awsKey)
	if len(found) == 0 {
		t.Fatal("nothing found")
	}
	for _, f := range found {
		if strings.Contains(f.Secret+f.Match+f.Line, awsKey) {
			t.Error("a finding kept the secret despite Redact")
		}
	}
}

func TestBadConfigsFailToLoad(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[[rules]]\nid = \"x\"\nregex = '''(unclosed'''\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.toml")
	if err := os.WriteFile(empty, []byte("title = \"nothing\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing.toml"), bad, empty} {
		code, _ := runMain(t, "", "-config", path, "-socket", filepath.Join(dir, "s"))
		if code != 3 {
			t.Errorf("%s: exit %d, want 3", path, code)
		}
		if _, err := os.Stat(filepath.Join(dir, "s")); err == nil {
			t.Errorf("%s: the socket was created", path)
		}
	}
}

func TestOneShot(t *testing.T) {
	if code, out := runMain(t, "k = "+awsKey, "-config", bundleConfig, "-stdin"); code != leakExit ||
		strings.TrimSpace(out) != `{"rules":["aws-access-token"]}` {
		t.Errorf("leak: exit %d, %q", code, out)
	}
	if code, out := runMain(t, "hello", "-config", bundleConfig, "-stdin"); code != 0 ||
		strings.TrimSpace(out) != `{"rules":[]}` {
		t.Errorf("clean: exit %d, %q", code, out)
	}
	if code, _ := runMain(t, "", "-stdin"); code != 2 {
		t.Errorf("no config: exit %d, want 2", code)
	}
}

// ---------- over the socket ----------

func startServer(t *testing.T, maxBytes int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "scanner.sock")
	ln, err := listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	srv := &server{det: detector(t), maxBytes: maxBytes, timeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.serve(ln) }()
	t.Cleanup(func() {
		ln.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
		srv.wg.Wait()
		if _, err := os.Stat(path); err == nil {
			t.Error("the socket was left behind")
		}
	})
	return path
}

func exchange(conn net.Conn, payload []byte) (map[string]any, error) {
	if err := writeFrame(conn, payload); err != nil {
		return nil, err
	}
	var head [4]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(head[:]))
	if _, err := io.ReadFull(conn, body); err != nil {
		return nil, err
	}
	var reply map[string]any
	if err := json.Unmarshal(body, &reply); err != nil {
		return nil, fmt.Errorf("reply %q: %v", body, err)
	}
	return reply, nil
}

func request(t *testing.T, conn net.Conn, payload []byte) map[string]any {
	t.Helper()
	reply, err := exchange(conn, payload)
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

func TestSocketPingScanAndReuse(t *testing.T) {
	path := startServer(t, 1<<20)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; i < 3; i++ { // one connection, many requests
		if got := fmt.Sprint(request(t, conn, nil)); got != "map[rules:[]]" {
			t.Errorf("ping: %s", got)
		}
		if got := fmt.Sprint(request(t, conn, []byte("id = "+awsKey))); got != "map[rules:[aws-access-token]]" {
			t.Errorf("scan: %s", got)
		}
	}
}

func TestSocketRefusesOversizeRequests(t *testing.T) {
	path := startServer(t, 100)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reply := request(t, conn, bytes.Repeat([]byte("a"), 101))
	if msg, _ := reply["error"].(string); !strings.Contains(msg, "over the scanner's 100-byte limit") {
		t.Errorf("got %v", reply)
	}
	if got := fmt.Sprint(request(t, conn, []byte("next"))); got != "map[rules:[]]" {
		t.Errorf("the connection was not usable after the refusal: %s", got)
	}
}

func TestSocketServesConnectionsConcurrently(t *testing.T) {
	path := startServer(t, 1<<20)
	var wg sync.WaitGroup
	errs := make(chan string, 32*20+32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			conn, err := net.Dial("unix", path)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer conn.Close()
			for j := 0; j < 20; j++ {
				text, want := fmt.Sprintf("line %d %d\n", i, j), "map[rules:[]]"
				if (i+j)%4 == 0 {
					text, want = text+"aws = "+awsKey, "map[rules:[aws-access-token]]"
				} else if (i+j)%4 == 3 { // found on a decoding pass: the engine's other code path
					text, want = text+"blob "+base64.StdEncoding.EncodeToString([]byte("aws_access_key_id = "+awsKey)),
						"map[rules:[aws-access-token]]"
				} else if (i+j)%4 == 1 {
					text, want = text+"tok "+githubPAT, "map[rules:[github-pat]]"
				}
				reply, err := exchange(conn, []byte(text))
				if got := fmt.Sprint(reply); err != nil || got != want {
					errs <- fmt.Sprintf("%d/%d: got %s (%v), want %s", i, j, got, err, want)
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestSecondScannerRefusesALiveSocket(t *testing.T) {
	path := startServer(t, 100)
	if _, err := listen(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("got %v", err)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the file stays, nobody answers
	ln2, err := listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ln2.Close()
	notSocket := filepath.Join(t.TempDir(), "f")
	_ = os.WriteFile(notSocket, nil, 0o600)
	if _, err := listen(notSocket); err == nil {
		t.Error("a regular file was replaced")
	}
}

// go test -bench . : what one scan of a small request costs inside the scanner.
func BenchmarkScan1KB(b *testing.B) {
	d := detector(b)
	text := []byte("https://api.example.com/v1/messages\ncontent-type: application/json\n\n" +
		strings.Repeat(`{"role":"user","content":"hello there, how are you today?"},`, 16))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := scan(d, text, 10*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}
