package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/store/sqlstore"
	"github.com/kamera-id/idp/idp/testenv"
)

// Races between ending a user's sessions and issuing tokens, played in a
// fixed order: each party runs on a store of its own whose connections
// carry their own application_name, and the next party starts only once
// pg_stat_activity shows the one before it waiting for a lock. No sleeps:
// the order is what the database says, not what a timer hopes for.

// lockRace is one schema and the parties that race in it.
type lockRace struct {
	t      *testing.T
	url    string
	prefix string // of the application names: unique to this test
	main   *sqlstore.Store
}

func newLockRace(t *testing.T) *lockRace {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	r := &lockRace{t: t, url: testenv.Postgres(t).URL, prefix: "idp-lock-" + hex.EncodeToString(b) + "-"}
	r.main = r.party("main")
	if err := r.main.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return r
}

// party opens a store on the race's schema whose connections are named
// name in pg_stat_activity.
func (r *lockRace) party(name string) *sqlstore.Store {
	return open(r.t, r.url+"&application_name="+r.prefix+name)
}

// started is a party's call running in its own goroutine.
type started struct {
	name   string
	done   chan struct{}
	err    error
	waited bool // it was seen waiting for a lock
}

// start runs f in a goroutine and returns once the party name is waiting
// for a lock, or f has returned (it did not wait at all).
func (r *lockRace) start(name string, f func() error) *started {
	r.t.Helper()
	s := &started{name: name, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = f()
	}()
	for {
		select {
		case <-s.done:
			return s
		default:
		}
		var waiting int
		if err := r.main.DB().QueryRowContext(r.t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock'`, r.prefix+name).Scan(&waiting); err != nil {
			r.t.Fatal(err)
		}
		if waiting > 0 {
			s.waited = true
			return s
		}
	}
}

// wait returns the party's result.
func (s *started) wait() error {
	<-s.done
	return s.err
}

// activeTokens are the signatures of the subject's active tokens.
func (r *lockRace) activeTokens(subject string) []string {
	r.t.Helper()
	rows, err := r.main.DB().QueryContext(r.t.Context(),
		`SELECT kind || ' ' || signature FROM tokens WHERE subject = $1 AND active ORDER BY 1`, subject)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rows.Close()
	var sigs []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			r.t.Fatal(err)
		}
		sigs = append(sigs, s)
	}
	if err := rows.Err(); err != nil {
		r.t.Fatal(err)
	}
	return sigs
}

// holdToken locks the token's row in a transaction of its own, as a
// concurrent request touching it would, until release is called.
func (r *lockRace) holdToken(kind, signature string) (release func()) {
	r.t.Helper()
	holder := r.party("holder")
	tx, err := holder.DB().BeginTx(r.t.Context(), nil)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = tx.Rollback() }) // a test that stopped early must not leave it held
	var one int
	if err := tx.QueryRowContext(r.t.Context(), `SELECT 1 FROM tokens WHERE kind = $1 AND signature = $2 FOR UPDATE`,
		kind, signature).Scan(&one); err != nil {
		r.t.Fatal(err)
	}
	return func() {
		if err := tx.Rollback(); err != nil {
			r.t.Fatal(err)
		}
	}
}

var lockT0 = time.Now().Truncate(time.Second)

func lockToken(kind, sig, req, sid string) *store.TokenRecord {
	return &store.TokenRecord{Kind: kind, Signature: sig, RequestID: req, ClientID: "app", Subject: "u1",
		SessionID: sid, Data: []byte("{}"), Active: true, CreatedAt: lockT0, ExpiresAt: lockT0.Add(time.Hour)}
}

func (r *lockRace) must(err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
}

// begin opens a transaction on s that the test commits or, when it stops
// before, rolls back.
func (r *lockRace) begin(s *sqlstore.Store) context.Context {
	r.t.Helper()
	tx, err := s.BeginTx(r.t.Context())
	r.must(err)
	r.t.Cleanup(func() { _ = s.Rollback(tx) })
	return tx
}

