package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kamera-id/idp/idp/testenv"
)

// cli runs the idp command in-process against the configured store.
func cli(t *testing.T, stdin string, args ...string) (map[string]any, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &out)
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if out.Len() > 0 {
		if jerr := json.Unmarshal(out.Bytes(), &v); jerr != nil {
			t.Fatalf("%v: output is not JSON: %q", args, out.String())
		}
	}
	return v, nil
}

func TestCLI(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		t.Setenv("IDP_DATABASE_URL", db.URL)
		t.Setenv("IDP_SECRET_KEY", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)))
		t.Setenv("IDP_ARGON2_MEMORY_KIB", "8192")
		t.Setenv("IDP_ARGON2_ITERATIONS", "1")
		if _, err := cli(t, "", "migrate"); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		u, err := cli(t, "a-long-password\n", "user", "create", "--email", "Ken@Example.com", "--name", "Ken", "--password-stdin")
		if err != nil || u["email"] != "Ken@Example.com" || u["id"] == "" || strings.Contains(u["id"].(string), "@") {
			t.Fatalf("user create = %v, %v", u, err)
		}
		shown, err := cli(t, "", "user", "show", "--email", "KEN@example.com")
		if err != nil || shown["id"] != u["id"] || shown["name"] != "Ken" || shown["mfa"] != false || shown["disabled"] != false ||
			shown["email_verified"] != false || shown["created_at"] == nil || strings.Contains(fmt.Sprint(shown), "argon2") {
			t.Fatalf("user show = %v, %v", shown, err)
		}
		for _, step := range []struct {
			cmd  string
			want bool
		}{{"disable", true}, {"disable", true}, {"enable", false}, {"enable", false}} {
			got, err := cli(t, "", "user", step.cmd, "--email", "ken@example.com")
			if err != nil || got["disabled"] != step.want || got["id"] != u["id"] {
				t.Fatalf("user %s = %v, %v; want disabled %v", step.cmd, got, err, step.want)
			}
		}
		if got, err := cli(t, "", "user", "reset-mfa", "--email", "KEN@example.com"); err != nil || got["reset"] != false ||
			got["mfa"] != false || got["id"] != u["id"] {
			t.Fatalf("reset-mfa without 2FA = %v, %v; want nothing done and exit 0", got, err)
		}
		other, err := cli(t, "another-long-password\n", "user", "create", "--email", "gone@example.com", "--password-stdin")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := cli(t, "", "user", "delete", "--email", "GONE@example.com"); err != nil || got["deleted"] != true || got["id"] != other["id"] {
			t.Fatalf("user delete = %v, %v", got, err)
		}
		for name, args := range map[string][]string{
			"delete a deleted user":       {"user", "delete", "--email", "gone@example.com"},
			"delete without --email":      {"user", "delete"},
			"disable unknown user":        {"user", "disable", "--email", "nobody@example.com"},
			"show unknown user":           {"user", "show", "--email", "nobody@example.com"},
			"enable without --email":      {"user", "enable"},
			"duplicate e-mail (any case)": {"user", "create", "--email", "ken@example.com", "--password-stdin"},
			"short password":              {"user", "create", "--email", "b@example.com", "--password-stdin"},
			"no --password-stdin":         {"user", "create", "--email", "c@example.com"},
			"bad redirect URI":            {"client", "create", "--id", "x", "--name", "X", "--redirect-uri", "http://evil.example/cb"},
			"no redirect URI":             {"client", "create", "--id", "x", "--name", "X"},
			"unknown command":             {"frobnicate"},
			"reset-mfa unknown user":      {"user", "reset-mfa", "--email", "nobody@example.com"},
			// Text a terminal, a page or PostgreSQL would not take as it is.
			"client id with a control character": {"client", "create", "--id", "c\x01x", "--name", "X", "--redirect-uri", "https://viewer.example/cb"},
			"client id not ASCII":                {"client", "create", "--id", "ビューア", "--name", "X", "--redirect-uri", "https://viewer.example/cb"},
			"client name with an escape":         {"client", "create", "--id", "x", "--name", "N\x1b[2Jame", "--redirect-uri", "https://viewer.example/cb"},
			"user name with a line break":        {"user", "create", "--email", "n@example.com", "--name", "evil\nname", "--password-stdin"},
			"user name not UTF-8":                {"user", "create", "--email", "n@example.com", "--name", "\xff", "--password-stdin"},
			"client id not UTF-8":                {"client", "delete", "--id", "\xff"},
			"redirect URI not UTF-8":             {"client", "create", "--id", "x", "--name", "X", "--redirect-uri", "https://viewer.example/cb\xff"},
		} {
			stdin := "short\n"
			if name == "duplicate e-mail (any case)" || strings.HasPrefix(name, "user name") {
				stdin = "another-long-password\n"
			}
			if _, err := cli(t, stdin, args...); err == nil || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "SQLSTATE") {
				t.Errorf("%s: error %v, want one line of our own", name, err)
			}
		}
		c, err := cli(t, "", "client", "create", "--id", "viewer", "--name", "Viewer",
			"--redirect-uri", "https://viewer.example/cb", "--redirect-uri", "http://localhost:9090/callback", "--first-party")
		if err != nil || c["client_id"] != "viewer" || len(c["client_secret"].(string)) < 43 {
			t.Fatalf("client create = %v, %v", c, err)
		}
		if _, err := cli(t, "", "client", "create", "--id", "viewer", "--name", "Again", "--redirect-uri", "https://viewer.example/cb"); err == nil {
			t.Error("duplicate client id accepted")
		}
		pub, err := cli(t, "", "client", "create", "--id", "spa", "--name", "SPA", "--redirect-uri", "https://spa.example/cb", "--public")
		if err != nil || pub["client_secret"] != nil {
			t.Fatalf("public client create = %v, %v", pub, err)
		}
		// The clients: listed without secrets; a new secret for the
		// confidential one only; a deleted one is gone.
		var listed bytes.Buffer
		if err := run(context.Background(), []string{"client", "list"}, strings.NewReader(""), &listed); err != nil {
			t.Fatalf("client list: %v", err)
		}
		var list []map[string]any
		if err := json.Unmarshal(listed.Bytes(), &list); err != nil || len(list) != 2 ||
			list[0]["client_id"] != "spa" || list[1]["client_id"] != "viewer" || list[1]["first_party"] != true ||
			len(list[1]["redirect_uris"].([]any)) != 2 || strings.Contains(listed.String(), "secret") {
			t.Fatalf("client list = %s (%v)", listed.String(), err)
		}
		updated, err := cli(t, "", "client", "update", "--id", "viewer", "--name", "Viewer 2",
			"--redirect-uri", "https://viewer.example/cb2", "--first-party=false")
		if err != nil || updated["name"] != "Viewer 2" || updated["first_party"] != false ||
			len(updated["redirect_uris"].([]any)) != 1 || updated["redirect_uris"].([]any)[0] != "https://viewer.example/cb2" {
			t.Fatalf("client update = %v, %v", updated, err)
		}
		// A client made whose answer cannot be written (a full disk): the
		// error says it was made, and how to get a secret again.
		err = run(context.Background(), []string{"client", "create", "--id", "unseen", "--name", "U", "--redirect-uri", "https://u.example/cb"},
			strings.NewReader(""), failingWriter{})
		if err == nil || !strings.Contains(err.Error(), "done, but") || !strings.Contains(err.Error(), "rotate-secret") || strings.Contains(err.Error(), "\n") {
			t.Errorf("client create with its output lost: %v", err)
		}
		if got, err := cli(t, "", "client", "rotate-secret", "--id", "unseen"); err != nil || got["client_secret"] == nil {
			t.Errorf("rotate-secret of the client whose output was lost: %v, %v", got, err)
		}
		err = run(context.Background(), []string{"client", "create", "--id", "unseen-pub", "--name", "U", "--redirect-uri", "https://u.example/cb", "--public"},
			strings.NewReader(""), failingWriter{})
		if err == nil || !strings.Contains(err.Error(), "done, but") || strings.Contains(err.Error(), "secret") {
			t.Errorf("public client create with its output lost: %v, want no word of a secret", err)
		}
		// A post-logout URI registered, then taken off: '' empties the list.
		for _, uri := range []string{"https://viewer.example/bye", ""} {
			updated, err := cli(t, "", "client", "update", "--id", "viewer", "--post-logout-redirect-uri", uri)
			list, _ := updated["post_logout_redirect_uris"].([]any)
			if err != nil || (uri == "") != (len(list) == 0) {
				t.Fatalf("client update --post-logout-redirect-uri %q = %v, %v", uri, updated, err)
			}
		}
		kept, err := cli(t, "", "client", "rotate-secret", "--id", "viewer", "--keep-old", "24h")
		if err != nil || kept["old_secret_until"] == nil || kept["client_secret"] == c["client_secret"] {
			t.Fatalf("client rotate-secret --keep-old 24h = %v, %v", kept, err)
		}
		rotated, err := cli(t, "", "client", "rotate-secret", "--id", "viewer")
		if err != nil || rotated["client_id"] != "viewer" || len(rotated["client_secret"].(string)) < 43 ||
			rotated["client_secret"] == c["client_secret"] || rotated["old_secret_until"] != nil {
			t.Fatalf("client rotate-secret = %v, %v (was %v)", rotated, err, c["client_secret"])
		}
		if _, err := cli(t, "", "client", "delete", "--id", "spa"); err != nil {
			t.Fatalf("client delete: %v", err)
		}
		for name, args := range map[string][]string{
			"rotate-secret of a public client": {"client", "rotate-secret", "--id", "spa-2"},
			"rotate-secret of no client":       {"client", "rotate-secret", "--id", "nope"},
			"rotate-secret without --id":       {"client", "rotate-secret"},
			"rotate-secret keeping too long":   {"client", "rotate-secret", "--id", "viewer", "--keep-old", "721h"},
			"rotate-secret keeping < 0":        {"client", "rotate-secret", "--id", "viewer", "--keep-old", "-1s"},
			"delete of a deleted client":       {"client", "delete", "--id", "spa"},
			"list with an argument":            {"client", "list", "extra"},
			"update with nothing to change":    {"client", "update", "--id", "viewer"},
			"update of no client":              {"client", "update", "--id", "nope", "--name", "X"},
			"update to a bad redirect URI":     {"client", "update", "--id", "viewer", "--redirect-uri", "http://evil.example/cb"},
			"update to an empty name":          {"client", "update", "--id", "viewer", "--name", " "},
			"update to no redirect URI":        {"client", "update", "--id", "viewer", "--redirect-uri", ""},
			"update with a bad boolean":        {"client", "update", "--id", "viewer", "--first-party=maybe"},
		} {
			if name == "rotate-secret of a public client" {
				if _, err := cli(t, "", "client", "create", "--id", "spa-2", "--name", "SPA", "--redirect-uri", "https://spa.example/cb", "--public"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := cli(t, "", args...); err == nil || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: error %v, want one line", name, err)
			}
		}

		k1, err := cli(t, "", "keys", "rotate")
		if err != nil || k1["kid"] == "" {
			t.Fatalf("keys rotate = %v, %v", k1, err)
		}
		k2, _ := cli(t, "", "keys", "rotate")
		if k2["kid"] == k1["kid"] {
			t.Fatal("keys rotate did not make a new key")
		}
		t.Setenv("IDP_SIGNING_ALG", "ES256")
		if _, err := cli(t, "", "keys", "rotate"); err == nil || !strings.Contains(err.Error(), "(RS256, not ES256)") || strings.Contains(err.Error(), "\n") {
			t.Errorf("keys rotate with another IDP_SIGNING_ALG: error %v, want one line naming both", err)
		}
	})
}

