package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/testenv"
)

// signingKeys lists the store's signing keys (id, algorithm, retired or
// not), newest first.
func signingKeys(t *testing.T) []string {
	t.Helper()
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	st, err := app.OpenStore(context.Background(), cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ks, err := st.ListSigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range ks {
		out = append(out, fmt.Sprintf("%s %s retired=%v", k.ID, k.Algorithm, !k.RetiredAt.IsZero()))
	}
	return out
}

// TestOnlyServeMakesSigningKeys: `idp serve` makes the first signing key
// (of IDP_SIGNING_ALG) on an empty database; the administrative commands,
// run from a shell without the servers' IDP_SIGNING_ALG (so RS256), leave
// the keys alone: no new current key of another algorithm than the one the
// servers advertise.
func TestOnlyServeMakesSigningKeys(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		t.Setenv("IDP_DATABASE_URL", db.URL)
		t.Setenv("IDP_SECRET_KEY", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)))
		t.Setenv("IDP_ARGON2_MEMORY_KIB", "8192")
		t.Setenv("IDP_ARGON2_ITERATIONS", "1")
		t.Setenv("IDP_LOG_LEVEL", "error")
		t.Setenv("IDP_SIGNING_ALG", "ES256") // the servers' configuration
		public := freeAddr(t)
		t.Setenv("IDP_LISTEN", public)
		if _, err := cli(t, "", "migrate"); err != nil {
			t.Fatalf("migrate: %v", err)
		}

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done, _ := startServe(t, ctx, public)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("serve: %v", err)
		}
		before := signingKeys(t)
		if len(before) != 1 {
			t.Fatalf("signing keys after serve on an empty database: %q, want one", before)
		}

		os.Unsetenv("IDP_SIGNING_ALG") // an admin's shell: RS256 by default
		if _, err := cli(t, "a-long-password\n", "user", "create", "--email", "ken@example.com", "--password-stdin"); err != nil {
			t.Fatalf("user create: %v", err)
		}
		if _, err := cli(t, "", "client", "create", "--id", "viewer", "--name", "Viewer", "--redirect-uri", "https://viewer.example/cb"); err != nil {
			t.Fatalf("client create: %v", err)
		}
		_, _ = cli(t, "", "user", "reset-mfa", "--email", "ken@example.com") // no 2FA: nothing to do, after opening
		var out bytes.Buffer
		if err := run(context.Background(), []string{"demo-setup", "--client-file", filepath.Join(t.TempDir(), "demo.json")},
			nil, &out); err != nil {
			t.Fatalf("demo-setup: %v", err)
		}
		if after := signingKeys(t); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("signing keys after the admin commands:\n%q\nwant them untouched:\n%q", after, before)
		}
	})
}
