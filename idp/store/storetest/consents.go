package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// consentParties creates the users u1 and u2 and the clients app and
// other, whose consents the tests below give and take back.
func consentParties(t *testing.T, s store.Store) {
	t.Helper()
	newUser(t, s, "u1")
	newUser(t, s, "u2")
	newClient(t, s, "app")
	newClient(t, s, "other")
}

// testConsentList: ListConsents lists what each user allowed, the most
// recently allowed first, with the clients' names, never a first-party
// client's.
func testConsentList(t *testing.T, s store.Store) {
	ctx := t.Context()
	consentParties(t, s)
	must(t, s.CreateClient(ctx, &store.Client{ID: "own", Name: "Own", FirstParty: true, CreatedAt: t0}))
	list, err := s.ListConsents(ctx, "u1")
	must(t, err)
	same(t, "ListConsents(none)", len(list), 0)

	must(t, s.PutConsent(ctx, "u1", "app", []string{"openid", "email"}, t0))
	must(t, s.PutConsent(ctx, "u1", "other", []string{"openid"}, at(time.Hour)))
	must(t, s.PutConsent(ctx, "u1", "own", []string{"openid"}, at(2*time.Hour)))
	must(t, s.PutConsent(ctx, "u2", "app", []string{"openid", "profile"}, at(time.Minute)))
	list, err = s.ListConsents(ctx, "u1")
	must(t, err)
	same(t, "ListConsents(u1)", list, []store.Consent{
		{ClientID: "other", ClientName: "other", Scopes: []string{"openid"}, UpdatedAt: at(time.Hour)},
		{ClientID: "app", ClientName: "app", Scopes: []string{"openid", "email"}, UpdatedAt: t0},
	})
	list, err = s.ListConsents(ctx, "u2")
	must(t, err)
	same(t, "ListConsents(u2)", list, []store.Consent{
		{ClientID: "app", ClientName: "app", Scopes: []string{"openid", "profile"}, UpdatedAt: at(time.Minute)},
	})
	list, err = s.ListConsents(ctx, "nobody")
	must(t, err)
	same(t, "ListConsents(unknown user)", len(list), 0)
}

// testRevokeConsent: RevokeConsent deletes the one consent and deactivates
// every token of that client for that user (codes, access and refresh
// tokens, whatever the session), and nothing of another client or user;
// once gone, it answers ErrNotFound and changes nothing; in the caller's
// transaction, a rollback undoes all of it.
func testRevokeConsent(t *testing.T, s store.Store) {
	ctx := t.Context()
	consentParties(t, s)
	must(t, s.PutConsent(ctx, "u1", "app", []string{"openid", "offline_access"}, t0))
	must(t, s.PutConsent(ctx, "u1", "other", []string{"openid"}, t0))
	must(t, s.PutConsent(ctx, "u2", "app", []string{"openid"}, t0))
	newSession(t, s, "u1", "sid-1")
	newSession(t, s, "u1", "sid-2")
	newSession(t, s, "u2", "sid-4")
	type tok struct{ kind, sig, subject, client, sid string }
	toks := []tok{
		{store.KindAuthorizeCode, "code-1", "u1", "app", "sid-1"}, // not redeemed yet
		{store.KindAccessToken, "access-1", "u1", "app", "sid-1"},
		{store.KindRefreshToken, "refresh-1", "u1", "app", "sid-1"},
		{store.KindRefreshToken, "refresh-2", "u1", "app", "sid-2"}, // another device
		{store.KindAccessToken, "access-3", "u1", "other", "sid-1"},
		{store.KindRefreshToken, "refresh-3", "u1", "other", "sid-1"},
		{store.KindAccessToken, "access-4", "u2", "app", "sid-4"},
		{store.KindRefreshToken, "refresh-4", "u2", "app", "sid-4"},
		{store.KindRefreshToken, "refresh-5", "u2", "other", "sid-4"}, // no consent of u2's
	}
	for _, x := range toks {
		must(t, s.CreateToken(ctx, &store.TokenRecord{Kind: x.kind, Signature: x.sig, RequestID: "req-" + x.sig,
			ClientID: x.client, Subject: x.subject, SessionID: x.sid, Data: []byte("{}"), Active: true,
			CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	}
	// active checks every token: those of u1 and app in revoked, the others
	// still active.
	active := func(what string, revoked bool) {
		t.Helper()
		for _, x := range toks {
			got, err := s.GetToken(ctx, x.kind, x.sig)
			must(t, err)
			want := !(revoked && x.subject == "u1" && x.client == "app")
			same(t, what+": "+x.sig+" active", got.Active, want)
		}
	}
	consented := func(what, user, client string, want bool) {
		t.Helper()
		got, err := s.GetConsent(ctx, user, client)
		must(t, err)
		same(t, what+": consent of "+user+" to "+client, len(got) > 0, want)
	}

	// In a transaction rolled back: nothing happened.
	tx, err := s.BeginTx(ctx)
	must(t, err)
	must(t, s.RevokeConsent(tx, "u1", "app"))
	must(t, s.Rollback(tx))
	consented("after a rollback", "u1", "app", true)
	active("after a rollback", false)

	must(t, s.RevokeConsent(ctx, "u1", "app"))
	consented("revoked", "u1", "app", false)
	consented("another client", "u1", "other", true)
	consented("another user", "u2", "app", true)
	active("after RevokeConsent", true)
	list, err := s.ListConsents(ctx, "u1")
	must(t, err)
	same(t, "ListConsents after RevokeConsent", len(list), 1)
	same(t, "the consent left", list[0].ClientID, "other")

	// Gone already, or never there: ErrNotFound, and no token touched.
	wantErr(t, "RevokeConsent twice", s.RevokeConsent(ctx, "u1", "app"), store.ErrNotFound)
	wantErr(t, "RevokeConsent(no consent)", s.RevokeConsent(ctx, "u2", "other"), store.ErrNotFound)
	wantErr(t, "RevokeConsent(unknown client)", s.RevokeConsent(ctx, "u1", "nobody"), store.ErrNotFound)
	active("after revoking what was not there", true)

	// Allowed again: a new consent, and new tokens work.
	must(t, s.PutConsent(ctx, "u1", "app", []string{"openid"}, at(time.Hour)))
	consented("allowed again", "u1", "app", true)
}

// testAddConsent: AddConsent adds scopes to a consent (creating it) and
// returns them all; concurrent approvals of different scopes all count.
func testAddConsent(t *testing.T, s store.Store) {
	ctx := t.Context()
	consentParties(t, s)
	got, err := s.AddConsent(ctx, "u1", "app", []string{"openid", "email"}, t0)
	must(t, err)
	same(t, "AddConsent (new)", got, []string{"openid", "email"})
	got, err = s.AddConsent(ctx, "u1", "app", []string{"openid", "profile"}, at(time.Minute))
	must(t, err)
	same(t, "AddConsent (more)", got, []string{"openid", "email", "profile"})
	_, err = s.AddConsent(ctx, "u1", "nobody", []string{"openid"}, t0)
	wantErr(t, "AddConsent for a client that does not exist", err, store.ErrNotFound)

	race(t, nil, func(ctx context.Context, i int) error {
		_, err := s.AddConsent(ctx, "u2", "other", []string{"openid", fmt.Sprintf("scope%d", i)}, t0)
		return err
	})
	got, err = s.GetConsent(ctx, "u2", "other")
	must(t, err)
	if len(got) != racers+1 {
		t.Errorf("after %d concurrent approvals of one scope each: %d scopes granted %v, want %d", racers, len(got), got, racers+1)
	}
}
