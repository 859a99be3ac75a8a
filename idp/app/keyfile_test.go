package app

import (
	"bytes"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kamera-id/idp/idp/config"
)

// TestKeyFileMode: a master key file that group or others may read or
// write is logged as a warning naming the file and its mode, and still
// loads (existing deployments keep starting); 0600 and 0400 are quiet, and
// so is a key given in IDP_SECRET_KEY.
func TestKeyFileMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix file modes")
	}
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	path := filepath.Join(t.TempDir(), "secret.key")
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.DatabaseURL, cfg.SecretKeyFile = "postgres://db/idp", path
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{
		{0o600, false}, {0o400, false}, {0o700, false}, {0o611, false},
		{0o640, true}, {0o604, true}, {0o620, true}, {0o602, true}, {0o644, true}, {0o666, true},
	} {
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		k, err := LoadKey(cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
		if err != nil || k == nil {
			t.Fatalf("mode %04o: %v", tc.mode, err)
		}
		out, mode := logs.String(), fmt.Sprintf("%04o", tc.mode)
		warned := strings.Contains(out, `"level":"WARN"`) && strings.Contains(out, "readable or writable by group or others") &&
			strings.Contains(out, `"file":"`+path+`"`) && strings.Contains(out, `"mode":"`+mode+`"`)
		if warned != tc.warn || (!tc.warn && out != "") {
			t.Errorf("mode %s: log %q, want a warning: %v", mode, out, tc.warn)
		}
	}

	cfg.SecretKey = key // the key itself: no file to check
	var logs bytes.Buffer
	if _, err := LoadKey(cfg, slog.New(slog.NewJSONHandler(&logs, nil))); err != nil || logs.Len() != 0 {
		t.Errorf("IDP_SECRET_KEY with a 0666 file named too: %v, log %q", err, logs.String())
	}
}

// TestMissingKeyFileOfUsedDatabase: the embedded store creates its master
// key file on first start (mode 0600), at the default path or the one
// IDP_SECRET_KEY_FILE names, but not for a database that already holds data
// sealed with a key (one copied or restored without its key file): that
// start fails naming the file, and no new file is left in the way. With
// PostgreSQL a missing key file is an error (tested in config and e2e).
func TestMissingKeyFileOfUsedDatabase(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"default":       {},
		"named":         {"IDP_DATABASE_URL": "sqlite://run/idp.db", "IDP_SECRET_KEY_FILE": "run/keys/master.key"},
		"named, absent": {"IDP_SECRET_KEY_FILE": "elsewhere/master.key"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			cfg, err := config.Load("", func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			a, err := Open(t.Context(), cfg, Options{Migrate: true})
			if err != nil {
				t.Fatalf("first start: %v", err)
			}
			a.Close()
			fi, err := os.Stat(cfg.SecretKeyFile)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("the first start's key file %s: %v %v, want mode 0600", cfg.SecretKeyFile, fi, err)
			}
			if err := os.Remove(cfg.SecretKeyFile); err != nil {
				t.Fatal(err)
			}
			_, err = Open(t.Context(), cfg, Options{Migrate: true})
			if err == nil || !strings.Contains(err.Error(), cfg.SecretKeyFile+" is missing") {
				t.Fatalf("start without the key file of a used database: %v, want an error naming the file", err)
			}
			if _, err := os.Stat(cfg.SecretKeyFile); err == nil {
				t.Error("a new key file was created for a database it cannot read")
			}
		})
	}
}

// TestBadKeyTouchesNoStore: a master key that cannot be read stops the
// start before the embedded store is created (nothing half-written).
func TestBadKeyTouchesNoStore(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.WriteFile("bad.key", []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"IDP_SECRET_KEY_FILE": "bad.key"}
	cfg, err := config.Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), cfg, Options{Migrate: true}); err == nil {
		t.Fatal("a start with a malformed key file succeeded")
	}
	if _, err := os.Stat(cfg.SQLitePath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the store at %s after a start with a bad key: %v, want none", cfg.SQLitePath(), err)
	}
}