// committed runs f in a transaction of s and commits it (for a party's
// call, which reports its error rather than failing the test).
func committed(ctx context.Context, s *sqlstore.Store, f func(tx context.Context) error) error {
	tx, err := s.BeginTx(ctx)
	if err != nil {
		return err
	}
	defer s.Rollback(tx)
	if err := f(tx); err != nil {
		return err
	}
	return s.Commit(tx)
}

func (r *lockRace) newUserSession(userID, sid string) {
	r.t.Helper()
	ctx := r.t.Context()
	r.must(r.main.CreateUser(ctx, &store.User{ID: userID, Email: userID + "@example.com", CreatedAt: lockT0}))
	r.must(r.main.CreateSession(ctx, &store.Session{TokenHash: []byte("h-" + sid), ID: sid, UserID: userID,
		CreatedAt: lockT0, LastSeen: lockT0, ExpiresAt: lockT0.Add(time.Hour)}))
}

// raceExchange plays the race: the token being spent is held by another
// transaction, the exchange waits for it, then ending the sessions starts
// and waits (on the old code: for the same row; now for the user's row the
// exchange holds), then the holder lets go. Whatever the order the
// database then picks, the exchange either fails or its tokens are
// inactive once ending the sessions has returned.
func raceExchange(t *testing.T, r *lockRace, x *store.TokenExchange, end func(ctx context.Context, s *sqlstore.Store) error) {
	t.Helper()
	raceExchangeKeeping(t, r, x, end)
}

// raceExchangeKeeping is raceExchange where ending the sessions leaves the
// tokens keep active (a logout keeps refresh tokens).
func raceExchangeKeeping(t *testing.T, r *lockRace, x *store.TokenExchange, end func(ctx context.Context, s *sqlstore.Store) error, keep ...string) {
	t.Helper()
	ctx := t.Context()
	release := r.holdToken(x.SpendKind, x.SpendSignature)
	exchanger, ender := r.party("exchange"), r.party("end")
	exchange := r.start("exchange", func() error { return exchanger.ExchangeTokens(ctx, x) })
	ending := r.start("end", func() error { return end(ctx, ender) })
	release()
	if !exchange.waited || !ending.waited {
		t.Fatalf("the race was not played: the exchange waited %v, ending the sessions %v", exchange.waited, ending.waited)
	}
	xerr, eerr := exchange.wait(), ending.wait()
	r.must(eerr)
	if xerr != nil {
		if !errors.Is(xerr, store.ErrConsumed) {
			t.Fatalf("exchange: %v, want success or ErrConsumed", xerr)
		}
		return
	}
	if left := r.activeTokens("u1"); !slices.Equal(left, keep) {
		t.Fatalf("the exchange won and its tokens survived: %q, want only %q", left, keep)
	}
}

// TestCodeExchangeRacingLogout: a code exchanged while its session is
// logged out (EndSession): the exchange fails, or its access token is
// inactive and its refresh token (offline_access) alone stays.
func TestCodeExchangeRacingLogout(t *testing.T) {
	r := newLockRace(t)
	r.newUserSession("u1", "sid-1")
	r.must(r.main.CreateToken(t.Context(), lockToken(store.KindAuthorizeCode, "code", "R", "sid-1")))
	raceExchangeKeeping(t, r, &store.TokenExchange{SpendKind: store.KindAuthorizeCode, SpendSignature: "code",
		Create: []*store.TokenRecord{lockToken(store.KindAccessToken, "a1", "R", "sid-1"),
			lockToken(store.KindRefreshToken, "r1", "R", "sid-1")}},
		func(ctx context.Context, s *sqlstore.Store) error { return s.EndSession(ctx, []byte("h-sid-1")) },
		"refresh r1")
}

