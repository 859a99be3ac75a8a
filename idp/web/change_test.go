package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/mail"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

// failing is a real store whose audit or mail writes fail.
type failing struct {
	store.Store
	audit, mail bool
}

var errOutage = errors.New("store outage")

func (f failing) AddAuditEvent(ctx context.Context, e *store.AuditEvent) error {
	if f.audit {
		return errOutage
	}
	return f.Store.AddAuditEvent(ctx, e)
}

func (f failing) EnqueueMail(ctx context.Context, m *store.Mail) error {
	if f.mail {
		return errOutage
	}
	return f.Store.EnqueueMail(ctx, m)
}

// TestChangeAccountAllOrNothing checks on a real store that a change to an
// account, its audit event and its security e-mail are written together:
// when the event or the e-mail cannot be written, the change is not made
// either, so a change is never made without its notice.
func TestChangeAccountAllOrNothing(t *testing.T) {
	ctx := context.Background()
	st := testenv.SQLiteStore(t)
	key := testKey(t)
	now := time.Now().UTC().Truncate(time.Second)
	u := &store.User{ID: "u1", Email: "user@example.com", PasswordHash: "old", Locale: "ja", CreatedAt: now, UpdatedAt: now}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Issuer = "http://localhost:8080"
	change := func(s store.Store, hash string) error {
		srv := New(Deps{Config: cfg, Key: key, Store: s, Outbox: mail.NewOutbox(s, key, nil),
			Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }})
		r := httptest.NewRequest("POST", "/account/password", nil)
		return srv.changeAccount(r, u, func(tx context.Context) (accountChange, error) {
			return accountChange{Event: "password.changed", Mail: mail.PasswordChanged}, s.UpdatePassword(tx, u.ID, hash, now)
		})
	}
	state := func() (hash string, events int, mailed bool) {
		t.Helper()
		got, err := st.GetUser(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := st.ListAuditEvents(ctx, u.ID, 10)
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.GetMail(ctx, 1)
		return got.PasswordHash, len(evs), err == nil
	}

	for _, f := range []failing{{audit: true}, {mail: true}} {
		f.Store = st
		if err := change(f, "new"); !errors.Is(err, errOutage) {
			t.Fatalf("audit fails %v, mail fails %v: changeAccount = %v, want the outage", f.audit, f.mail, err)
		}
		if hash, events, mailed := state(); hash != "old" || events != 0 || mailed {
			t.Fatalf("audit fails %v, mail fails %v: password %q, %d events, mailed %v; want nothing written",
				f.audit, f.mail, hash, events, mailed)
		}
	}
	if err := change(st, "new"); err != nil {
		t.Fatal(err)
	}
	if hash, events, mailed := state(); hash != "new" || events != 1 || !mailed {
		t.Fatalf("password %q, %d events, mailed %v; want all three written", hash, events, mailed)
	}
}