// TestWrongMasterKey: a database remembers the master key it was first used
// with (a MAC of a fixed input), so a start with another key is refused
// with one line saying so, before anything is sealed with it: a typo in
// IDP_SECRET_KEY_FILE that made a new file, or a wrong IDP_SECRET_KEY. A
// database an admin command used first (it seals client secrets, not
// signing keys) counts as used too.
func TestWrongMasterKey(t *testing.T) {
	cfg, env := namedKeyFile(t)
	a, err := Open(t.Context(), cfg, Options{Migrate: true, LeaveKeys: true}) // an admin command, first
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.CreateClient(t.Context(), NewClient{ID: "app", Name: "App", RedirectURIs: []string{"https://app.example/cb"}}); err != nil {
		t.Fatal(err)
	}
	a.Close()

	env["IDP_SECRET_KEY_FILE"] = "keys/master.kye" // a typo: a file to be made
	typo, _ := config.Load("", func(k string) string { return env[k] })
	if _, err := Open(t.Context(), typo, Options{Migrate: true}); err == nil || !strings.Contains(err.Error(), "keys/master.kye is missing") {
		t.Fatalf("a start with a mistyped key file: %v, want it refused", err)
	}
	if _, err := os.Stat("keys/master.kye"); err == nil {
		t.Error("a new key file was made for a used database")
	}

	other := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{5}, 32))
	env["IDP_SECRET_KEY_FILE"], env["IDP_SECRET_KEY"] = "", other
	wrong, _ := config.Load("", func(k string) string { return env[k] })
	_, err = Open(t.Context(), wrong, Options{Migrate: true})
	if err == nil || !strings.Contains(err.Error(), "IDP_SECRET_KEY is not the key this database was first used with") ||
		strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), other) {
		t.Fatalf("a start with another key: %v, want one line refusing it (and not the key)", err)
	}
	a, err = Open(t.Context(), cfg, Options{Migrate: true}) // the right key still works
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
}

// TestFirstStartsAtOnce: two processes starting at once on a new embedded
// store with a key file to make (a server and an admin command, say) both
// open the file (one may find it busy while the other switches it to WAL)
// and agree on one key: the one whose key file is made second reads it,
// and neither is refused.
func TestFirstStartsAtOnce(t *testing.T) {
	cfg, _ := namedKeyFile(t)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			a, err := Open(t.Context(), cfg, Options{Migrate: true})
			if err == nil {
				a.Close()
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("a first start beside another: %v", err)
		}
	}
}

// namedKeyFile moves the test to a directory of its own and returns the
// configuration of an embedded store there with a key file named in
// IDP_SECRET_KEY_FILE (not made yet), and the environment it came from.
func namedKeyFile(t *testing.T) (config.Config, map[string]string) {
	t.Helper()
	t.Chdir(t.TempDir())
	env := map[string]string{"IDP_DATABASE_URL": "sqlite://idp.db", "IDP_SECRET_KEY_FILE": "keys/master.key"}
	cfg, err := config.Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return cfg, env
}

// TestMasterKeyCheckOfOlderDatabase: a database from before the check was
// kept (its signing keys sealed, no check recorded) does not record a wrong
// key as its own at the first start after the upgrade, which would refuse
// the right one ever after: a key that cannot open its signing keys is
// refused, and the right one is recorded.
func TestMasterKeyCheckOfOlderDatabase(t *testing.T) {
	cfg, env := namedKeyFile(t)
	a, err := Open(t.Context(), cfg, Options{Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	db := a.Store.(interface{ DB() *sql.DB }).DB()
	if _, err := db.ExecContext(t.Context(), `DELETE FROM master_key_check`); err != nil { // as before migration 0010
		t.Fatal(err)
	}
	a.Close()
	env["IDP_SECRET_KEY_FILE"], env["IDP_SECRET_KEY"] = "", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{6}, 32))
	wrong, _ := config.Load("", func(k string) string { return env[k] })
	if _, err := Open(t.Context(), wrong, Options{Migrate: true, LeaveKeys: true}); err == nil ||
		!strings.Contains(err.Error(), "not the key this database was first used with") {
		t.Fatalf("an admin command with another key on an older database: %v, want it refused", err)
	}
	a, err = Open(t.Context(), cfg, Options{Migrate: true}) // the right key: recorded now
	if err != nil {
		t.Fatalf("the right key after a wrong one was tried: %v", err)
	}
	if _, err := a.Store.MasterKeyCheck(t.Context()); err != nil {
		t.Errorf("the right key's check: %v, want it recorded", err)
	}
	a.Close()
}