// TestLogoutRacingRotation: a logout (in another tab) of a session whose
// cookie a change of credentials is replacing (a new password on My Page:
// the other sessions ended, this one's cookie rotated, in one
// transaction). The logout waits for the change, then ends the session by
// its id, under its new cookie too, with its access token.
func TestLogoutRacingRotation(t *testing.T) {
	r := newLockRace(t)
	ctx := t.Context()
	r.newUserSession("u1", "sid-1")
	r.must(r.main.CreateToken(ctx, lockToken(store.KindAccessToken, "a1", "R", "sid-1")))
	changer, logout := r.party("change"), r.party("logout")
	tx := r.begin(changer)
	r.must(changer.UpdatePassword(tx, "u1", "new", lockT0))
	_, err := changer.DeleteUserSessions(tx, "u1", "sid-1")
	r.must(err)
	_, err = changer.RotateSession(tx, []byte("h-sid-1"), []byte("h-new"), "u1")
	r.must(err)
	ending := r.start("logout", func() error { return logout.EndSession(ctx, []byte("h-sid-1")) })
	if !ending.waited {
		t.Fatal("the race was not played: the logout did not wait for the change")
	}
	r.must(changer.Commit(tx))
	r.must(ending.wait())
	if _, err := r.main.GetSession(ctx, []byte("h-new"), lockT0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the session under its new cookie: %v, want it ended", err)
	}
	if left := r.activeTokens("u1"); len(left) > 0 {
		t.Errorf("active tokens after the logout: %q", left)
	}
}

// TestCodeExchangeRacingEndSessions: a code exchanged while the user's
// sessions end (a password reset, a password change, My Page).
func TestCodeExchangeRacingEndSessions(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(ctx context.Context, s *sqlstore.Store) error
	}{
		{"all sessions", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.DeleteUserSessions(ctx, "u1", "")
			return err
		}},
		{"all but another", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.DeleteUserSessions(ctx, "u1", "sid-other")
			return err
		}},
		{"that session", func(ctx context.Context, s *sqlstore.Store) error {
			return s.DeleteUserSession(ctx, "u1", "sid-1")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLockRace(t)
			r.newUserSession("u1", "sid-1")
			r.must(r.main.CreateSession(t.Context(), &store.Session{TokenHash: []byte("h-other"), ID: "sid-other", UserID: "u1",
				CreatedAt: lockT0, LastSeen: lockT0, ExpiresAt: lockT0.Add(time.Hour)}))
			r.must(r.main.CreateToken(t.Context(), lockToken(store.KindAuthorizeCode, "code", "R", "sid-1")))
			raceExchange(t, r, &store.TokenExchange{SpendKind: store.KindAuthorizeCode, SpendSignature: "code",
				Create: []*store.TokenRecord{lockToken(store.KindAccessToken, "a1", "R", "sid-1"),
					lockToken(store.KindRefreshToken, "r1", "R", "sid-1")}}, tc.end)
		})
	}
}

// TestRefreshRacingEndSessions: a refresh token whose SSO session has
// already ended by a logout (refresh tokens outlive it by design) is used
// while a password reset ends the user's sessions.
func TestRefreshRacingEndSessions(t *testing.T) {
	r := newLockRace(t)
	ctx := t.Context()
	r.newUserSession("u1", "sid-1")
	r.must(r.main.CreateToken(ctx, lockToken(store.KindAccessToken, "a0", "R", "sid-1")))
	r.must(r.main.CreateToken(ctx, lockToken(store.KindRefreshToken, "r0", "R", "sid-1")))
	r.must(r.main.DeleteSession(ctx, []byte("h-sid-1"))) // the logout
	raceExchange(t, r, &store.TokenExchange{SpendKind: store.KindRefreshToken, SpendSignature: "r0",
		RevokeKind: store.KindAccessToken, RevokeRequest: "R",
		Create: []*store.TokenRecord{lockToken(store.KindAccessToken, "a1", "R", "sid-1"),
			lockToken(store.KindRefreshToken, "r1", "R", "sid-1")}},
		func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.DeleteUserSessions(ctx, "u1", "")
			return err
		})
}