// TestUnmigratedPostgres: on PostgreSQL only `idp migrate` changes the
// schema; other commands refuse an old one with a one-line hint.
func TestUnmigratedPostgres(t *testing.T) {
	db := testenv.Postgres(t)
	t.Setenv("IDP_DATABASE_URL", db.URL)
	t.Setenv("IDP_SECRET_KEY", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)))
	_, err := cli(t, "", "keys", "rotate")
	if err == nil || !strings.Contains(err.Error(), "idp migrate") {
		t.Fatalf("keys rotate on an empty schema: %v", err)
	}
	if _, err := cli(t, "", "migrate"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "", "keys", "rotate"); err != nil {
		t.Fatalf("after migrate: %v", err)
	}
}

// TestMissingKeyIsOneLineError: the embedded store makes the key file it
// is given on first use; once the database holds what that key sealed, a
// missing (or malformed) key file is a one-line error naming it.
func TestMissingKeyIsOneLineError(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "master.key")
	t.Setenv("IDP_DATABASE_URL", "sqlite://"+filepath.Join(dir, "idp.db"))
	t.Setenv("IDP_SECRET_KEY_FILE", keyFile)
	if _, err := cli(t, "", "keys", "rotate"); err != nil {
		t.Fatalf("first use, the key file to be made: %v", err)
	}
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	_, err := cli(t, "", "keys", "rotate")
	if err == nil || strings.Contains(oneLine(err), "\n") || !strings.Contains(err.Error(), keyFile) {
		t.Fatalf("missing key file: %v", err)
	}
	if err := os.WriteFile(keyFile, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = cli(t, "", "keys", "rotate")
	if err == nil || strings.Contains(oneLine(err), "\n") || !strings.Contains(err.Error(), keyFile) {
		t.Fatalf("malformed key file: %v", err)
	}
}

