package crypt

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func testKey(t *testing.T) *Key {
	t.Helper()
	k, err := ParseKey(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSealOpen: both seals (at rest, for a browser) hide the plaintext,
// open only with their own aad and key, refuse any change, and neither
// opens what the other sealed.
func TestSealOpen(t *testing.T) {
	k := testKey(t)
	other, _ := NewKey(bytes.Repeat([]byte{8}, 32))
	type sealer struct {
		name string
		seal func(k *Key, pt, aad []byte) []byte
		open func(k *Key, ct, aad []byte) ([]byte, error)
	}
	atRest := sealer{"at rest", (*Key).Seal, (*Key).Open}
	browser := sealer{"for a browser", (*Key).SealForBrowser, (*Key).OpenFromBrowser}
	for _, tc := range []struct{ s, not sealer }{{atRest, browser}, {browser, atRest}} {
		t.Run(tc.s.name, func(t *testing.T) {
			ct := tc.s.seal(k, []byte("secret"), []byte("totp:u1"))
			if bytes.Contains(ct, []byte("secret")) {
				t.Fatal("ciphertext contains the plaintext")
			}
			if again := tc.s.seal(k, []byte("secret"), []byte("totp:u1")); bytes.Equal(again, ct) {
				t.Fatal("the same plaintext sealed twice gave the same ciphertext")
			}
			pt, err := tc.s.open(k, ct, []byte("totp:u1"))
			if err != nil || string(pt) != "secret" {
				t.Fatalf("open = %q, %v", pt, err)
			}
			if _, err := tc.s.open(k, ct, []byte("totp:u2")); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("other aad: %v", err)
			}
			if _, err := tc.not.open(k, ct, []byte("totp:u1")); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("opened by the other seal: %v", err)
			}
			if _, err := tc.s.open(other, ct, []byte("totp:u1")); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("other key: %v", err)
			}
			for i := range ct {
				bad := bytes.Clone(ct)
				bad[i] ^= 1
				if _, err := tc.s.open(k, bad, []byte("totp:u1")); !errors.Is(err, ErrDecrypt) {
					t.Fatalf("byte %d changed: %v", i, err)
				}
			}
			if _, err := tc.s.open(k, []byte{1, 2}, nil); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("short: %v", err)
			}
		})
	}
}

func TestMACPurposes(t *testing.T) {
	k := testKey(t)
	if bytes.Equal(k.MAC("a", []byte("x")), k.MAC("b", []byte("x"))) {
		t.Fatal("purposes share MACs")
	}
	if !Equal(k.MAC("a", []byte("x")), k.MAC("a", []byte("x"))) {
		t.Fatal("MAC not deterministic")
	}
	if bytes.Equal(k.Derive("p", 32), k.Derive("q", 32)) || len(k.Derive("p", 48)) != 48 {
		t.Fatal("Derive")
	}
}

func TestParseKey(t *testing.T) {
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(make([]byte, 16))} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
	if _, err := ParseKey("  " + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n\n"); err != nil {
		t.Errorf("white space: %v", err)
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "secret.key")
	if _, err := LoadKeyFile(path); err == nil {
		t.Fatal("missing file loaded")
	}
	k1, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	k2, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !Equal(k1.MAC("x", nil), k2.MAC("x", nil)) {
		t.Fatal("reloaded key differs")
	}
	if _, err := CreateKeyFile(path); err == nil {
		t.Fatal("CreateKeyFile overwrote a key")
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, err := LoadKeyFile(path); err == nil || strings.Contains(err.Error(), "garbage") {
		t.Fatalf("malformed key: %v", err)
	}
}

// TestKeyFileFirstStartRace: processes starting at once on a fresh data
// directory all end up with the one key written, none with an error (a
// file created but not yet written is never read).
func TestKeyFileFirstStartRace(t *testing.T) {
	for round := range 30 {
		path := filepath.Join(t.TempDir(), "secret.key")
		const n = 16
		keys := make([]*Key, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { keys[i], errs[i] = LoadOrCreateKeyFile(path) })
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d, starter %d: %v", round, i, errs[i])
			}
			if !Equal(keys[i].MAC("x", nil), keys[0].MAC("x", nil)) {
				t.Fatalf("round %d: starters ended up with different keys", round)
			}
		}
		entries, err := os.ReadDir(filepath.Dir(path))
		if err != nil || len(entries) != 1 {
			t.Fatalf("round %d: the directory holds %d entries (%v), want the key file alone", round, len(entries), err)
		}
	}
}

func TestRandomToken(t *testing.T) {
	a, b := RandomToken(32), RandomToken(32)
	if a == b || len(a) != 43 {
		t.Fatalf("tokens %q %q", a, b)
	}
	if len(HashToken(a)) != 32 {
		t.Fatal("HashToken length")
	}
}