// TestRefreshRacingRevokeConsent: the client refreshes while the user
// takes its access back on My Page; the refresh fails, or what it issued is
// inactive too.
func TestRefreshRacingRevokeConsent(t *testing.T) {
	r := newLockRace(t)
	ctx := t.Context()
	r.newUserSession("u1", "sid-1")
	r.must(r.main.CreateClient(ctx, &store.Client{ID: "app", Name: "App"}))
	r.must(r.main.PutConsent(ctx, "u1", "app", []string{"openid", "offline_access"}, lockT0))
	r.must(r.main.CreateToken(ctx, lockToken(store.KindRefreshToken, "r0", "R", "sid-1")))
	raceExchange(t, r, &store.TokenExchange{SpendKind: store.KindRefreshToken, SpendSignature: "r0",
		RevokeKind: store.KindAccessToken, RevokeRequest: "R",
		Create: []*store.TokenRecord{lockToken(store.KindAccessToken, "a1", "R", "sid-1"),
			lockToken(store.KindRefreshToken, "r1", "R", "sid-1")}},
		func(ctx context.Context, s *sqlstore.Store) error { return s.RevokeConsent(ctx, "u1", "app") })
}

// TestRevokeGrantRacingRefresh: a grant is revoked (fosite's refresh-token
// reuse detection, RFC 7009 revocation: its refresh tokens, then its
// access tokens) while a refresh of it is in flight: the refresh waits
// for its token's row, held by another request, and the revocation starts
// meanwhile. Once the revocation has returned, none of the grant's tokens,
// old or issued by the refresh, is active.
func TestRevokeGrantRacingRefresh(t *testing.T) {
	r := newLockRace(t)
	ctx := t.Context()
	r.newUserSession("u1", "sid-1")
	r.must(r.main.CreateToken(ctx, lockToken(store.KindAccessToken, "a0", "grant", "sid-1")))
	r.must(r.main.CreateToken(ctx, lockToken(store.KindRefreshToken, "r0", "grant", "sid-1")))
	x := &store.TokenExchange{SpendKind: store.KindRefreshToken, SpendSignature: "r0",
		RevokeKind: store.KindAccessToken, RevokeRequest: "grant",
		Create: []*store.TokenRecord{lockToken(store.KindRefreshToken, "r1", "grant", "sid-1"),
			lockToken(store.KindAccessToken, "a1", "grant", "sid-1")}}
	release := r.holdToken(x.SpendKind, x.SpendSignature)
	exchanger, revoker := r.party("exchange"), r.party("revoke")
	exchange := r.start("exchange", func() error { return exchanger.ExchangeTokens(ctx, x) })
	revoke := r.start("revoke", func() error {
		return revoker.DeactivateTokensByRequest(ctx, "grant", store.KindRefreshToken, store.KindAccessToken)
	})
	release()
	if !exchange.waited || !revoke.waited {
		t.Fatalf("the race was not played: the exchange waited %v, the revocation %v", exchange.waited, revoke.waited)
	}
	r.must(revoke.wait())
	if err := exchange.wait(); err != nil && !errors.Is(err, store.ErrConsumed) {
		t.Fatalf("exchange: %v, want success or ErrConsumed", err)
	}
	if left := r.activeTokens("u1"); len(left) > 0 {
		t.Fatalf("the grant was revoked, yet these are active: %q", left)
	}
}

// raceCode plays the race of a code issued while end (a transaction that
// has ended what the code needs and not committed yet) is in progress: the
// code waits for it, and must not come out active.
func raceCode(t *testing.T, r *lockRace, code *store.TokenRecord, end func(ctx context.Context, s *sqlstore.Store) error) {
	t.Helper()
	ctx := t.Context()
	ender, issuer := r.party("end"), r.party("code")
	tx := r.begin(ender)
	r.must(end(tx, ender))
	issue := r.start("code", func() error { return issuer.CreateToken(ctx, code) })
	r.must(ender.Commit(tx))
	if !issue.waited {
		t.Fatal("the race was not played: the code did not wait")
	}
	if err := issue.wait(); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("code: %v, want ErrNotFound", err)
	}
	if left := r.activeTokens(code.Subject); len(left) > 0 {
		t.Fatalf("a code issued meanwhile survived: %q", left)
	}
}

// TestCodeRacingEndSessions: the authorize endpoint read a live session,
// and issues a code in it while the user's sessions are being ended (the
// ending transaction has deleted them and deactivated their tokens).
func TestCodeRacingEndSessions(t *testing.T) {
	r := newLockRace(t)
	r.newUserSession("u1", "sid-1")
	raceCode(t, r, lockToken(store.KindAuthorizeCode, "code", "R", "sid-1"), func(ctx context.Context, s *sqlstore.Store) error {
		_, err := s.DeleteUserSessions(ctx, "u1", "")
		return err
	})
}