// failingWriter fails every write, as stdout on a full disk does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// TestFlagsText: a flag's value must be UTF-8 (ids, addresses, names and
// URIs go to the store), but a file name may be any bytes.
func TestFlagsText(t *testing.T) {
	define := func(fs *flag.FlagSet) {
		fs.String("id", "", "")
		fs.String("client-file", "", "")
	}
	if err := flags("x", []string{"--id", "\xff"}, define); err == nil {
		t.Error("an id that is not UTF-8 was taken")
	}
	if err := flags("x", []string{"--client-file", "/tmp/dir\xff/client.json"}, define); err != nil {
		t.Errorf("a file name that is not UTF-8: %v", err)
	}
}

// TestNewStoreWarned: an administrative command that finds no embedded
// store where the configuration puts it (run in another directory than
// the server, say) makes one and warns with its absolute path; on a store
// that exists, it says nothing. demo-setup, which makes the newcomer's
// first store, does not warn.
func TestNewStoreWarned(t *testing.T) {
	var log bytes.Buffer
	logOutput = &log
	t.Cleanup(func() { logOutput = os.Stderr })
	t.Chdir(t.TempDir())
	t.Setenv("IDP_DATABASE_URL", "sqlite://./elsewhere/idp.db")
	t.Setenv("IDP_SECRET_KEY", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)))
	abs, err := filepath.Abs("elsewhere/idp.db")
	if err != nil {
		t.Fatal(err)
	}
	list := func() {
		t.Helper()
		if err := run(t.Context(), []string{"client", "list"}, strings.NewReader(""), io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	list()
	if got := log.String(); !strings.Contains(got, "a new one was made") || !strings.Contains(got, strconv.Quote(abs)) {
		t.Fatalf("a store made by an admin command: log %q, want a warning naming %s", got, abs)
	}
	log.Reset()
	list()
	if log.Len() != 0 {
		t.Fatalf("a store that exists: log %q, want nothing", log.String())
	}
	t.Setenv("IDP_DATABASE_URL", "sqlite://./demo/idp.db")
	if err := run(t.Context(), []string{"demo-setup", "--client-file", "demo/client.json"}, strings.NewReader(""), io.Discard); err != nil {
		t.Fatal(err)
	}
	if log.Len() != 0 {
		t.Fatalf("demo-setup's first store: log %q, want nothing", log.String())
	}
}

// TestFailureIsOneLine: a failed command writes one line to stderr (the
// contract), with the warnings it logged folded into it; a command that
// succeeds writes its warnings as logged. idp without a command is one
// line too.
func TestFailureIsOneLine(t *testing.T) {
	t.Cleanup(func() { logOutput, logHold = os.Stderr, nil })
	t.Chdir(t.TempDir())
	t.Setenv("IDP_ARGON2_MEMORY_KIB", "8192")
	t.Setenv("IDP_ARGON2_ITERATIONS", "1")
	idp := func(stdin string, args ...string) (int, string) {
		var stderr bytes.Buffer
		return runMain(t.Context(), args, strings.NewReader(stdin), io.Discard, &stderr), stderr.String()
	}
	create := []string{"user", "create", "--email", "ken@example.com", "--password-stdin"}
	if rc, stderr := idp("a-long-password\n", create...); rc != 0 {
		t.Fatalf("user create: %d %q", rc, stderr)
	}
	if err := os.Chmod("data/secret.key", 0o644); err != nil { // a key file others may read: a warning
		t.Fatal(err)
	}
	rc, stderr := idp("a-long-password\n", create...)
	if rc == 0 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "idp: user create: ") ||
		!strings.Contains(stderr, "already exists; warn: the master key file is readable") {
		t.Errorf("a failure after a warning: %d %q, want one line with the warning folded in", rc, stderr)
	}
	rc, stderr = idp("", "client", "list")
	if rc != 0 || !strings.HasPrefix(stderr, `{"time":`) || !strings.Contains(stderr, `"level":"WARN"`) {
		t.Errorf("a success after a warning: %d %q, want the warning as a JSON line", rc, stderr)
	}
	if rc, stderr = idp(""); rc == 0 || stderr != "idp: no command; see 'idp help'\n" {
		t.Errorf("no command: %d %q, want one line", rc, stderr)
	}
	// serve that cannot start: what it logged before (a setting misspelt,
	// the collector tuned) is folded into the line too.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	t.Setenv("IDP_LISTEN", busy.Addr().String())
	t.Setenv("IDP_LISTNE", "127.0.0.1:1")
	if rc, stderr = idp("", "serve"); rc == 0 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "IDP_LISTNE") {
		t.Errorf("serve that cannot listen: %d %q, want one line with the warning folded in", rc, stderr)
	}
}

