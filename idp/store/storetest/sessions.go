package storetest

import (
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

func testDeleteUserSession(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	newUser(t, s, "u2")
	for _, n := range []string{"1", "2"} {
		must(t, s.CreateSession(ctx, &store.Session{TokenHash: []byte("h" + n), ID: "sid-" + n, UserID: "u1",
			CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour)}))
	}
	// Tokens issued in each session (and one of another user, in a session
	// of the same id).
	token := func(sig, subject, sid string) {
		must(t, s.CreateToken(ctx, &store.TokenRecord{Kind: store.KindRefreshToken, Signature: sig, RequestID: sig,
			Subject: subject, SessionID: sid, Data: []byte("{}"), Active: true, CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	}
	token("t1", "u1", "sid-1")
	token("t2", "u1", "sid-2")
	token("t3", "u2", "sid-1")
	active := func(what string, want map[string]bool) {
		t.Helper()
		for sig, w := range want {
			got, err := s.GetToken(ctx, store.KindRefreshToken, sig)
			must(t, err)
			same(t, what+": token "+sig+" active", got.Active, w)
		}
	}
	wantErr(t, "another user's session", s.DeleteUserSession(ctx, "u2", "sid-2"), store.ErrNotFound)
	active("another user's session refused", map[string]bool{"t1": true, "t2": true, "t3": true})
	must(t, s.DeleteUserSession(ctx, "u1", "sid-1"))
	wantErr(t, "twice", s.DeleteUserSession(ctx, "u1", "sid-1"), store.ErrNotFound)
	left, err := s.ListUserSessions(ctx, "u1", t0)
	must(t, err)
	same(t, "sessions left", len(left), 1)
	same(t, "session left", left[0].ID, "sid-2")
	active("after ending sid-1", map[string]bool{"t1": false, "t2": true, "t3": true})

	// All but one, then all.
	must(t, s.CreateSession(ctx, &store.Session{TokenHash: []byte("h3"), ID: "sid-3", UserID: "u1",
		CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour)}))
	token("t4", "u1", "sid-3")
	token("t5", "u1", "") // issued before sessions had ids, or without one
	n, err := s.DeleteUserSessions(ctx, "u1", "sid-3")
	must(t, err)
	same(t, "sessions ended but sid-3", n, 1)
	active("after ending all but sid-3", map[string]bool{"t2": false, "t3": true, "t4": true, "t5": false})
	token("t6", "u1", "") // such a token issued since goes with all the sessions (a password reset)
	n, err = s.DeleteUserSessions(ctx, "u1", "")
	must(t, err)
	same(t, "sessions ended", n, 1)
	active("after ending all", map[string]bool{"t3": true, "t4": false, "t6": false})
}

// testEndSession: a logout ends the session by its cookie's hash, expired
// or not, with the access tokens and codes issued in it; its refresh
// tokens, and every other session's tokens, stay.
func testEndSession(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	newUser(t, s, "u2")
	session := func(n, user string, expires time.Time) {
		must(t, s.CreateSession(ctx, &store.Session{TokenHash: []byte("h" + n), ID: "sid-" + n, UserID: user,
			CreatedAt: t0, LastSeen: t0, ExpiresAt: expires}))
	}
	session("1", "u1", at(time.Hour))
	session("2", "u1", at(time.Hour))
	session("3", "u1", at(-time.Minute)) // past its end
	type tok struct{ kind, sig string }
	token := func(k tok, subject, sid string) {
		must(t, s.CreateToken(ctx, &store.TokenRecord{Kind: k.kind, Signature: k.sig, RequestID: k.sig,
			Subject: subject, SessionID: sid, Data: []byte("{}"), Active: true, CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	}
	access, code, refresh := tok{store.KindAccessToken, "a1"}, tok{store.KindAuthorizeCode, "c1"}, tok{store.KindRefreshToken, "r1"}
	token(access, "u1", "sid-1")
	token(code, "u1", "sid-1")
	token(refresh, "u1", "sid-1")
	other, otherUser, expired := tok{store.KindAccessToken, "a2"}, tok{store.KindAccessToken, "a3"}, tok{store.KindAccessToken, "a4"}
	token(other, "u1", "sid-2")
	token(otherUser, "u2", "sid-1") // another user's session of the same id
	token(expired, "u1", "sid-3")
	active := func(what string, want map[tok]bool) {
		t.Helper()
		for k, w := range want {
			got, err := s.GetToken(ctx, k.kind, k.sig)
			must(t, err)
			same(t, what+": "+k.kind+" "+k.sig+" active", got.Active, w)
		}
	}
	must(t, s.EndSession(ctx, []byte("h1")))
	wantErr(t, "EndSession twice", s.EndSession(ctx, []byte("h1")), store.ErrNotFound)
	wantErr(t, "EndSession of no session", s.EndSession(ctx, []byte("nothing")), store.ErrNotFound)
	active("after the logout of sid-1", map[tok]bool{access: false, code: false, refresh: true, other: true, otherUser: true, expired: true})
	must(t, s.EndSession(ctx, []byte("h3")))
	active("after the logout of the expired sid-3", map[tok]bool{expired: false, other: true})
	left, err := s.ListUserSessions(ctx, "u1", at(-time.Hour))
	must(t, err)
	if len(left) != 1 || left[0].ID != "sid-2" {
		t.Errorf("sessions left: %+v, want sid-2 alone", left)
	}
}

// testRotateSession: a session of the user gets a new cookie hash, and
// keeps everything else; the old hash finds nothing, nor does another
// user's rotation of it.
func testRotateSession(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	newUser(t, s, "u2")
	x := &store.Session{TokenHash: []byte("old"), ID: "sid-1", UserID: "u1", AMR: []string{"pwd", "otp"}, Remember: true,
		AuthTime: t0, CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour)}
	must(t, s.CreateSession(ctx, x))
	_, err := s.RotateSession(ctx, []byte("old"), []byte("new"), "u2")
	wantErr(t, "another user's rotation", err, store.ErrNotFound)
	got, err := s.RotateSession(ctx, []byte("old"), []byte("new"), "u1")
	must(t, err)
	want := *x
	want.TokenHash = []byte("new")
	same(t, "rotated session", got, &want)
	_, err = s.GetSession(ctx, []byte("old"), t0)
	wantErr(t, "the old hash", err, store.ErrNotFound)
	got, err = s.GetSession(ctx, []byte("new"), t0)
	must(t, err)
	same(t, "the new hash", got, &want)
	_, err = s.RotateSession(ctx, []byte("old"), []byte("newer"), "u1")
	wantErr(t, "rotating the old hash again", err, store.ErrNotFound)
}