// TestCodeRacingRevokeConsent: the authorize endpoint read the user's
// consent, and issues a code of the app while the user takes its access
// back (the revocation has deleted the consent and deactivated the app's
// tokens).
func TestCodeRacingRevokeConsent(t *testing.T) {
	r := newLockRace(t)
	r.newUserSession("u1", "sid-1")
	r.must(r.main.CreateClient(t.Context(), &store.Client{ID: "app", Name: "App"}))
	r.must(r.main.PutConsent(t.Context(), "u1", "app", []string{"openid"}, lockT0))
	code := lockToken(store.KindAuthorizeCode, "code", "R", "sid-1")
	code.Consented = true
	raceCode(t, r, code, func(ctx context.Context, s *sqlstore.Store) error { return s.RevokeConsent(ctx, "u1", "app") })
}

// TestStartSessionRacingNewCredentials: a login's last step stores its
// session while the account's credentials change: a password change (or
// reset), which replaces the hash, then ends the user's sessions, 2FA
// turned on (a new authenticator confirmed), then the others ended, or the
// support desk's 2FA reset (idp user reset-mfa), which removes the
// authenticator, then ends them. Whether the change has got as far as
// ending them (holding the user's row FOR UPDATE) or has only changed the
// row (a no-key update, beside which a foreign key's KEY SHARE lock is
// granted), the login's statement waits for the change and then finds the
// new security stamp: no session from before the change is left. So with
// a TOTP code to spend, which locks the authenticator's row first (a
// change that removes or replaces it holds it too, and takes it before
// the user's row, so neither waits for the other in turn).
func TestStartSessionRacingNewCredentials(t *testing.T) {
	for _, step := range []int64{0, 2} {
		t.Run(map[int64]string{0: "password only", 2: "with a TOTP code"}[step], func(t *testing.T) {
			testStartSessionRacingNewCredentials(t, step)
		})
	}
}

func testStartSessionRacingNewCredentials(t *testing.T, step int64) {
	for _, tc := range []struct {
		name   string
		change func(ctx context.Context, s *sqlstore.Store) error
		ended  bool // the change has ended the sessions before the login's statement runs
	}{
		{"password, after the sessions ended", newPassword, true},
		{"password, between hash and ending", newPassword, false},
		{"2FA on, after the sessions ended", confirmTOTP, true},
		{"2FA on, between enabling and ending", confirmTOTP, false},
		{"2FA reset, after the sessions ended", resetMFA, true},
		{"2FA reset, between reset and ending", resetMFA, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLockRace(t)
			ctx := t.Context()
			r.must(r.main.CreateUser(ctx, &store.User{ID: "u1", Email: "u1@example.com", PasswordHash: "old", CreatedAt: lockT0}))
			r.must(r.main.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: "u1", SecretEnc: []byte("s"), CreatedAt: lockT0,
				ExpiresAt: lockT0.Add(time.Hour)}))
			r.must(r.main.ConfirmTOTP(ctx, "u1", []byte("s"), 1, nil, lockT0))
			r.must(r.main.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: "u1", SecretEnc: []byte("s2"), CreatedAt: lockT0,
				ExpiresAt: lockT0.Add(time.Hour)})) // for confirmTOTP: a new authenticator
			u, err := r.main.GetUser(ctx, "u1")
			r.must(err)
			changer, login := r.party("change"), r.party("login")
			tx := r.begin(changer)
			r.must(tc.change(tx, changer))
			endSessions := func() {
				_, err := changer.DeleteUserSessions(tx, "u1", "")
				r.must(err)
			}
			if tc.ended {
				endSessions()
			}
			start := r.start("login", func() error {
				end := store.LoginEnd{Key: []byte("login-key"), SpentUntil: lockT0.Add(time.Hour), Stamp: u.SecurityStamp, TOTPStep: step}
				return login.StartSession(ctx, end, &store.Session{TokenHash: []byte("h"), ID: "sid", UserID: "u1",
					AMR: []string{"pwd", "otp"}, CreatedAt: lockT0, LastSeen: lockT0, ExpiresAt: lockT0.Add(time.Hour)})
			})
			if !start.waited {
				t.Fatal("the race was not played: the login's statement did not wait for the change")
			}
			if !tc.ended {
				endSessions()
			}
			r.must(changer.Commit(tx))
			if err := start.wait(); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("StartSession: %v, want ErrNotFound", err)
			}
			list, err := r.main.ListUserSessions(ctx, "u1", lockT0)
			r.must(err)
			if len(list) > 0 {
				t.Fatalf("a session from before the change survived it: %+v", list)
			}
			if sid, err := r.main.LoginSession(ctx, []byte("login-key")); err != nil || sid != "" {
				t.Fatalf("the refused login's session: %q %v, want none", sid, err)
			}
		})
	}
}