// TestFailedCommandMakesNothing: a command whose arguments are wrong
// fails before it opens a store, so where there is none it makes none; one
// that fails on the store it made (nothing to find in a new store) says so
// in its error's line. (Such a store is not removed: another command may
// have made it first and written to it meanwhile.)
func TestFailedCommandMakesNothing(t *testing.T) {
	t.Cleanup(func() { logOutput, logHold = os.Stderr, nil })
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("IDP_DATABASE_URL", "sqlite://./data/db/idp.db")
	t.Setenv("IDP_SECRET_KEY_FILE", "./keys/secret.key")
	for _, args := range [][]string{
		{"user", "create", "--email", "not-an-address", "--password-stdin"},
		{"user", "create", "--email", "ken@example.com", "--name", "a\x1b[31m", "--password-stdin"},
		{"client", "create", "--id", "a", "--name", "A", "--redirect-uri", "https://a.example/cb", "--post-logout-redirect-uri", "nope"},
		{"client", "update", "--id", "a", "--redirect-uri", "http://evil.example/cb"},
	} {
		var stderr bytes.Buffer
		if rc := runMain(t.Context(), args, strings.NewReader("a-long-password\n"), io.Discard, &stderr); rc == 0 {
			t.Fatalf("%v: succeeded", args)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("%v failed (%q) and left %v behind", args, stderr.String(), left)
		}
	}
	var stderr bytes.Buffer
	if rc := runMain(t.Context(), []string{"user", "show", "--email", "nobody@example.com"}, strings.NewReader(""), io.Discard, &stderr); rc == 0 ||
		strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "no embedded store was found") ||
		!strings.Contains(stderr.String(), filepath.Join(dir, "data", "db", "idp.db")) {
		t.Errorf("a command failing on the store it made: %d %q, want one line naming the new store", rc, stderr.String())
	}
}

