package web

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/password"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

// TestRehashKeepsAPasswordChangedMeanwhile replays, one step after the
// other, a login that upgrades a weak hash while the owner changes the
// password: the login reads the user (the old, weak hash), the password is
// changed, and only then does the login's check hash (it waits its turn
// for the hasher). The upgrade must not write a hash of the old password
// over the new one.
func TestRehashKeepsAPasswordChangedMeanwhile(t *testing.T) {
	ctx := context.Background()
	st := testenv.SQLiteStore(t)
	weak := password.New(password.Params{Memory: 8192, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	current := password.New(password.Params{Memory: 8192, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	const oldPW, newPW = "the old password", "the new password"
	oldHash, err := weak.Hash(ctx, oldPW)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	u := &store.User{ID: "u1", Email: "user@example.com", PasswordHash: oldHash, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Issuer = "http://localhost:8080"
	s := New(Deps{Config: cfg, Key: testKey(t), Store: st, Hasher: current, Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return now }})

	found, _, err := st.GetPasswordStep(ctx, u.Email) // the login's read
	if err != nil || found == nil {
		t.Fatalf("GetPasswordStep: %v, %v", found, err)
	}
	if _, rehash, err := current.Verify(ctx, found.PasswordHash, oldPW); err != nil || !rehash {
		t.Fatalf("the weak hash must ask for a rehash: %v, %v", rehash, err)
	}
	newHash, err := current.Hash(ctx, newPW) // the owner's change
	if err != nil {
		t.Fatal(err)
	}
	if err := st.UpdatePassword(ctx, u.ID, newHash, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.checkPassword(ctx, found, oldPW); err != nil { // the login's check, late
		t.Fatal(err)
	}

	got, err := st.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	for pw, want := range map[string]bool{newPW: true, oldPW: false} {
		if ok, _, err := current.Verify(ctx, got.PasswordHash, pw); err != nil || ok != want {
			t.Errorf("after the login, %q verifies: %v (err %v), want %v", pw, ok, err, want)
		}
	}

	// Without a change in between, the login does upgrade the hash.
	if err := st.UpdatePassword(ctx, u.ID, oldHash, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.checkPassword(ctx, found, oldPW); err != nil {
		t.Fatal(err)
	}
	got, err = st.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ok, rehash, err := current.Verify(ctx, got.PasswordHash, oldPW); err != nil || !ok || rehash {
		t.Errorf("after a login with the weak hash: verifies %v, rehash %v (err %v); want an upgraded hash", ok, rehash, err)
	}
}