func newPassword(ctx context.Context, s *sqlstore.Store) error {
	return s.UpdatePassword(ctx, "u1", "new", lockT0)
}

func resetMFA(ctx context.Context, s *sqlstore.Store) error { return s.DeleteMFA(ctx, "u1") }

func confirmTOTP(ctx context.Context, s *sqlstore.Store) error {
	return s.ConfirmTOTP(ctx, "u1", []byte("s2"), 1, nil, lockT0)
}

func resetUser(r *lockRace, links ...string) {
	r.t.Helper()
	ctx := r.t.Context()
	r.must(r.main.CreateUser(ctx, &store.User{ID: "u1", Email: "u1@example.com", PasswordHash: "h0", CreatedAt: lockT0}))
	for _, l := range links {
		r.must(r.main.CreatePasswordReset(ctx, &store.PasswordReset{TokenHash: []byte(l), UserID: "u1",
			CreatedAt: lockT0, ExpiresAt: lockT0.Add(time.Hour)}))
	}
}

// resetPassword is a reset as the web layer applies it, in tx: the link
// consumed, then the password set (which voids the user's other links).
func resetPassword(tx context.Context, s *sqlstore.Store, link, hash string) error {
	uid, err := s.ConsumePasswordReset(tx, []byte(link), lockT0)
	if err != nil {
		return err
	}
	return s.UpdatePassword(tx, uid, hash, lockT0)
}

// passwordOf is the user's password hash.
func (r *lockRace) passwordOf(userID string) string {
	r.t.Helper()
	u, err := r.main.GetUser(r.t.Context(), userID)
	r.must(err)
	return u.PasswordHash
}

// TestResetRacingPasswordChange: a password change on My Page (the
// password set, then the user's links voided) starts while a reset has
// consumed its link and not yet set the password. It waits for the reset,
// and both succeed, one after the other (they used to lock users and
// password_resets in opposite orders: a deadlock, and a 500).
func TestResetRacingPasswordChange(t *testing.T) {
	r := newLockRace(t)
	ctx := t.Context()
	resetUser(r, "P1")
	resetter, changer := r.party("reset"), r.party("change")
	tx := r.begin(resetter)
	uid, err := resetter.ConsumePasswordReset(tx, []byte("P1"), lockT0)
	r.must(err)
	change := r.start("change", func() error {
		return committed(ctx, changer, func(tx context.Context) error {
			return changer.UpdatePassword(tx, "u1", "h-change", lockT0)
		})
	})
	if !change.waited {
		t.Fatalf("the race was not played: the change did not wait (%v)", change.wait())
	}
	r.must(resetter.UpdatePassword(tx, uid, "h-reset", lockT0))
	r.must(resetter.Commit(tx))
	r.must(change.wait())
	if got := r.passwordOf("u1"); got != "h-change" {
		t.Fatalf("password %q, want the change's, which came last", got)
	}
}