// TestExitingBeforeStarted: a signal that makes serve exit before it has
// let its records through writes the one line of a failure, with what it
// held folded in (they would be lost with the process); afterwards, a
// record as any other.
func TestExitingBeforeStarted(t *testing.T) {
	var out bytes.Buffer
	logOutput, logHold = &out, &heldLog{}
	t.Cleanup(func() { logOutput, logHold = os.Stderr, nil })
	log := newLogger("info")
	log.Warn("configuration: IDP_LISTNE is not a setting")
	logHold.exiting(log, syscall.SIGINT)
	if got := out.String(); strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, "idp: another signal: exiting at once") ||
		!strings.Contains(got, "IDP_LISTNE") {
		t.Errorf("exiting while held: %q, want one line with the held record folded in", got)
	}
	out.Reset()
	logHold.release(t.Context())
	logHold.exiting(log, syscall.SIGINT)
	if got := out.String(); !strings.HasPrefix(got, `{"time":`) || !strings.Contains(got, "exiting at once") {
		t.Errorf("exiting once released: %q, want a JSON record", got)
	}
}

// TestNoNewStoreClaimedWhenNoneMade: a command that fails before it makes
// the store (a master key file that is no key) does not say it made one.
// (From a review.)
func TestNoNewStoreClaimedWhenNoneMade(t *testing.T) {
	t.Cleanup(func() { logOutput, logHold = os.Stderr, nil })
	t.Chdir(t.TempDir())
	for _, k := range []string{"IDP_DATABASE_URL", "IDP_SECRET_KEY", "IDP_SECRET_KEY_FILE", "IDP_CONFIG"} {
		t.Setenv(k, "") // the defaults: ./data/idp.db and ./data/secret.key
	}
	if err := os.MkdirAll("data", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("data", "secret.key"), []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if rc := runMain(t.Context(), []string{"client", "list"}, strings.NewReader(""), io.Discard, &stderr); rc == 0 {
		t.Fatal("client list with a bad key file: succeeded")
	}
	if _, err := os.Stat(filepath.Join("data", "idp.db")); err == nil || strings.Contains(stderr.String(), "a new one was made") {
		t.Errorf("a failure before the store was made: store made %v, stderr %q; want neither a store nor a word of one", err == nil, stderr.String())
	}
}