// TestTwoResetLinksAtOnce: two reset links of one user used at once. The
// second waits for the first reset, then finds its link voided by it
// (ErrConsumed, "link used"); no deadlock.
func TestTwoResetLinksAtOnce(t *testing.T) {
	r := newLockRace(t)
	ctx := t.Context()
	resetUser(r, "P1", "P2")
	a, b := r.party("a"), r.party("b")
	atx := r.begin(a)
	_, err := a.ConsumePasswordReset(atx, []byte("P1"), lockT0)
	r.must(err)
	second := r.start("b", func() error {
		return committed(ctx, b, func(tx context.Context) error { return resetPassword(tx, b, "P2", "hb") })
	})
	if !second.waited {
		t.Fatalf("the race was not played: the second reset did not wait (%v)", second.wait())
	}
	r.must(a.UpdatePassword(atx, "u1", "ha", lockT0))
	r.must(a.Commit(atx))
	if err := second.wait(); !errors.Is(err, store.ErrConsumed) {
		t.Fatalf("second reset: %v, want ErrConsumed", err)
	}
	if got := r.passwordOf("u1"); got != "ha" {
		t.Fatalf("password %q, want the first reset's", got)
	}
}

// TestDeadlockIsUnavailable: a deadlock PostgreSQL broke by rolling one
// transaction back is store.ErrUnavailable (a 503, try again), not an
// unclassified error (a 500). Two password changes, each in a transaction,
// of two users taken in opposite orders.
func TestDeadlockIsUnavailable(t *testing.T) {
	r := newLockRace(t)
	ctx := t.Context()
	for _, id := range []string{"u1", "u2"} {
		r.must(r.main.CreateUser(ctx, &store.User{ID: id, Email: id + "@example.com", CreatedAt: lockT0}))
	}
	a, b := r.party("a"), r.party("b")
	atx := r.begin(a)
	btx := r.begin(b)
	r.must(a.UpdatePassword(atx, "u1", "h", lockT0))
	r.must(b.UpdatePassword(btx, "u2", "h", lockT0))
	first := r.start("a", func() error { return a.UpdatePassword(atx, "u2", "h", lockT0) })
	if !first.waited {
		t.Fatalf("the race was not played: a did not wait (%v)", first.wait())
	}
	errB := b.UpdatePassword(btx, "u1", "h", lockT0)
	errA := first.wait()
	if (errA == nil) == (errB == nil) {
		t.Fatalf("a: %v, b: %v; want one of them to fail", errA, errB)
	}
	if err := errors.Join(errA, errB); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("the deadlock: %v, want ErrUnavailable", err)
	}
}

// TestConcurrentRotations: a key rotation starts while another has stored
// its key and not committed (instances starting together on an empty
// database, or after a change of algorithm). The second waits for the
// first and retires its key: one key is current, the second's.
func TestConcurrentRotations(t *testing.T) {
	key := func(id string) *store.SigningKey {
		return &store.SigningKey{ID: id, Algorithm: "RS256", PrivateEnc: []byte("x"), PublicJWK: []byte("{}"), CreatedAt: lockT0}
	}
	for _, tc := range []struct {
		name   string
		before []string // keys rotated in first
	}{
		{"empty database", nil},
		{"after a key", []string{"k0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLockRace(t)
			ctx := t.Context()
			for _, id := range tc.before {
				r.must(r.main.AddSigningKey(ctx, key(id), lockT0, false))
			}
			a, b := r.party("a"), r.party("b")
			atx := r.begin(a)
			r.must(a.AddSigningKey(atx, key("k1"), lockT0, false))
			second := r.start("b", func() error { return b.AddSigningKey(ctx, key("k2"), lockT0, false) })
			if !second.waited {
				t.Fatalf("the second rotation did not wait for the first (%v)", second.wait())
			}
			r.must(a.Commit(atx))
			r.must(second.wait())
			ks, err := r.main.ListSigningKeys(ctx)
			r.must(err)
			var current []string
			for _, k := range ks {
				if k.RetiredAt.IsZero() {
					current = append(current, k.ID)
				}
			}
			if len(current) != 1 || current[0] != "k2" {
				t.Fatalf("current keys %q, want the second rotation's alone", current)
			}
		})
	}
}

// TestResetLinkRacingDisable: a reset link is made for an account (the
// forgot-password page read it enabled) while the account is being
// disabled, whose transaction has voided the links made before. The new
// link waits for it and is not made: none outlives the disable.
func TestResetLinkRacingDisable(t *testing.T) {
	r := newLockRace(t)
	ctx := t.Context()
	r.newUserSession("u1", "sid-1")
	disabler, maker := r.party("disable"), r.party("reset")
	tx := r.begin(disabler)
	_, err := disabler.SetUserDisabled(tx, "u1", lockT0)
	r.must(err)
	link := &store.PasswordReset{TokenHash: []byte("reset-1"), UserID: "u1", CreatedAt: lockT0, ExpiresAt: lockT0.Add(time.Hour)}
	making := r.start("reset", func() error { return maker.CreatePasswordReset(ctx, link) })
	if !making.waited {
		t.Fatal("the race was not played: the link did not wait for the disable")
	}
	r.must(disabler.Commit(tx))
	if err := making.wait(); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("link: %v, want ErrNotFound", err)
	}
	if _, err := r.main.GetPasswordReset(ctx, link.TokenHash, lockT0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the link made meanwhile: %v, want none", err)
	}
}

// TestSweepRacingRecordFailure: the cleanup sweeps a throttle quiet for a
// day while a failure, the one that locks, is being recorded on it. The
// sweep waits for the failure's transaction and then finds the row no
// longer quiet: the lockout is kept. (The sweep's condition was only in
// its subquery, whose choice PostgreSQL does not check again on the new
// row: the lockout was deleted.)
func TestSweepRacingRecordFailure(t *testing.T) {
	r := newLockRace(t)
	ctx := t.Context()
	p := store.ThrottlePolicy{MaxFailures: 3, BaseLockout: time.Minute, MaxLockout: time.Hour}
	for range 2 {
		_, err := r.main.RecordFailure(ctx, "k", p, lockT0)
		r.must(err)
	}
	t1 := lockT0.Add(store.ThrottleQuiet + time.Hour)
	a := r.party("failure")
	atx := r.begin(a)
	_, err := a.RecordFailure(atx, "k", p, t1)
	r.must(err)
	sweeper := r.party("sweeper")
	sweep := r.start("sweeper", func() error { _, err := sweeper.DeleteExpired(ctx, t1, 0); return err })
	if !sweep.waited {
		t.Fatalf("the race was not played: the sweep did not wait (%v)", sweep.wait())
	}
	r.must(a.Commit(atx))
	r.must(sweep.wait())
	th, err := r.main.GetThrottle(ctx, "k")
	r.must(err)
	if th.Lockouts != 1 || !th.LockedUntil.After(t1) {
		t.Fatalf("throttle after the sweep: %+v, want the lockout the failure set", *th)
	}
}

// TestRotationRacingAlgorithmChange: `idp keys rotate` (keep the algorithm)
// starts while a server starting with another IDP_SIGNING_ALG has stored
// its key and not committed. The rotation waits for it, then finds the
// current key of the other algorithm and adds nothing: the server's key
// stays current.
func TestRotationRacingAlgorithmChange(t *testing.T) {
	r := newLockRace(t)
	ctx := t.Context()
	key := func(id, alg string) *store.SigningKey {
		return &store.SigningKey{ID: id, Algorithm: alg, PrivateEnc: []byte("x"), PublicJWK: []byte("{}"), CreatedAt: lockT0}
	}
	r.must(r.main.AddSigningKey(ctx, key("rs0", "RS256"), lockT0, false))
	server, admin := r.party("server"), r.party("admin")
	stx := r.begin(server)
	r.must(server.AddSigningKey(stx, key("es1", "ES256"), lockT0, false))
	rotation := r.start("admin", func() error { return admin.AddSigningKey(ctx, key("rs2", "RS256"), lockT0, true) })
	if !rotation.waited {
		t.Fatalf("the rotation did not wait for the server's key (%v)", rotation.wait())
	}
	r.must(server.Commit(stx))
	if err := rotation.wait(); !errors.Is(err, store.ErrOtherAlgorithm) {
		t.Fatalf("the rotation after the server's ES256 key: %v, want ErrOtherAlgorithm", err)
	}
	id, err := r.main.CurrentSigningKeyID(ctx)
	r.must(err)
	if id != "es1" {
		t.Fatalf("current key %s, want the server's es1", id)
	}
}
