// Package storetest is the conformance suite every store.Store backend
// passes: each method, each documented edge (expiry at the caller's now,
// the one-time operations, the error kinds) and races on the one-time
// operations that only a single atomic statement survives.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// RunTests runs the suite. open must return a fresh, empty, migrated store
// each time it is called (once per subtest) and close it when the test ends
// (t.Cleanup). The subtests run one after another: the race tests already
// use as many connections as a small database allows at once.
func RunTests(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		f    func(t *testing.T, s store.Store)
	}{
		{"Ping", testPing},
		{"Users", testUsers},
		{"UpgradePasswordHash", testUpgradePasswordHash},
		{"SecurityStamp", testSecurityStamp},
		{"UserDisabled", testUserDisabled},
		{"DeleteUser", testDeleteUser},
		{"Clients", testClients},
		{"DeleteClient", testDeleteClient},
		{"SigningKeys", testSigningKeys},
		{"MasterKeyCheck", testMasterKeyCheck},
		{"Sessions", testSessions},
		{"Flows", testFlows},
		{"Consent", testConsent},
		{"ConsentList", testConsentList},
		{"RevokeConsent", testRevokeConsent},
		{"AddConsent", testAddConsent},
		{"TOTP", testTOTP},
		{"ConfirmReplacedTOTP", testConfirmReplacedTOTP},
		{"SecondStep", testSecondStep},
		{"PasswordStep", testPasswordStep},
		{"BackupCodes", testBackupCodes},
		{"Throttle", testThrottle},
		{"ThrottleOverflow", testThrottleOverflow},
		{"ThrottleForgive", testThrottleForgive},
		{"Audit", testAudit},
		{"Tokens", testTokens},
		{"TokenWithUser", testTokenWithUser},
		{"CodeInSession", testCodeInSession},
		{"ExchangeTokens", testExchangeTokens},
		{"Transactions", testTransactions},
		{"NestedTransactions", testNestedTransactions},
		{"DeleteExpired", testDeleteExpired},
		{"ForgetThrottles", testForgetThrottles},
		{"RaceCreateUser", testRaceCreateUser},
		{"RaceUseBackupCode", testRaceUseBackupCode},
		{"RaceUseBackupCodeInTx", testRaceUseBackupCodeInTx},
		{"RaceReplaceBackupCodes", testRaceReplaceBackupCodes},
		{"RaceTOTPStep", testRaceTOTPStep},
		{"RaceConfirmTOTP", testRaceConfirmTOTP},
		{"RaceDeactivateToken", testRaceDeactivateToken},
		{"RaceExchangeTokens", testRaceExchangeTokens},
		{"RaceDeleteFlow", testRaceDeleteFlow},
		{"StartSession", testStartSession},
		{"StartSessionWithCode", testStartSessionWithCode},
		{"RaceStartSession", testRaceStartSession},
		{"RaceStartSessionConsent", testRaceStartSessionConsent},
		{"StartSessionTOTPStep", testStartSessionTOTPStep},
		{"InvalidUTF8Text", testInvalidUTF8Text},
		{"RaceRecordFailure", testRaceRecordFailure},
		{"RaceRecordFailureLockout", testRaceRecordFailureLockout},
		{"RaceRecordFailureReset", testRaceRecordFailureReset},
		{"RaceRecordFailureSweep", testRaceRecordFailureSweep},
		{"DeleteUserSession", testDeleteUserSession},
		{"EndSession", testEndSession},
		{"RotateSession", testRotateSession},
		{"PasswordResets", testPasswordResets},
		{"PasswordResetInTx", testPasswordResetInTx},
		{"RaceConsumePasswordReset", testRaceConsumePasswordReset},
		{"MailOutbox", testMailOutbox},
		{"GiveUpMail", testGiveUpMail},
		{"ReleaseMail", testReleaseMail},
		{"RaceClaimMail", testRaceClaimMail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, open(t)) })
	}
}

// t0 is the suite's clock: every time is t0 plus whole seconds, since the
// store keeps one-second resolution.
var t0 = time.Date(2030, 4, 1, 9, 30, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// racers is how many goroutines each race test runs.
const racers = 20

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErr fails unless errors.Is(err, want); want nil means no error.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil && err != nil {
		t.Fatalf("%s: unexpected error %v", what, err)
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// same fails unless got and want are equal: times compared with Equal
// (any location), nil and empty slices alike.
func same(t *testing.T, what string, got, want any) {
	t.Helper()
	if !equal(reflect.ValueOf(got), reflect.ValueOf(want)) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, show(got), show(want))
	}
}

// show dereferences pointers so failures print values.
func show(v any) any {
	r := reflect.ValueOf(v)
	if r.Kind() == reflect.Pointer && !r.IsNil() {
		return r.Elem().Interface()
	}
	return v
}

var timeType = reflect.TypeFor[time.Time]()

func equal(a, b reflect.Value) bool {
	if !a.IsValid() || !b.IsValid() {
		return a.IsValid() == b.IsValid()
	}
	if a.Type() != b.Type() {
		return false
	}
	if a.Type() == timeType {
		return a.Interface().(time.Time).Equal(b.Interface().(time.Time))
	}
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equal(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := range a.NumField() {
			if !equal(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equal(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(a.Interface(), b.Interface())
	}
}

func newUser(t *testing.T, s store.Store, id string) *store.User {
	t.Helper()
	u := &store.User{ID: id, Email: id + "@example.com", Name: id, PasswordHash: "hash-" + id, CreatedAt: t0, UpdatedAt: t0}
	must(t, s.CreateUser(t.Context(), u))
	return u
}

// enrolledUser is newUser with an authenticator (and no backup codes).
func enrolledUser(t *testing.T, s store.Store, id string) *store.User {
	t.Helper()
	u := newUser(t, s, id)
	enroll(t, s, id)
	return u
}

// enroll gives the user userID an authenticator.
func enroll(tb testing.TB, s store.Store, userID string) {
	tb.Helper()
	secret := []byte("secret-" + userID)
	err := s.PutPendingTOTP(tb.Context(), &store.PendingTOTP{UserID: userID, SecretEnc: secret, CreatedAt: t0, ExpiresAt: at(time.Hour)})
	if err == nil {
		err = s.ConfirmTOTP(tb.Context(), userID, secret, 1, nil, t0)
	}
	if err != nil {
		tb.Fatalf("enrolling %s: %v", userID, err)
	}
}

func newClient(t *testing.T, s store.Store, id string) *store.Client {
	t.Helper()
	c := &store.Client{ID: id, Name: id, RedirectURIs: []string{"https://" + id + ".example/cb"}, CreatedAt: t0}
	must(t, s.CreateClient(t.Context(), c))
	return c
}

// race runs f in racers goroutines released at once and returns how many
// got nil; every other result must match lose.
func race(t *testing.T, lose error, f func(ctx context.Context, i int) error) int {
	t.Helper()
	ctx := t.Context()
	start := make(chan struct{})
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			<-start
			errs[i] = f(ctx, i)
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, lose):
			t.Errorf("racer %d: got error %v, want nil or %v", i, err, lose)
		}
	}
	return wins
}

// loginEnd is the end of the login key with a TOTP step (0: none),
// remembered for an hour.
func loginEnd(key, stamp string, step int64) store.LoginEnd {
	return store.LoginEnd{Key: []byte(key), SpentUntil: at(time.Hour), Stamp: stamp, TOTPStep: step}
}

// useTOTPStep ends a new login of the user with a TOTP code of step
// (StartSession): what a login's second step records.
func useTOTPStep(t *testing.T, s store.Store, userID string, step int64) error {
	t.Helper()
	u, err := s.GetUser(t.Context(), userID)
	must(t, err)
	n := fmt.Sprintf("totp-%d", useTOTPSteps.Add(1))
	return s.StartSession(t.Context(), loginEnd("login-"+n, u.SecurityStamp, step), &store.Session{
		TokenHash: []byte("hash-" + n), ID: "sid-" + n, UserID: userID, AuthTime: t0, CreatedAt: t0, LastSeen: t0,
		ExpiresAt: at(time.Hour)})
}

var useTOTPSteps atomic.Int64

func testPing(t *testing.T, s store.Store) {
	must(t, s.Ping(t.Context()))
}

func testUsers(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := &store.User{ID: "u1", Email: "Alice@Example.COM", Name: "Alice", Locale: "ja",
		PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$aGFzaA", CreatedAt: t0, UpdatedAt: at(time.Second)}
	must(t, s.CreateUser(ctx, u))

	got, err := s.GetUser(ctx, "u1")
	must(t, err)
	same(t, "GetUser", got, u)
	for _, e := range []string{"alice@example.com", "ALICE@EXAMPLE.COM", "Alice@Example.COM"} {
		got, err := s.GetUserByEmail(ctx, e)
		must(t, err)
		same(t, "GetUserByEmail("+e+")", got, u) // the e-mail as entered
	}

	_, err = s.GetUser(ctx, "nobody")
	wantErr(t, "GetUser(unknown)", err, store.ErrNotFound)
	_, err = s.GetUserByEmail(ctx, "bob@example.com")
	wantErr(t, "GetUserByEmail(unknown)", err, store.ErrNotFound)

	err = s.CreateUser(ctx, &store.User{ID: "u2", Email: "ALICE@example.com", CreatedAt: t0})
	wantErr(t, "CreateUser(same e-mail, other case)", err, store.ErrDuplicate)
	err = s.CreateUser(ctx, &store.User{ID: "u1", Email: "other@example.com", CreatedAt: t0})
	wantErr(t, "CreateUser(same id)", err, store.ErrDuplicate)
	_, err = s.GetUserByEmail(ctx, "other@example.com")
	wantErr(t, "GetUserByEmail after a failed create", err, store.ErrNotFound)

	// Case folding beyond ASCII.
	must(t, s.CreateUser(ctx, &store.User{ID: "u3", Email: "Ülrich@Example.com", CreatedAt: t0}))
	got, err = s.GetUserByEmail(ctx, "ülrich@example.com")
	must(t, err)
	same(t, "GetUserByEmail(non-ASCII)", got.ID, "u3")
	err = s.CreateUser(ctx, &store.User{ID: "u4", Email: "ÜLRICH@EXAMPLE.COM", CreatedAt: t0})
	wantErr(t, "CreateUser(non-ASCII, other case)", err, store.ErrDuplicate)

	must(t, s.UpdatePassword(ctx, "u1", "new-hash", at(time.Hour)))
	got, err = s.GetUser(ctx, "u1")
	must(t, err)
	if u.SecurityStamp == "" || got.SecurityStamp == "" || got.SecurityStamp == u.SecurityStamp {
		t.Errorf("security stamp %q after UpdatePassword, %q before: want a new one", got.SecurityStamp, u.SecurityStamp)
	}
	want := *u
	want.PasswordHash, want.UpdatedAt, want.SecurityStamp = "new-hash", at(time.Hour), got.SecurityStamp
	same(t, "GetUser after UpdatePassword", got, &want)
	wantErr(t, "UpdatePassword(unknown)", s.UpdatePassword(ctx, "nobody", "x", t0), store.ErrNotFound)

	// E-mail verification: the first time is kept.
	must(t, s.MarkEmailVerified(ctx, "u1", at(2*time.Hour)))
	must(t, s.MarkEmailVerified(ctx, "u1", at(3*time.Hour)))
	got, err = s.GetUserByEmail(ctx, "alice@example.com")
	must(t, err)
	want.EmailVerifiedAt = at(2 * time.Hour)
	same(t, "GetUserByEmail after MarkEmailVerified", got, &want)
	wantErr(t, "MarkEmailVerified(unknown)", s.MarkEmailVerified(ctx, "nobody", t0), store.ErrNotFound)

	// The language chosen on My Page.
	must(t, s.UpdateLocale(ctx, "u1", "en", at(4*time.Hour)))
	got, err = s.GetUser(ctx, "u1")
	must(t, err)
	want.Locale, want.UpdatedAt = "en", at(4*time.Hour)
	same(t, "GetUser after UpdateLocale", got, &want)
	wantErr(t, "UpdateLocale(unknown)", s.UpdateLocale(ctx, "nobody", "en", t0), store.ErrNotFound)
	verified := &store.User{ID: "u5", Email: "v@example.com", CreatedAt: t0, EmailVerifiedAt: at(time.Minute)}
	must(t, s.CreateUser(ctx, verified))
	got, err = s.GetUser(ctx, "u5")
	must(t, err)
	same(t, "GetUser of a user created verified", got, verified)
}

// testSecurityStamp: each change of the account's credentials (a new
// password, two-step verification turned on or off) gives the user a new
// security stamp, and nothing else does.
func testSecurityStamp(t *testing.T, s store.Store) {
	ctx := t.Context()
	prev := newUser(t, s, "u1").SecurityStamp
	other := newUser(t, s, "u2").SecurityStamp
	if prev == "" || prev == other {
		t.Fatalf("new users' stamps %q and %q: want two, not empty", prev, other)
	}
	step := func(what string, newStamp bool, err error) {
		t.Helper()
		must(t, err)
		u, err := s.GetUser(ctx, "u1")
		must(t, err)
		if (u.SecurityStamp != prev) != newStamp || u.SecurityStamp == "" {
			t.Errorf("%s: stamp %q, was %q; want a new one: %v", what, u.SecurityStamp, prev, newStamp)
		}
		prev = u.SecurityStamp
	}
	step("UpgradePasswordHash", false, s.UpgradePasswordHash(ctx, "u1", "hash-u1", "rehash-u1"))
	step("UpdateLocale", false, s.UpdateLocale(ctx, "u1", "en", t0))
	step("MarkEmailVerified", false, s.MarkEmailVerified(ctx, "u1", t0))
	step("PutPendingTOTP", false, s.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: "u1", SecretEnc: []byte("secret"),
		CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	step("ConfirmTOTP", true, s.ConfirmTOTP(ctx, "u1", []byte("secret"), 1, codes("a", 3), t0))
	step("ReplaceBackupCodes", false, s.ReplaceBackupCodes(ctx, "u1", codes("b", 3)))
	step("a login with a TOTP code (StartSession)", false, useTOTPStep(t, s, "u1", 2))
	step("DeleteMFA", true, s.DeleteMFA(ctx, "u1"))
	wantErr(t, "DeleteMFA again", s.DeleteMFA(ctx, "u1"), store.ErrNotFound)
	step("DeleteMFA without an authenticator", false, nil)
	step("UpdatePassword", true, s.UpdatePassword(ctx, "u1", "new", t0))
	step("SetUserDisabled", true, changed(t, true)(s.SetUserDisabled(ctx, "u1", t0)))
	step("SetUserDisabled again", false, changed(t, false)(s.SetUserDisabled(ctx, "u1", at(time.Minute))))
	step("SetUserDisabled(enable)", false, changed(t, true)(s.SetUserDisabled(ctx, "u1", time.Time{})))
	step("SetUserDisabled(enable) again", false, changed(t, false)(s.SetUserDisabled(ctx, "u1", time.Time{})))
	u2, err := s.GetUser(ctx, "u2")
	must(t, err)
	same(t, "another user's stamp", u2.SecurityStamp, other)
}

// testUserDisabled: a disabled account says since when, wherever a user is
// read, and its tokens (every kind, any session) are deactivated, not
// another user's; enabling it again keeps the tokens deactivated.
func testUserDisabled(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	newUser(t, s, "u2")
	for _, u := range []string{"u1", "u2"} {
		for i, kind := range []string{store.KindAuthorizeCode, store.KindAccessToken, store.KindRefreshToken} {
			must(t, s.CreateToken(ctx, &store.TokenRecord{Kind: kind, Signature: u + "-" + kind, RequestID: u, ClientID: "c",
				Subject: u, SessionID: []string{"", "s1", "s2"}[i], Data: []byte("{}"), Active: true, CreatedAt: t0, ExpiresAt: at(time.Hour)}))
		}
	}
	for _, u := range []string{"u1", "u2"} {
		must(t, s.CreatePasswordReset(ctx, &store.PasswordReset{TokenHash: []byte("reset-" + u), UserID: u,
			CreatedAt: t0, ExpiresAt: at(time.Hour)}))
		must(t, s.CreateSession(ctx, &store.Session{TokenHash: []byte("tok-" + u), ID: "sid-" + u, UserID: u,
			AuthTime: t0, AMR: []string{"pwd"}, CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour)}))
	}
	must(t, changed(t, true)(s.SetUserDisabled(ctx, "u1", at(time.Minute))))
	_, err := s.GetSession(ctx, []byte("tok-u1"), at(time.Minute))
	wantErr(t, "the disabled user's session", err, store.ErrNotFound)
	_, err = s.GetSession(ctx, []byte("tok-u2"), at(time.Minute))
	wantErr(t, "another user's session", err, nil)
	_, err = s.GetPasswordReset(ctx, []byte("reset-u1"), at(time.Minute))
	wantErr(t, "the disabled user's reset link", err, store.ErrNotFound)
	_, err = s.GetPasswordReset(ctx, []byte("reset-u2"), at(time.Minute))
	wantErr(t, "another user's reset link", err, nil)
	got, err := s.GetUserByEmail(ctx, "u1@example.com")
	must(t, err)
	same(t, "DisabledAt", got.DisabledAt, at(time.Minute))
	pu, _, err := s.GetPasswordStep(ctx, "u1@example.com", "k")
	must(t, err)
	same(t, "GetPasswordStep's DisabledAt", pu.DisabledAt, at(time.Minute))
	for _, u := range []string{"u1", "u2"} {
		for _, kind := range []string{store.KindAuthorizeCode, store.KindAccessToken, store.KindRefreshToken} {
			tk, err := s.GetToken(ctx, kind, u+"-"+kind)
			must(t, err)
			if tk.Active != (u == "u2") {
				t.Errorf("%s's %s active %v after disabling u1", u, kind, tk.Active)
			}
		}
	}
	// Disabled again, it keeps the time it was first disabled.
	must(t, changed(t, false)(s.SetUserDisabled(ctx, "u1", at(2*time.Minute))))
	got, err = s.GetUser(ctx, "u1")
	must(t, err)
	same(t, "DisabledAt after disabling again", got.DisabledAt, at(time.Minute))
	must(t, changed(t, true)(s.SetUserDisabled(ctx, "u1", time.Time{})))
	got, err = s.GetUser(ctx, "u1")
	must(t, err)
	same(t, "DisabledAt after enabling", got.DisabledAt.IsZero(), true)
	tk, err := s.GetToken(ctx, store.KindRefreshToken, "u1-"+store.KindRefreshToken)
	must(t, err)
	same(t, "a token after enabling", tk.Active, false)
	wantErr(t, "SetUserDisabled(unknown)", changed(t, false)(s.SetUserDisabled(ctx, "nobody", t0)), store.ErrNotFound)
	wantErr(t, "SetUserDisabled(unknown, enable)", changed(t, false)(s.SetUserDisabled(ctx, "nobody", time.Time{})),
		store.ErrNotFound)
}

// changed checks the changed result of SetUserDisabled and passes its error
// on.
func changed(t *testing.T, want bool) func(bool, error) error {
	return func(got bool, err error) error {
		t.Helper()
		if got != want {
			t.Errorf("SetUserDisabled changed %v, want %v", got, want)
		}
		return err
	}
}

// testDeleteUser: a deleted account takes with it everything kept of it
// (sessions, authenticator, backup codes, consents, reset links, tokens,
// audit events, mails in the outbox), and nothing of another account.
func testDeleteUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	newClient(t, s, "app")
	for _, id := range []string{"u1", "u2"} {
		enrolledUser(t, s, id)
		must(t, s.ReplaceBackupCodes(ctx, id, codes(id, 3)))
		must(t, s.CreateSession(ctx, &store.Session{TokenHash: []byte("tok-" + id), ID: "sid-" + id, UserID: id,
			AuthTime: t0, AMR: []string{"pwd"}, CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour)}))
		_, err := s.AddConsent(ctx, id, "app", []string{"openid"}, t0)
		must(t, err)
		must(t, s.CreateToken(ctx, &store.TokenRecord{Kind: store.KindRefreshToken, Signature: "rt-" + id, RequestID: id,
			ClientID: "app", Subject: id, SessionID: "sid-" + id, Data: []byte("{}"), Active: true, CreatedAt: t0, ExpiresAt: at(time.Hour)}))
		must(t, s.AddAuditEvent(ctx, &store.AuditEvent{UserID: id, Type: "mfa.enabled", CreatedAt: t0}))
		must(t, s.CreatePasswordReset(ctx, &store.PasswordReset{TokenHash: []byte("reset-" + id), UserID: id,
			CreatedAt: t0, ExpiresAt: at(time.Hour)}))
		must(t, s.EnqueueMail(ctx, &store.Mail{To: id + "@example.com", Subject: "s", Body: "b", NextAttemptAt: t0, CreatedAt: t0}))
	}
	must(t, s.DeleteUser(ctx, "u1"))
	wantErr(t, "DeleteUser(again)", s.DeleteUser(ctx, "u1"), store.ErrNotFound)
	for _, id := range []string{"u1", "u2"} {
		gone := id == "u1"
		want := func(what string, err error) {
			t.Helper()
			if gone {
				wantErr(t, id+"'s "+what, err, store.ErrNotFound)
			} else {
				wantErr(t, id+"'s "+what, err, nil)
			}
		}
		_, err := s.GetUser(ctx, id)
		want("account", err)
		_, err = s.GetSession(ctx, []byte("tok-"+id), t0)
		want("session", err)
		_, err = s.GetToken(ctx, store.KindRefreshToken, "rt-"+id)
		want("refresh token", err)
		_, err = s.GetPasswordReset(ctx, []byte("reset-"+id), t0)
		want("reset link", err)
		scopes, err := s.GetConsent(ctx, id, "app")
		must(t, err)
		events, err := s.ListAuditEvents(ctx, id, 10)
		must(t, err)
		bcs, err := s.ListBackupCodes(ctx, id)
		must(t, err)
		if (len(scopes) == 0) != gone || (len(events) == 0) != gone || (len(bcs) == 0) != gone {
			t.Errorf("%s after deleting u1: consent %q, %d audit events, %d backup codes", id, scopes, len(events), len(bcs))
		}
	}
	mails, err := s.ClaimMail(ctx, at(time.Minute), at(time.Hour), 10)
	must(t, err)
	if len(mails) != 1 || mails[0].To != "u2@example.com" {
		t.Errorf("mails left in the outbox: %+v, want u2's alone", mails)
	}
}

// testUpgradePasswordHash: a login's rehash replaces the hash it verified,
// and only that one: a password changed after the login read the user is
// kept.
func testUpgradePasswordHash(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := newUser(t, s, "u1")
	newUser(t, s, "u2")
	must(t, s.UpgradePasswordHash(ctx, "u1", "hash-u1", "rehash-u1"))
	got, err := s.GetUser(ctx, "u1")
	must(t, err)
	want := *u
	want.PasswordHash = "rehash-u1" // UpdatedAt kept
	same(t, "GetUser after UpgradePasswordHash", got, &want)

	// The password changes; a login that read the user before still
	// holds the old hash.
	must(t, s.UpdatePassword(ctx, "u1", "changed", at(time.Hour)))
	must(t, s.UpgradePasswordHash(ctx, "u1", "rehash-u1", "stale-rehash"))
	got, err = s.GetUser(ctx, "u1")
	must(t, err)
	want.PasswordHash, want.UpdatedAt, want.SecurityStamp = "changed", at(time.Hour), got.SecurityStamp
	same(t, "GetUser after a stale UpgradePasswordHash", got, &want)

	must(t, s.UpgradePasswordHash(ctx, "nobody", "x", "y"))
	got, err = s.GetUser(ctx, "u2")
	must(t, err)
	same(t, "another user's hash", got.PasswordHash, "hash-u2")
}

func testClients(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := &store.Client{
		ID: "app", Name: "The App", SecretHash: []byte{0, 1, 2, 0xff},
		RedirectURIs:           []string{"https://app.example/cb", "https://app.example/cb2?x=1,2"},
		PostLogoutRedirectURIs: []string{"https://app.example/"},
		FirstParty:             true, CreatedAt: t0,
	}
	must(t, s.CreateClient(ctx, c))
	got, err := s.GetClient(ctx, "app")
	must(t, err)
	same(t, "GetClient", got, c)

	pub := &store.Client{ID: "spa", Name: "SPA", RedirectURIs: []string{"http://localhost:8080/cb"}, Public: true, CreatedAt: t0}
	must(t, s.CreateClient(ctx, pub))
	got, err = s.GetClient(ctx, "spa")
	must(t, err)
	same(t, "GetClient(public)", got, pub)
	if len(got.SecretHash) != 0 || len(got.PostLogoutRedirectURIs) != 0 {
		t.Fatalf("public client: got secret %x, post-logout URIs %q; want none", got.SecretHash, got.PostLogoutRedirectURIs)
	}

	wantErr(t, "CreateClient(same id)", s.CreateClient(ctx, &store.Client{ID: "app", CreatedAt: t0}), store.ErrDuplicate)
	_, err = s.GetClient(ctx, "nope")
	wantErr(t, "GetClient(unknown)", err, store.ErrNotFound)

	list, err := s.ListClients(ctx)
	must(t, err)
	same(t, "ListClients", list, []store.Client{*c, *pub})

	// An update changes the name, the URIs and the first-party flag, not
	// the secret, the kind or the creation time.
	upd := *c
	upd.Name, upd.RedirectURIs, upd.PostLogoutRedirectURIs, upd.FirstParty = "Renamed", []string{"https://new.example/cb"}, nil, false
	upd.SecretHash, upd.Public, upd.CreatedAt = []byte{7}, true, at(time.Hour)
	must(t, s.UpdateClient(ctx, &upd))
	got, err = s.GetClient(ctx, "app")
	must(t, err)
	want := *c
	want.Name, want.RedirectURIs, want.PostLogoutRedirectURIs, want.FirstParty = "Renamed", []string{"https://new.example/cb"}, nil, false
	same(t, "GetClient after UpdateClient", got, &want)
	wantErr(t, "UpdateClient(unknown)", s.UpdateClient(ctx, &store.Client{ID: "nope"}), store.ErrNotFound)
	must(t, s.UpdateClient(ctx, c)) // back as it was

	// A new secret for the confidential client, the old one kept for a
	// while, then another without keeping the one it replaces; none for
	// the public one.
	must(t, s.SetClientSecret(ctx, "app", []byte{9, 8, 7}, at(time.Hour)))
	got, err = s.GetClient(ctx, "app")
	must(t, err)
	same(t, "secrets after SetClientSecret(keep the old)", [][]byte{got.SecretHash, got.RotatedSecretHash}, [][]byte{{9, 8, 7}, c.SecretHash})
	same(t, "RotatedUntil", got.RotatedUntil, at(time.Hour))
	late := time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC) // past 2038: a 64-bit time
	must(t, s.SetClientSecret(ctx, "app", []byte{9, 8, 7}, late))
	got, err = s.GetClient(ctx, "app")
	must(t, err)
	same(t, "RotatedUntil past 2038", got.RotatedUntil, late)
	must(t, s.SetClientSecret(ctx, "app", []byte{6}, time.Time{}))
	got, err = s.GetClient(ctx, "app")
	must(t, err)
	same(t, "secret after SetClientSecret(drop the old)", got.SecretHash, []byte{6})
	same(t, "rotated secret dropped", len(got.RotatedSecretHash) == 0 && got.RotatedUntil.IsZero(), true)
	wantErr(t, "SetClientSecret(public)", s.SetClientSecret(ctx, "spa", []byte{1}, time.Time{}), store.ErrNotFound)
	wantErr(t, "SetClientSecret(unknown)", s.SetClientSecret(ctx, "nope", []byte{1}, time.Time{}), store.ErrNotFound)
	got, err = s.GetClient(ctx, "spa")
	must(t, err)
	same(t, "public client's secret", len(got.SecretHash), 0)
}

// testDeleteClient: a deleted client takes its consents and its tokens
// with it, and nothing of another client's.
func testDeleteClient(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := newUser(t, s, "u1")
	for _, id := range []string{"gone", "kept"} {
		newClient(t, s, id)
		_, err := s.AddConsent(ctx, u.ID, id, []string{"openid", "email"}, t0)
		must(t, err)
		for _, kind := range []string{store.KindAuthorizeCode, store.KindAccessToken, store.KindRefreshToken} {
			must(t, s.CreateToken(ctx, &store.TokenRecord{Kind: kind, Signature: id + "-" + kind, RequestID: "r-" + id,
				ClientID: id, Subject: u.ID, Data: []byte("{}"), Active: true, CreatedAt: t0, ExpiresAt: at(time.Hour)}))
		}
	}
	must(t, s.DeleteClient(ctx, "gone"))
	_, err := s.GetClient(ctx, "gone")
	wantErr(t, "GetClient(deleted)", err, store.ErrNotFound)
	wantErr(t, "DeleteClient(again)", s.DeleteClient(ctx, "gone"), store.ErrNotFound)
	for _, id := range []string{"gone", "kept"} {
		scopes, err := s.GetConsent(ctx, u.ID, id)
		must(t, err)
		for _, kind := range []string{store.KindAuthorizeCode, store.KindAccessToken, store.KindRefreshToken} {
			_, terr := s.GetToken(ctx, kind, id+"-"+kind)
			if id == "gone" {
				wantErr(t, "the deleted client's "+kind, terr, store.ErrNotFound)
			} else {
				wantErr(t, "the other client's "+kind, terr, nil)
			}
		}
		if got := len(scopes) > 0; got != (id == "kept") {
			t.Fatalf("consent to %s after deleting gone: %q", id, scopes)
		}
	}
	list, err := s.ListClients(ctx)
	must(t, err)
	same(t, "clients left", len(list), 1)
	same(t, "the client left", list[0].ID, "kept")

	// A token written under the deleted id afterwards (by a server whose
	// cache still held the client) does not come back with a new client
	// of that id.
	must(t, s.CreateToken(ctx, &store.TokenRecord{Kind: store.KindRefreshToken, Signature: "late", RequestID: "r-late",
		ClientID: "gone", Subject: u.ID, Data: []byte("{}"), Active: true, CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	newClient(t, s, "gone")
	_, err = s.GetToken(ctx, store.KindRefreshToken, "late")
	wantErr(t, "a token of the deleted client, after a new client took its id", err, store.ErrNotFound)
	_, err = s.GetToken(ctx, store.KindRefreshToken, "kept-"+store.KindRefreshToken)
	wantErr(t, "the other client's token, after a new client", err, nil)
}

// testMasterKeyCheck: the first check recorded stays; a later one is
// answered with it.
func testMasterKeyCheck(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.MasterKeyCheck(ctx)
	wantErr(t, "MasterKeyCheck before any", err, store.ErrNotFound)
	got, err := s.RecordMasterKeyCheck(ctx, []byte("first"), t0)
	must(t, err)
	same(t, "the first check recorded", got, []byte("first"))
	got, err = s.RecordMasterKeyCheck(ctx, []byte("second"), at(time.Hour))
	must(t, err)
	same(t, "a second check recorded", got, []byte("first"))
	got, err = s.MasterKeyCheck(ctx)
	must(t, err)
	same(t, "MasterKeyCheck", got, []byte("first"))
}

func testSigningKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	ks, err := s.ListSigningKeys(ctx)
	must(t, err)
	if len(ks) != 0 {
		t.Fatalf("ListSigningKeys on an empty store: %d keys", len(ks))
	}
	_, err = s.CurrentSigningKeyID(ctx)
	wantErr(t, "CurrentSigningKeyID on an empty store", err, store.ErrNotFound)
	current := func(what, want string) {
		t.Helper()
		id, err := s.CurrentSigningKeyID(ctx)
		must(t, err)
		same(t, "CurrentSigningKeyID "+what, id, want)
	}
	key := func(id string, created time.Time) store.SigningKey {
		return store.SigningKey{ID: id, Algorithm: "ES256", PrivateEnc: []byte("enc-" + id),
			PublicJWK: []byte(`{"kid":"` + id + `"}`), CreatedAt: created}
	}
	retired := func(k store.SigningKey, at time.Time) store.SigningKey { k.RetiredAt = at; return k }

	k1 := key("k1", t0)
	in := k1
	in.RetiredAt = at(time.Minute)               // ignored: a new key is current
	must(t, s.AddSigningKey(ctx, &in, t0, true)) // no current key: any algorithm
	ks, err = s.ListSigningKeys(ctx)
	must(t, err)
	same(t, "after k1", ks, []store.SigningKey{k1})
	current("after k1", "k1")

	k2 := key("k2", at(time.Hour))
	must(t, s.AddSigningKey(ctx, &k2, at(time.Hour), false))
	k3 := key("k3", at(2*time.Hour))
	must(t, s.AddSigningKey(ctx, &k3, at(2*time.Hour), false))
	ks, err = s.ListSigningKeys(ctx)
	must(t, err)
	same(t, "after k3", ks, []store.SigningKey{k3, retired(k2, at(2*time.Hour)), retired(k1, at(time.Hour))})
	current("after k3", "k3")

	// A duplicate id fails and retires nothing.
	dup := key("k3", at(3*time.Hour))
	wantErr(t, "AddSigningKey(same id)", s.AddSigningKey(ctx, &dup, at(3*time.Hour), false), store.ErrDuplicate)
	ks, err = s.ListSigningKeys(ctx)
	must(t, err)
	same(t, "after a failed add", ks, []store.SigningKey{k3, retired(k2, at(2*time.Hour)), retired(k1, at(time.Hour))})
	current("after a failed add", "k3")

	// Created in the same second as k3: the current key still comes first.
	k4 := key("k4", at(2*time.Hour))
	must(t, s.AddSigningKey(ctx, &k4, at(3*time.Hour), false))
	ks, err = s.ListSigningKeys(ctx)
	must(t, err)
	same(t, "after k4", ks, []store.SigningKey{k4, retired(k3, at(3*time.Hour)), retired(k2, at(2*time.Hour)), retired(k1, at(time.Hour))})
	current("after k4, made in k3's second", "k4")

	n, err := s.DeleteSigningKeysRetiredBefore(ctx, at(2*time.Hour))
	must(t, err)
	same(t, "deleted retired before k2's retirement", n, 1)
	n, err = s.DeleteSigningKeysRetiredBefore(ctx, at(100*time.Hour))
	must(t, err)
	same(t, "deleted every retired key", n, 2)
	ks, err = s.ListSigningKeys(ctx)
	must(t, err)
	same(t, "the current key survives", ks, []store.SigningKey{k4})

	// Told to keep the algorithm, an add of another algorithm's key
	// changes nothing; one of the current key's algorithm goes in.
	rs := key("k5", at(4*time.Hour))
	rs.Algorithm = "RS256"
	wantErr(t, "AddSigningKey(RS256 over ES256, same algorithm)", s.AddSigningKey(ctx, &rs, at(4*time.Hour), true), store.ErrOtherAlgorithm)
	ks, err = s.ListSigningKeys(ctx)
	must(t, err)
	same(t, "after an add of another algorithm refused", ks, []store.SigningKey{k4})
	k6 := key("k6", at(4*time.Hour))
	must(t, s.AddSigningKey(ctx, &k6, at(4*time.Hour), true))
	current("after k6, of k4's algorithm", "k6")
	must(t, s.AddSigningKey(ctx, &rs, at(5*time.Hour), false))
	current("after k5, another algorithm, not kept", "k5")
}

func testSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	newUser(t, s, "u2")
	mk := func(n, user string, lastSeen, expires time.Duration) *store.Session {
		return &store.Session{TokenHash: []byte("hash-" + n), ID: "sid-" + n, UserID: user, AuthTime: t0,
			AMR: []string{"pwd"}, CreatedAt: t0, LastSeen: at(lastSeen), ExpiresAt: at(expires),
			UserAgent: "UA " + n, IP: "192.0.2.1"}
	}
	s1 := mk("1", "u1", 10*time.Minute, time.Hour)
	s1.AMR, s1.Remember, s1.IP = []string{"pwd", "otp"}, true, "2001:db8::1"
	must(t, s.CreateSession(ctx, s1))

	got, err := s.GetSession(ctx, s1.TokenHash, t0)
	must(t, err)
	same(t, "GetSession", got, s1)
	_, err = s.GetSession(ctx, s1.TokenHash, at(time.Hour-time.Second))
	must(t, err)
	_, err = s.GetSession(ctx, s1.TokenHash, at(time.Hour))
	wantErr(t, "GetSession at ExpiresAt", err, store.ErrNotFound)
	_, err = s.GetSession(ctx, s1.TokenHash, time.Time{})
	must(t, err) // a zero now: expired or not
	_, err = s.GetSession(ctx, []byte("unknown"), t0)
	wantErr(t, "GetSession(unknown)", err, store.ErrNotFound)

	dup := mk("1", "u1", 0, time.Hour)
	wantErr(t, "CreateSession(same token hash)", s.CreateSession(ctx, dup), store.ErrDuplicate)
	dup = mk("x", "u1", 0, time.Hour)
	dup.ID = s1.ID
	wantErr(t, "CreateSession(same id)", s.CreateSession(ctx, dup), store.ErrDuplicate)

	must(t, s.TouchSession(ctx, s1.TokenHash, at(15*time.Minute), at(50*time.Minute)))
	got, err = s.GetSession(ctx, s1.TokenHash, t0)
	must(t, err)
	same(t, "LastSeen after TouchSession", got.LastSeen, at(15*time.Minute))
	same(t, "ExpiresAt after TouchSession", got.ExpiresAt, at(50*time.Minute))
	_, err = s.GetSession(ctx, s1.TokenHash, at(50*time.Minute))
	wantErr(t, "GetSession at the ExpiresAt of the touch", err, store.ErrNotFound)
	must(t, s.TouchSession(ctx, s1.TokenHash, at(15*time.Minute), s1.ExpiresAt))
	s1.LastSeen = at(15 * time.Minute)
	wantErr(t, "TouchSession(unknown)", s.TouchSession(ctx, []byte("unknown"), t0, t0), store.ErrNotFound)

	s2 := mk("2", "u1", 20*time.Minute, 2*time.Hour)
	s3 := mk("3", "u1", 5*time.Minute, 30*time.Minute)
	s4 := mk("4", "u2", 0, time.Hour)
	for _, x := range []*store.Session{s2, s3, s4} {
		must(t, s.CreateSession(ctx, x))
	}
	list, err := s.ListUserSessions(ctx, "u1", at(time.Minute))
	must(t, err)
	same(t, "ListUserSessions", list, []store.Session{*s2, *s1, *s3})
	list, err = s.ListUserSessions(ctx, "u1", at(30*time.Minute))
	must(t, err)
	same(t, "ListUserSessions without the expired one", list, []store.Session{*s2, *s1})
	list, err = s.ListUserSessions(ctx, "nobody", t0)
	must(t, err)
	same(t, "ListUserSessions(unknown user)", len(list), 0)

	n, err := s.DeleteUserSessions(ctx, "u1", s1.ID)
	must(t, err)
	same(t, "DeleteUserSessions but one", n, 2)
	list, err = s.ListUserSessions(ctx, "u1", t0)
	must(t, err)
	same(t, "the spared session", list, []store.Session{*s1})
	n, err = s.DeleteUserSessions(ctx, "u1", "")
	must(t, err)
	same(t, "DeleteUserSessions all", n, 1)
	_, err = s.GetSession(ctx, s1.TokenHash, t0)
	wantErr(t, "GetSession after DeleteUserSessions", err, store.ErrNotFound)
	_, err = s.GetSession(ctx, s4.TokenHash, t0)
	must(t, err) // another user's session stays

	must(t, s.DeleteSession(ctx, s4.TokenHash))
	wantErr(t, "DeleteSession twice", s.DeleteSession(ctx, s4.TokenHash), store.ErrNotFound)
	_, err = s.GetSession(ctx, s4.TokenHash, t0)
	wantErr(t, "GetSession after DeleteSession", err, store.ErrNotFound)
}

func testFlows(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := &store.Flow{Key: []byte{0, 0xff, 0x10, 0}, Data: []byte(`{"step":"password"}`), CreatedAt: t0, ExpiresAt: at(10 * time.Minute)}
	must(t, s.PutFlow(ctx, f))
	got, err := s.GetFlow(ctx, f.Key, t0)
	must(t, err)
	same(t, "GetFlow", got, f)
	_, err = s.GetFlow(ctx, f.Key, at(10*time.Minute))
	wantErr(t, "GetFlow at ExpiresAt", err, store.ErrNotFound)
	_, err = s.GetFlow(ctx, []byte("other"), t0)
	wantErr(t, "GetFlow(unknown)", err, store.ErrNotFound)

	f2 := &store.Flow{Key: f.Key, Data: []byte(`{"step":"totp"}`), CreatedAt: at(time.Minute), ExpiresAt: at(20 * time.Minute)}
	must(t, s.PutFlow(ctx, f2))
	got, err = s.GetFlow(ctx, f.Key, at(15*time.Minute))
	must(t, err)
	same(t, "GetFlow after a replacing PutFlow", got, f2)

	must(t, s.DeleteFlow(ctx, f.Key))
	wantErr(t, "DeleteFlow twice", s.DeleteFlow(ctx, f.Key), store.ErrNotFound)
	_, err = s.GetFlow(ctx, f.Key, t0)
	wantErr(t, "GetFlow after DeleteFlow", err, store.ErrNotFound)
}

func testConsent(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	newClient(t, s, "app")
	newClient(t, s, "other")
	got, err := s.GetConsent(ctx, "u1", "app")
	must(t, err)
	same(t, "GetConsent(none)", len(got), 0)

	must(t, s.PutConsent(ctx, "u1", "app", []string{"openid", "profile", "email"}, t0))
	got, err = s.GetConsent(ctx, "u1", "app")
	must(t, err)
	same(t, "GetConsent", got, []string{"openid", "profile", "email"})
	must(t, s.PutConsent(ctx, "u1", "app", []string{"openid"}, at(time.Hour)))
	got, err = s.GetConsent(ctx, "u1", "app")
	must(t, err)
	same(t, "GetConsent after a replacing PutConsent", got, []string{"openid"})
	got, err = s.GetConsent(ctx, "u1", "other")
	must(t, err)
	same(t, "GetConsent(other client)", len(got), 0)
}

func codes(prefix string, n int) []store.BackupCode {
	cs := make([]store.BackupCode, n)
	for i := range cs {
		cs[i] = store.BackupCode{Position: i, Hash: []byte(fmt.Sprintf("%s-hash-%d", prefix, i)), Enc: []byte(fmt.Sprintf("%s-enc-%d", prefix, i))}
	}
	return cs
}

func testTOTP(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	mfa := func(want bool) {
		t.Helper()
		u, err := s.GetUser(ctx, "u1")
		must(t, err)
		if u.MFAEnabled != want {
			t.Fatalf("MFAEnabled = %v, want %v", u.MFAEnabled, want)
		}
	}

	_, err := getTOTP(ctx, s, "u1")
	wantErr(t, "the authenticator(none)", err, store.ErrNotFound)
	_, err = s.GetPendingTOTP(ctx, "u1", t0)
	wantErr(t, "GetPendingTOTP(none)", err, store.ErrNotFound)
	wantErr(t, "ConfirmTOTP without a pending enrollment", s.ConfirmTOTP(ctx, "u1", []byte("secret-1"), 100, codes("a", 3), t0), store.ErrNotFound)
	wantErr(t, "a TOTP step without an authenticator", useTOTPStep(t, s, "u1", 1), store.ErrNotFound)
	wantErr(t, "DeleteMFA without an authenticator", s.DeleteMFA(ctx, "u1"), store.ErrNotFound)

	p := &store.PendingTOTP{UserID: "u1", SecretEnc: []byte("secret-1"), CreatedAt: t0, ExpiresAt: at(10 * time.Minute)}
	must(t, s.PutPendingTOTP(ctx, p))
	got, err := s.GetPendingTOTP(ctx, "u1", t0)
	must(t, err)
	same(t, "GetPendingTOTP", got, p)
	_, err = s.GetPendingTOTP(ctx, "u1", at(10*time.Minute))
	wantErr(t, "GetPendingTOTP at ExpiresAt", err, store.ErrNotFound)
	p = &store.PendingTOTP{UserID: "u1", SecretEnc: []byte("secret-2"), CreatedAt: at(time.Minute), ExpiresAt: at(11 * time.Minute)}
	must(t, s.PutPendingTOTP(ctx, p))
	got, err = s.GetPendingTOTP(ctx, "u1", t0)
	must(t, err)
	same(t, "GetPendingTOTP after a replacing put", got, p)
	mfa(false)

	wantErr(t, "ConfirmTOTP after expiry", s.ConfirmTOTP(ctx, "u1", []byte("secret-2"), 100, codes("a", 3), at(11*time.Minute)), store.ErrNotFound)
	_, err = getTOTP(ctx, s, "u1")
	wantErr(t, "the authenticator after a failed confirm", err, store.ErrNotFound)

	must(t, s.ConfirmTOTP(ctx, "u1", []byte("secret-2"), 100, codes("a", 3), at(2*time.Minute)))
	totp, err := getTOTP(ctx, s, "u1")
	must(t, err)
	same(t, "the authenticator", totp, &store.TOTP{UserID: "u1", SecretEnc: []byte("secret-2"), LastStep: 100, ConfirmedAt: at(2 * time.Minute)})
	_, err = s.GetPendingTOTP(ctx, "u1", t0)
	wantErr(t, "GetPendingTOTP after confirm", err, store.ErrNotFound)
	cs, err := s.ListBackupCodes(ctx, "u1")
	must(t, err)
	same(t, "backup codes after confirm", cs, codes("a", 3))
	mfa(true)
	wantErr(t, "ConfirmTOTP twice", s.ConfirmTOTP(ctx, "u1", []byte("secret-2"), 101, codes("b", 3), at(3*time.Minute)), store.ErrNotFound)

	wantErr(t, "the TOTP step that confirmed", useTOTPStep(t, s, "u1", 100), store.ErrConsumed)
	wantErr(t, "an earlier TOTP step", useTOTPStep(t, s, "u1", 99), store.ErrConsumed)
	must(t, useTOTPStep(t, s, "u1", 101))
	wantErr(t, "a TOTP step replayed", useTOTPStep(t, s, "u1", 101), store.ErrConsumed)
	must(t, useTOTPStep(t, s, "u1", 105))
	totp, err = getTOTP(ctx, s, "u1")
	must(t, err)
	same(t, "LastStep", totp.LastStep, int64(105))

	// A new enrollment changes nothing until it is confirmed.
	must(t, s.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: "u1", SecretEnc: []byte("secret-3"), CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	totp, err = getTOTP(ctx, s, "u1")
	must(t, err)
	same(t, "secret while re-enrolling", totp.SecretEnc, []byte("secret-2"))
	must(t, s.ConfirmTOTP(ctx, "u1", []byte("secret-3"), 50, codes("c", 2), at(4*time.Minute)))
	totp, err = getTOTP(ctx, s, "u1")
	must(t, err)
	same(t, "the authenticator after re-enrolling", totp, &store.TOTP{UserID: "u1", SecretEnc: []byte("secret-3"), LastStep: 50, ConfirmedAt: at(4 * time.Minute)})
	cs, err = s.ListBackupCodes(ctx, "u1")
	must(t, err)
	same(t, "backup codes after re-enrolling", cs, codes("c", 2))

	must(t, s.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: "u1", SecretEnc: []byte("secret-4"), CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	must(t, s.DeleteMFA(ctx, "u1"))
	_, err = getTOTP(ctx, s, "u1")
	wantErr(t, "the authenticator after DeleteMFA", err, store.ErrNotFound)
	_, err = s.GetPendingTOTP(ctx, "u1", t0)
	wantErr(t, "GetPendingTOTP after DeleteMFA", err, store.ErrNotFound)
	cs, err = s.ListBackupCodes(ctx, "u1")
	must(t, err)
	same(t, "backup codes after DeleteMFA", len(cs), 0)
	mfa(false)
	wantErr(t, "DeleteMFA twice", s.DeleteMFA(ctx, "u1"), store.ErrNotFound)
}

// testConfirmReplacedTOTP: a confirmation installs only the pending secret
// the caller verified a code against. Once a setup started since (another
// tab) has replaced it, the confirmation fails, 2FA stays off and the
// newer enrollment stays pending; that one can still be confirmed.
func testConfirmReplacedTOTP(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	must(t, s.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: "u1", SecretEnc: []byte("secret-1"), CreatedAt: t0, ExpiresAt: at(10 * time.Minute)}))
	newer := &store.PendingTOTP{UserID: "u1", SecretEnc: []byte("secret-2"), CreatedAt: at(time.Minute), ExpiresAt: at(11 * time.Minute)}
	must(t, s.PutPendingTOTP(ctx, newer))

	wantErr(t, "ConfirmTOTP of a replaced secret", s.ConfirmTOTP(ctx, "u1", []byte("secret-1"), 100, codes("a", 3), at(2*time.Minute)),
		store.ErrConsumed)
	_, err := getTOTP(ctx, s, "u1")
	wantErr(t, "the authenticator after confirming a replaced secret", err, store.ErrNotFound)
	u, err := s.GetUser(ctx, "u1")
	must(t, err)
	same(t, "MFAEnabled after confirming a replaced secret", u.MFAEnabled, false)
	cs, err := s.ListBackupCodes(ctx, "u1")
	must(t, err)
	same(t, "backup codes after confirming a replaced secret", len(cs), 0)
	got, err := s.GetPendingTOTP(ctx, "u1", at(2*time.Minute))
	must(t, err)
	same(t, "the newer enrollment", got, newer)
	// The same stale secret once the newer enrollment expired: not found.
	wantErr(t, "ConfirmTOTP of a replaced secret after expiry",
		s.ConfirmTOTP(ctx, "u1", []byte("secret-1"), 100, codes("a", 3), at(11*time.Minute)), store.ErrNotFound)

	must(t, s.ConfirmTOTP(ctx, "u1", []byte("secret-2"), 101, codes("b", 3), at(3*time.Minute)))
	totp, err := getTOTP(ctx, s, "u1")
	must(t, err)
	same(t, "the authenticator", totp, &store.TOTP{UserID: "u1", SecretEnc: []byte("secret-2"), LastStep: 101, ConfirmedAt: at(3 * time.Minute)})
}

// testSecondStep: one read gives what GetUser and GetThrottles give, and
// the authenticator, with or without one and a throttle on record.
func testSecondStep(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.GetSecondStep(ctx, "nobody", "mfa:nobody", nil)
	wantErr(t, "GetSecondStep(no user)", err, store.ErrNotFound)

	newUser(t, s, "u1")
	newUser(t, s, "u2")
	check := func(userID, key string, totp *store.TOTP) *store.SecondStep {
		t.Helper()
		got, err := s.GetSecondStep(ctx, userID, key, []byte("login-"+userID))
		must(t, err)
		sid, err := s.LoginSession(ctx, []byte("login-"+userID))
		must(t, err)
		same(t, "GetSecondStep's login session", got.LoginSession, sid)
		u, err := s.GetUser(ctx, userID)
		must(t, err)
		same(t, "GetSecondStep's user", got.User, u)
		ts, err := s.GetThrottles(ctx, key)
		must(t, err)
		same(t, "GetSecondStep's throttle", got.Throttle, ts[0])
		same(t, "GetSecondStep's authenticator", got.TOTP, totp)
		return got
	}
	if st := check("u1", "mfa:u1", nil); st.User.MFAEnabled || st.Throttle.Failures != 0 {
		t.Fatalf("before enrolling: %+v", st)
	}
	must(t, s.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: "u1", SecretEnc: []byte("secret-1"), CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	must(t, s.ConfirmTOTP(ctx, "u1", []byte("secret-1"), 100, codes("a", 3), at(time.Minute)))
	must(t, useTOTPStep(t, s, "u1", 102))
	p := store.ThrottlePolicy{MaxFailures: 2, BaseLockout: time.Minute, MaxLockout: time.Hour}
	for range 3 {
		_, err := s.RecordFailure(ctx, "mfa:u1", p, t0)
		must(t, err)
	}
	st := check("u1", "mfa:u1", &store.TOTP{UserID: "u1", SecretEnc: []byte("secret-1"), LastStep: 102, ConfirmedAt: at(time.Minute)})
	if st.TOTP == nil || st.TOTP.LastStep != 102 || !st.User.MFAEnabled || st.Throttle.Lockouts != 1 || st.Throttle.Failures != 1 {
		t.Fatalf("enrolled and throttled: user %+v, authenticator %+v, throttle %+v", st.User, st.TOTP, st.Throttle)
	}
	// The login's end, with the rest.
	must(t, s.StartSession(ctx, loginEnd("login-u1", st.User.SecurityStamp, 0), &store.Session{TokenHash: []byte("h"), ID: "sid",
		UserID: "u1", CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour)}))
	if st := check("u1", "mfa:u1", st.TOTP); st.LoginSession != "sid" {
		t.Fatalf("GetSecondStep after the login's end: session %q, want sid", st.LoginSession)
	}
	// Another user's throttle and authenticator are not this one's.
	if st := check("u2", "mfa:u2", nil); st.TOTP != nil || st.Throttle.Failures != 0 || st.Throttle.Lockouts != 0 || st.LoginSession != "" {
		t.Fatalf("u2: %+v %+v", st.TOTP, st.Throttle)
	}
}

// testPasswordStep: one read gives what GetUserByEmail and GetThrottles
// give, whether the user and the throttles exist or not.
func testPasswordStep(t *testing.T, s store.Store) {
	ctx := t.Context()
	check := func(email string, keys ...string) (*store.User, []store.Throttle) {
		t.Helper()
		u, ts, err := s.GetPasswordStep(ctx, email, keys...)
		must(t, err)
		want, err := userOrNone(s.GetUserByEmail(ctx, email))
		must(t, err)
		same(t, "GetPasswordStep's user", u, want)
		wantTs, err := s.GetThrottles(ctx, keys...)
		must(t, err)
		same(t, "GetPasswordStep's throttles", ts, wantTs)
		return u, ts
	}
	if u, ts := check("nobody@example.com", "acct:a", "ip:1"); u != nil || len(ts) != 2 || ts[0].Key != "acct:a" || ts[1].Key != "ip:1" {
		t.Fatalf("nothing on record: %+v %+v", u, ts)
	}
	newUser(t, s, "u1")
	p := store.ThrottlePolicy{MaxFailures: 2, BaseLockout: time.Minute, MaxLockout: time.Hour}
	for _, k := range []string{"acct:a", "ip:1", "ip:1", "ip:1"} {
		_, err := s.RecordFailure(ctx, k, p, t0)
		must(t, err)
	}
	if u, ts := check("U1@Example.COM", "acct:a", "ip:1", "acct:a"); u == nil || u.ID != "u1" || ts[0].Failures != 1 || ts[1].Lockouts != 1 || ts[2] != ts[0] {
		t.Fatalf("user and throttles on record: %+v %+v", u, ts)
	}
	if u, ts := check("u1@example.com"); u == nil || len(ts) != 0 {
		t.Fatalf("no keys: %+v %+v", u, ts)
	}
	check("u1@example.com", "acct:other", "ip:1")
}

// userOrNone is a user read with ErrNotFound as no user (nil, nil).
func userOrNone(u *store.User, err error) (*store.User, error) {
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return u, err
}

// getTOTP is the user's authenticator as GetSecondStep reads it;
// ErrNotFound when there is none.
func getTOTP(ctx context.Context, s store.Store, userID string) (*store.TOTP, error) {
	st, err := s.GetSecondStep(ctx, userID, "mfa:"+userID, nil)
	if err != nil {
		return nil, err
	}
	if st.TOTP == nil {
		return nil, store.ErrNotFound
	}
	return st.TOTP, nil
}

func testBackupCodes(t *testing.T, s store.Store) {
	ctx := t.Context()
	enrolledUser(t, s, "u1")
	enrolledUser(t, s, "u2")
	cs := codes("a", 5)
	shuffled := []store.BackupCode{cs[3], cs[0], cs[4], cs[2], cs[1]}
	must(t, s.ReplaceBackupCodes(ctx, "u1", shuffled))
	must(t, s.ReplaceBackupCodes(ctx, "u2", codes("b", 2)))
	got, err := s.ListBackupCodes(ctx, "u1")
	must(t, err)
	same(t, "ListBackupCodes (by Position)", got, cs)

	left, err := s.UseBackupCode(ctx, "u1", cs[2].Hash, at(time.Hour))
	must(t, err)
	same(t, "remaining", left, 4)
	_, err = s.UseBackupCode(ctx, "u1", cs[2].Hash, at(2*time.Hour))
	wantErr(t, "UseBackupCode twice", err, store.ErrConsumed)
	_, err = s.UseBackupCode(ctx, "u1", []byte("unknown"), t0)
	wantErr(t, "UseBackupCode(unknown)", err, store.ErrConsumed)
	_, err = s.UseBackupCode(ctx, "u1", codes("b", 1)[0].Hash, t0)
	wantErr(t, "UseBackupCode(another user's code)", err, store.ErrConsumed)
	left, err = s.UseBackupCode(ctx, "u1", cs[0].Hash, at(3*time.Hour))
	must(t, err)
	same(t, "remaining", left, 3)

	got, err = s.ListBackupCodes(ctx, "u1")
	must(t, err)
	want := codes("a", 5)
	want[2].UsedAt, want[0].UsedAt = at(time.Hour), at(3*time.Hour)
	same(t, "ListBackupCodes after use", got, want)

	must(t, s.ReplaceBackupCodes(ctx, "u1", codes("c", 3)))
	got, err = s.ListBackupCodes(ctx, "u1")
	must(t, err)
	same(t, "ListBackupCodes after ReplaceBackupCodes", got, codes("c", 3))
	_, err = s.UseBackupCode(ctx, "u1", cs[1].Hash, t0)
	wantErr(t, "UseBackupCode(a replaced code)", err, store.ErrConsumed)
	left, err = s.UseBackupCode(ctx, "u1", codes("c", 3)[1].Hash, t0)
	must(t, err)
	same(t, "remaining", left, 2)

	must(t, s.ReplaceBackupCodes(ctx, "u1", nil))
	got, err = s.ListBackupCodes(ctx, "u1")
	must(t, err)
	same(t, "ListBackupCodes after replacing with none", len(got), 0)
	got, err = s.ListBackupCodes(ctx, "u2")
	must(t, err)
	same(t, "another user's codes", got, codes("b", 2))

	// No codes without an authenticator: never enrolled, or turned off
	// (by the user, or the support desk's reset) since the caller read
	// the account.
	newUser(t, s, "u3")
	wantErr(t, "ReplaceBackupCodes without an authenticator", s.ReplaceBackupCodes(ctx, "u3", codes("d", 3)), store.ErrNotFound)
	must(t, s.DeleteMFA(ctx, "u2"))
	wantErr(t, "ReplaceBackupCodes after DeleteMFA", s.ReplaceBackupCodes(ctx, "u2", codes("d", 3)), store.ErrNotFound)
	for _, id := range []string{"u2", "u3"} {
		got, err = s.ListBackupCodes(ctx, id)
		must(t, err)
		same(t, id+"'s codes without an authenticator", len(got), 0)
	}
}

func testThrottle(t *testing.T, s store.Store) {
	ctx := t.Context()
	p := store.ThrottlePolicy{MaxFailures: 3, BaseLockout: time.Minute, MaxLockout: 5 * time.Minute}
	th, err := s.GetThrottle(ctx, "k")
	must(t, err)
	same(t, "GetThrottle(none)", th, &store.Throttle{Key: "k"})

	fail := func(now time.Time, want store.Throttle) {
		t.Helper()
		want.Key = "k"
		th, err := s.RecordFailure(ctx, "k", p, now)
		must(t, err)
		same(t, "RecordFailure", th, &want)
		th, err = s.GetThrottle(ctx, "k")
		must(t, err)
		same(t, "GetThrottle", th, &want)
	}
	fail(t0, store.Throttle{Failures: 1})
	fail(t0, store.Throttle{Failures: 2})
	fail(t0, store.Throttle{Lockouts: 1, LockedUntil: at(time.Minute)})
	// Each further lockout doubles, up to MaxLockout.
	now := at(time.Hour)
	fail(now, store.Throttle{Failures: 1, Lockouts: 1, LockedUntil: at(time.Minute)})
	fail(now, store.Throttle{Failures: 2, Lockouts: 1, LockedUntil: at(time.Minute)})
	fail(now, store.Throttle{Lockouts: 2, LockedUntil: now.Add(2 * time.Minute)})
	locked := now.Add(2 * time.Minute)
	for i, d := range []time.Duration{4 * time.Minute, 5 * time.Minute, 5 * time.Minute} {
		now = at(time.Duration(i+2) * time.Hour)
		fail(now, store.Throttle{Failures: 1, Lockouts: 2 + i, LockedUntil: locked})
		fail(now, store.Throttle{Failures: 2, Lockouts: 2 + i, LockedUntil: locked})
		locked = now.Add(d)
		fail(now, store.Throttle{Lockouts: 3 + i, LockedUntil: locked})
	}

	// Keys are independent; a lockout on the first failure.
	one := store.ThrottlePolicy{MaxFailures: 1, BaseLockout: 30 * time.Second, MaxLockout: time.Hour}
	th, err = s.RecordFailure(ctx, "other", one, t0)
	must(t, err)
	same(t, "RecordFailure(MaxFailures 1)", th, &store.Throttle{Key: "other", Lockouts: 1, LockedUntil: at(30 * time.Second)})

	must(t, s.ResetThrottle(ctx, "k"))
	th, err = s.GetThrottle(ctx, "k")
	must(t, err)
	same(t, "GetThrottle after ResetThrottle", th, &store.Throttle{Key: "k"})
	must(t, s.ResetThrottle(ctx, "k")) // absent: fine
	th, err = s.RecordFailure(ctx, "k", p, t0)
	must(t, err)
	same(t, "RecordFailure after ResetThrottle", th, &store.Throttle{Key: "k", Failures: 1})
	th, err = s.GetThrottle(ctx, "other")
	must(t, err)
	same(t, "the other key", th.Lockouts, 1)

	// Several keys in one read, in the order asked, absent ones zero.
	ths, err := s.GetThrottles(ctx, "other", "absent", "k", "other")
	must(t, err)
	same(t, "GetThrottles", ths, []store.Throttle{
		{Key: "other", Lockouts: 1, LockedUntil: at(30 * time.Second)},
		{Key: "absent"},
		{Key: "k", Failures: 1},
		{Key: "other", Lockouts: 1, LockedUntil: at(30 * time.Second)},
	})
	ths, err = s.GetThrottles(ctx)
	must(t, err)
	same(t, "GetThrottles()", len(ths), 0)
}

// testThrottleForgive: with Forgive, each whole Forgive without a failure
// takes one off the count, never below zero and never while the key is
// locked; lockouts are never forgiven.
func testThrottleForgive(t *testing.T, s store.Store) {
	ctx := t.Context()
	p := store.ThrottlePolicy{MaxFailures: 4, BaseLockout: time.Minute, MaxLockout: time.Hour, Forgive: time.Minute}
	fail := func(now time.Time, want store.Throttle) {
		t.Helper()
		want.Key = "k"
		th, err := s.RecordFailure(ctx, "k", p, now)
		must(t, err)
		same(t, "RecordFailure at +"+now.Sub(t0).String(), th, &want)
	}
	fail(t0, store.Throttle{Failures: 1})
	fail(t0, store.Throttle{Failures: 2})
	fail(at(30*time.Second), store.Throttle{Failures: 3})                           // less than a Forgive since the last
	fail(at(30*time.Second+119*time.Second), store.Throttle{Failures: 3})           // one whole Forgive: 3-1+1
	fail(at(30*time.Second+119*time.Second+time.Hour), store.Throttle{Failures: 1}) // all of them, never below zero
	// One failure a Forgive is never locked.
	now := at(2 * time.Hour)
	for i := range 10 {
		fail(now.Add(time.Duration(i)*time.Minute), store.Throttle{Failures: 1})
	}
	// Faster, the key locks; once the lock is over, the failures it lets
	// through lock it again, for twice as long.
	now = at(3 * time.Hour)
	fail(now, store.Throttle{Failures: 1})
	fail(now, store.Throttle{Failures: 2})
	fail(now, store.Throttle{Failures: 3})
	fail(now, store.Throttle{Lockouts: 1, LockedUntil: now.Add(time.Minute)})
	locked := now.Add(time.Minute)
	now = locked
	fail(now, store.Throttle{Failures: 1, Lockouts: 1, LockedUntil: locked})
	fail(now, store.Throttle{Failures: 2, Lockouts: 1, LockedUntil: locked})
	fail(now, store.Throttle{Failures: 3, Lockouts: 1, LockedUntil: locked})
	fail(now, store.Throttle{Lockouts: 2, LockedUntil: now.Add(2 * time.Minute)})
	// Lockouts are not forgiven: hours later, the next one doubles again
	// (else an address failing whenever it may would start over from the
	// shortest lockout once it had served the longest).
	locked = now.Add(2 * time.Minute)
	now = now.Add(3 * time.Hour)
	fail(now, store.Throttle{Failures: 1, Lockouts: 2, LockedUntil: locked})
	fail(now, store.Throttle{Failures: 2, Lockouts: 2, LockedUntil: locked})
	fail(now, store.Throttle{Failures: 3, Lockouts: 2, LockedUntil: locked})
	fail(now, store.Throttle{Lockouts: 3, LockedUntil: now.Add(4 * time.Minute)})

	// A locked key forgives nothing: failures counted while it is locked
	// (requests that raced its lockout) stay, however long it lasts.
	long := store.ThrottlePolicy{MaxFailures: 2, BaseLockout: time.Hour, MaxLockout: time.Hour, Forgive: time.Minute}
	for i, f := range []struct {
		at   time.Duration
		want store.Throttle
	}{
		{0, store.Throttle{Failures: 1}},
		{0, store.Throttle{Lockouts: 1, LockedUntil: at(time.Hour)}},
		{30 * time.Minute, store.Throttle{Failures: 1, Lockouts: 1, LockedUntil: at(time.Hour)}},
		{59 * time.Minute, store.Throttle{Lockouts: 2, LockedUntil: at(59*time.Minute + time.Hour)}},
	} {
		th, err := s.RecordFailure(ctx, "locked", long, at(f.at))
		must(t, err)
		f.want.Key = "locked"
		same(t, fmt.Sprintf("failure %d on a locked key", i+1), th, &f.want)
	}
	// A last failure ahead of now (another instance's clock) forgives nothing.
	for i, want := range []int{1, 2} {
		th, err := s.RecordFailure(ctx, "ahead", p, at(time.Duration(1-i)*time.Hour))
		must(t, err)
		same(t, "failures after one an hour ahead", th.Failures, want)
	}
}

// testThrottleOverflow locks a key far more often than the doubling can
// count without overflowing.
func testThrottleOverflow(t *testing.T, s store.Store) {
	ctx := t.Context()
	p := store.ThrottlePolicy{MaxFailures: 1, BaseLockout: time.Second, MaxLockout: time.Hour}
	for i := range 80 {
		now := at(time.Duration(i) * 2 * time.Hour)
		th, err := s.RecordFailure(ctx, "k", p, now)
		must(t, err)
		want := min(time.Duration(1)<<min(i, 20)*time.Second, time.Hour)
		same(t, fmt.Sprintf("lockout %d", i+1), th, &store.Throttle{Key: "k", Lockouts: i + 1, LockedUntil: now.Add(want)})
	}
}

func testAudit(t *testing.T, s store.Store) {
	ctx := t.Context()
	var es []*store.AuditEvent
	for i := range 5 {
		e := &store.AuditEvent{UserID: "u1", Type: fmt.Sprintf("event.%d", i), Detail: `{"n":` + fmt.Sprint(i) + `}`,
			IP: "192.0.2.7", CreatedAt: at(time.Duration(i) * time.Minute)}
		must(t, s.AddAuditEvent(ctx, e))
		if e.ID == 0 || (i > 0 && e.ID <= es[i-1].ID) {
			t.Fatalf("AddAuditEvent: ID %d after %v", e.ID, es)
		}
		es = append(es, e)
	}
	must(t, s.AddAuditEvent(ctx, &store.AuditEvent{UserID: "u2", Type: "login", CreatedAt: t0}))

	got, err := s.ListAuditEvents(ctx, "u1", 3)
	must(t, err)
	same(t, "ListAuditEvents(limit 3)", got, []store.AuditEvent{*es[4], *es[3], *es[2]})
	got, err = s.ListAuditEvents(ctx, "u1", 50)
	must(t, err)
	same(t, "ListAuditEvents(all)", len(got), 5)
	got, err = s.ListAuditEvents(ctx, "u2", 50)
	must(t, err)
	same(t, "another user's events", len(got), 1)
	got, err = s.ListAuditEvents(ctx, "nobody", 50)
	must(t, err)
	same(t, "no events", len(got), 0)
}

// testTokenWithUser: one read gives what GetToken and GetUser give, and
// no user when the record's subject is gone.
func testTokenWithUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	newUser(t, s, "u2")
	must(t, s.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: "u2", SecretEnc: []byte("secret"), CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	must(t, s.ConfirmTOTP(ctx, "u2", []byte("secret"), 1, codes("a", 1), t0))
	for _, subject := range []string{"u1", "u2", "gone"} {
		rec := &store.TokenRecord{Kind: store.KindAccessToken, Signature: "sig-" + subject, RequestID: "req-" + subject,
			ClientID: "app", Subject: subject, SessionID: "sid", Data: []byte(`{"scopes":["openid"]}`), Active: true,
			CreatedAt: t0, ExpiresAt: at(10 * time.Minute)}
		must(t, s.CreateToken(ctx, rec))
		got, u, err := s.GetTokenWithUser(ctx, store.KindAccessToken, rec.Signature)
		must(t, err)
		same(t, "GetTokenWithUser's record", got, rec)
		want, err := userOrNone(s.GetUser(ctx, subject))
		must(t, err)
		same(t, "GetTokenWithUser's user of "+subject, u, want)
	}
	_, _, err := s.GetTokenWithUser(ctx, store.KindAccessToken, "unknown")
	wantErr(t, "GetTokenWithUser(unknown)", err, store.ErrNotFound)
	_, _, err = s.GetTokenWithUser(ctx, store.KindRefreshToken, "sig-u1")
	wantErr(t, "GetTokenWithUser(other kind)", err, store.ErrNotFound)
}

// newSession stores a session of the user with public id sid.
func newSession(t *testing.T, s store.Store, userID, sid string) {
	t.Helper()
	must(t, s.CreateSession(t.Context(), &store.Session{TokenHash: []byte("hash-" + sid), ID: sid, UserID: userID,
		CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour)}))
}

func testTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	newSession(t, s, "u1", "sid")
	rec := &store.TokenRecord{Kind: store.KindAuthorizeCode, Signature: "sig1", RequestID: "req1", ClientID: "app",
		Subject: "u1", SessionID: "sid", Data: []byte(`{"scopes":["openid"]}`), Active: true,
		CreatedAt: t0, ExpiresAt: at(10 * time.Minute)}
	must(t, s.CreateToken(ctx, rec))
	got, err := s.GetToken(ctx, store.KindAuthorizeCode, "sig1")
	must(t, err)
	same(t, "GetToken", got, rec)
	dup := *rec
	wantErr(t, "CreateToken(same kind and signature)", s.CreateToken(ctx, &dup), store.ErrDuplicate)
	dup.Kind = store.KindPKCE
	must(t, s.CreateToken(ctx, &dup)) // another kind: fine
	_, err = s.GetToken(ctx, store.KindAuthorizeCode, "unknown")
	wantErr(t, "GetToken(unknown)", err, store.ErrNotFound)
	_, err = s.GetToken(ctx, store.KindRefreshToken, "sig1")
	wantErr(t, "GetToken(other kind)", err, store.ErrNotFound)

	must(t, s.DeactivateToken(ctx, store.KindAuthorizeCode, "sig1"))
	got, err = s.GetToken(ctx, store.KindAuthorizeCode, "sig1")
	must(t, err)
	want := *rec
	want.Active = false
	same(t, "GetToken of an inactive token", got, &want)
	wantErr(t, "DeactivateToken twice", s.DeactivateToken(ctx, store.KindAuthorizeCode, "sig1"), store.ErrConsumed)
	wantErr(t, "DeactivateToken(unknown)", s.DeactivateToken(ctx, store.KindAuthorizeCode, "unknown"), store.ErrNotFound)
	got, err = s.GetToken(ctx, store.KindPKCE, "sig1")
	must(t, err)
	same(t, "the other kind stays active", got.Active, true)

	inactive := &store.TokenRecord{Kind: store.KindRefreshToken, Signature: "old", RequestID: "r", Data: []byte("x"), CreatedAt: t0}
	must(t, s.CreateToken(ctx, inactive))
	wantErr(t, "DeactivateToken(created inactive)", s.DeactivateToken(ctx, store.KindRefreshToken, "old"), store.ErrConsumed)

	for _, x := range []struct{ kind, sig, req string }{
		{store.KindAccessToken, "a1", "R"}, {store.KindAccessToken, "a2", "R"},
		{store.KindAccessToken, "a3", "S"}, {store.KindRefreshToken, "r1", "R"},
	} {
		must(t, s.CreateToken(ctx, &store.TokenRecord{Kind: x.kind, Signature: x.sig, RequestID: x.req, Data: []byte("{}"), Active: true, CreatedAt: t0}))
	}
	must(t, s.DeactivateTokensByRequest(ctx, "R", store.KindAccessToken))
	must(t, s.DeactivateTokensByRequest(ctx, "R", store.KindAccessToken))       // again: nothing to do
	must(t, s.DeactivateTokensByRequest(ctx, "unknown", store.KindAccessToken)) // none: fine
	for _, x := range []struct {
		kind, sig string
		active    bool
	}{
		{store.KindAccessToken, "a1", false}, {store.KindAccessToken, "a2", false},
		{store.KindAccessToken, "a3", true}, {store.KindRefreshToken, "r1", true},
	} {
		got, err := s.GetToken(ctx, x.kind, x.sig)
		must(t, err)
		same(t, "Active of "+x.kind+" "+x.sig+" after DeactivateTokensByRequest", got.Active, x.active)
	}
	// Both kinds of a grant at once; another kind of it, and the other
	// request's, stay.
	for _, x := range []struct{ kind, sig, req string }{
		{store.KindAccessToken, "a4", "R"}, {store.KindPKCE, "p1", "R"}, {store.KindRefreshToken, "r2", "S"},
	} {
		must(t, s.CreateToken(ctx, &store.TokenRecord{Kind: x.kind, Signature: x.sig, RequestID: x.req, Data: []byte("{}"), Active: true, CreatedAt: t0}))
	}
	must(t, s.DeactivateTokensByRequest(ctx, "R", store.KindRefreshToken, store.KindAccessToken))
	for _, x := range []struct {
		kind, sig string
		active    bool
	}{
		{store.KindRefreshToken, "r1", false}, {store.KindAccessToken, "a4", false}, {store.KindPKCE, "p1", true},
		{store.KindAccessToken, "a3", true}, {store.KindRefreshToken, "r2", true},
	} {
		got, err := s.GetToken(ctx, x.kind, x.sig)
		must(t, err)
		same(t, "Active of "+x.kind+" "+x.sig+" after DeactivateTokensByRequest of both kinds", got.Active, x.active)
	}

	must(t, s.DeleteToken(ctx, store.KindAuthorizeCode, "sig1"))
	wantErr(t, "DeleteToken twice", s.DeleteToken(ctx, store.KindAuthorizeCode, "sig1"), store.ErrNotFound)
	_, err = s.GetToken(ctx, store.KindAuthorizeCode, "sig1")
	wantErr(t, "GetToken after DeleteToken", err, store.ErrNotFound)
}

// testCodeInSession: a code issued in a session is stored only while the
// subject has that session (the authorize endpoint read it just before,
// and it may have ended since), and a code of an app that asks for consent
// only while the subject's consent to it exists; other records, and a code
// issued outside any session, are stored as they are.
func testCodeInSession(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	newUser(t, s, "u2")
	newSession(t, s, "u1", "sid-1")
	newSession(t, s, "u2", "sid-2")
	rec := func(kind, sig, subject, sid string) *store.TokenRecord {
		return &store.TokenRecord{Kind: kind, Signature: sig, RequestID: sig, ClientID: "app", Subject: subject,
			SessionID: sid, Data: []byte("{}"), Active: true, CreatedAt: t0, ExpiresAt: at(time.Hour)}
	}
	newClient(t, s, "app")
	must(t, s.PutConsent(ctx, "u1", "app", []string{"openid"}, t0))
	consented := func(r *store.TokenRecord) *store.TokenRecord { r.Consented = true; return r }
	for _, x := range []struct {
		what string
		rec  *store.TokenRecord
		want error
	}{
		{"a code in the subject's session", rec(store.KindAuthorizeCode, "c1", "u1", "sid-1"), nil},
		{"a code in another user's session", rec(store.KindAuthorizeCode, "c2", "u1", "sid-2"), store.ErrNotFound},
		{"a code in no session there is", rec(store.KindAuthorizeCode, "c3", "u1", "sid-gone"), store.ErrNotFound},
		{"a code outside any session", rec(store.KindAuthorizeCode, "c4", "u1", ""), nil},
		{"an access token in no session there is", rec(store.KindAccessToken, "a1", "u1", "sid-gone"), nil},
		{"a code of an app the subject never allowed", consented(rec(store.KindAuthorizeCode, "c6", "u2", "sid-2")), store.ErrNotFound},
		{"a code of an app the subject allowed", consented(rec(store.KindAuthorizeCode, "c7", "u1", "sid-1")), nil},
	} {
		wantErr(t, "CreateToken: "+x.what, s.CreateToken(ctx, x.rec), x.want)
		got, err := s.GetToken(ctx, x.rec.Kind, x.rec.Signature)
		if x.want != nil {
			wantErr(t, "GetToken after CreateToken: "+x.what, err, store.ErrNotFound)
			continue
		}
		must(t, err)
		got.Consented = x.rec.Consented // not stored
		same(t, "GetToken after CreateToken: "+x.what, got, x.rec)
	}
	wantErr(t, "CreateToken: the code again", s.CreateToken(ctx, rec(store.KindAuthorizeCode, "c1", "u1", "sid-1")), store.ErrDuplicate)

	// The session ends (a logout, My Page): no code is issued in it.
	must(t, s.DeleteSession(ctx, []byte("hash-sid-1")))
	wantErr(t, "CreateToken: a code in a session that ended", s.CreateToken(ctx, rec(store.KindAuthorizeCode, "c5", "u1", "sid-1")),
		store.ErrNotFound)
	_, err := s.GetToken(ctx, store.KindAuthorizeCode, "c5")
	wantErr(t, "GetToken of a code refused", err, store.ErrNotFound)

	// The app's access is taken back: no code of it is issued.
	newSession(t, s, "u1", "sid-3")
	must(t, s.RevokeConsent(ctx, "u1", "app"))
	wantErr(t, "CreateToken: a code of an app whose access was taken back",
		s.CreateToken(ctx, consented(rec(store.KindAuthorizeCode, "c8", "u1", "sid-3"))), store.ErrNotFound)
}

func testExchangeTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	newSession(t, s, "u1", "sid")
	tok := func(kind, sig, req string) *store.TokenRecord {
		return &store.TokenRecord{Kind: kind, Signature: sig, RequestID: req, ClientID: "app", Subject: "u1",
			SessionID: "sid", Data: []byte(`{"n":"` + sig + `"}`), Active: true, CreatedAt: t0, ExpiresAt: at(time.Hour)}
	}
	active := func(kind, sig string, want bool) {
		t.Helper()
		got, err := s.GetToken(ctx, kind, sig)
		must(t, err)
		same(t, "Active of "+kind+" "+sig, got.Active, want)
	}
	missing := func(kind, sig string) {
		t.Helper()
		_, err := s.GetToken(ctx, kind, sig)
		wantErr(t, "GetToken("+kind+" "+sig+")", err, store.ErrNotFound)
	}

	expires := func(kind, sig string, want time.Time) {
		t.Helper()
		got, err := s.GetToken(ctx, kind, sig)
		must(t, err)
		same(t, "ExpiresAt of "+kind+" "+sig, got.ExpiresAt, want)
	}

	// A code: spent, and the two tokens stored as given. The spent code is
	// kept as long as the refresh token, so that its reuse revokes it.
	c1 := tok(store.KindAuthorizeCode, "c1", "R")
	c1.ExpiresAt = at(5 * time.Minute)
	must(t, s.CreateToken(ctx, c1))
	a1, r1 := tok(store.KindAccessToken, "a1", "R"), tok(store.KindRefreshToken, "r1", "R")
	r1.ExpiresAt = at(30 * 24 * time.Hour)
	must(t, s.ExchangeTokens(ctx, &store.TokenExchange{SpendKind: store.KindAuthorizeCode, SpendSignature: "c1",
		Create: []*store.TokenRecord{a1, r1}}))
	active(store.KindAuthorizeCode, "c1", false)
	expires(store.KindAuthorizeCode, "c1", r1.ExpiresAt)
	for _, want := range []*store.TokenRecord{a1, r1} {
		got, err := s.GetToken(ctx, want.Kind, want.Signature)
		must(t, err)
		same(t, "stored "+want.Signature, got, want)
	}

	// Spent again, or unknown: nothing is written.
	wantErr(t, "ExchangeTokens(spent code)", s.ExchangeTokens(ctx, &store.TokenExchange{SpendKind: store.KindAuthorizeCode,
		SpendSignature: "c1", Create: []*store.TokenRecord{tok(store.KindAccessToken, "a2", "R")}}), store.ErrConsumed)
	missing(store.KindAccessToken, "a2")
	wantErr(t, "ExchangeTokens(unknown code)", s.ExchangeTokens(ctx, &store.TokenExchange{SpendKind: store.KindAuthorizeCode,
		SpendSignature: "nope", Create: []*store.TokenRecord{tok(store.KindAccessToken, "a3", "R")}}), store.ErrNotFound)
	missing(store.KindAccessToken, "a3")

	// A refresh: the old refresh token spent, the grant's access tokens
	// revoked (not another grant's), the new ones stored active.
	// The spent refresh token is kept as long as the new one; other records
	// keep their expiry (the grant's code spent earlier, a spent code of
	// another grant, a spent refresh token that outlives the new tokens).
	must(t, s.CreateToken(ctx, tok(store.KindAccessToken, "other", "S")))
	otherCode := tok(store.KindAuthorizeCode, "other-code", "S")
	must(t, s.CreateToken(ctx, otherCode))
	must(t, s.ExchangeTokens(ctx, &store.TokenExchange{SpendKind: store.KindAuthorizeCode, SpendSignature: "other-code"}))
	late := tok(store.KindRefreshToken, "late", "R")
	late.Active, late.ExpiresAt = false, at(90*24*time.Hour)
	must(t, s.CreateToken(ctx, late))
	a4, r4 := tok(store.KindAccessToken, "a4", "R"), tok(store.KindRefreshToken, "r4", "R")
	r4.ExpiresAt = at(60 * 24 * time.Hour)
	rotate := &store.TokenExchange{SpendKind: store.KindRefreshToken, SpendSignature: "r1",
		RevokeKind: store.KindAccessToken, RevokeRequest: "R", Create: []*store.TokenRecord{a4, r4}}
	must(t, s.ExchangeTokens(ctx, rotate))
	active(store.KindRefreshToken, "r1", false)
	active(store.KindAccessToken, "a1", false)
	active(store.KindAccessToken, "other", true)
	active(store.KindAccessToken, "a4", true)
	active(store.KindRefreshToken, "r4", true)
	expires(store.KindRefreshToken, "r1", r4.ExpiresAt)
	expires(store.KindAuthorizeCode, "c1", r1.ExpiresAt)
	expires(store.KindAccessToken, "a1", a1.ExpiresAt)
	expires(store.KindAuthorizeCode, "other-code", otherCode.ExpiresAt)
	expires(store.KindRefreshToken, "late", late.ExpiresAt)
	expires(store.KindRefreshToken, "r4", r4.ExpiresAt)

	// The rotated-out token again: refused, and the new access token is
	// not revoked by it.
	rotate.Create = []*store.TokenRecord{tok(store.KindAccessToken, "a5", "R")}
	wantErr(t, "ExchangeTokens(rotated-out refresh token)", s.ExchangeTokens(ctx, rotate), store.ErrConsumed)
	active(store.KindAccessToken, "a4", true)
	missing(store.KindAccessToken, "a5")

	// The rotated-out token names its successor. A retry of it spends the
	// successor (as a refresh would) and names the new token as the
	// successor of both.
	successor := func(sig, want string) {
		t.Helper()
		got, err := s.GetToken(ctx, store.KindRefreshToken, sig)
		must(t, err)
		same(t, "Successor of "+sig, got.Successor, want)
	}
	successor("r1", "r4")
	successor("r4", "")
	a9, r9 := tok(store.KindAccessToken, "a9", "R"), tok(store.KindRefreshToken, "r9", "R")
	r9.ExpiresAt = at(61 * 24 * time.Hour)
	retry := &store.TokenExchange{SpendKind: store.KindRefreshToken, SpendSignature: "r4", Relink: "r1",
		RevokeKind: store.KindAccessToken, RevokeRequest: "R", Create: []*store.TokenRecord{a9, r9}}
	must(t, s.ExchangeTokens(ctx, retry))
	active(store.KindRefreshToken, "r4", false)
	active(store.KindAccessToken, "a4", false)
	active(store.KindRefreshToken, "r9", true)
	successor("r1", "r9")
	successor("r4", "") // the lost answer's: presented again, a reuse
	successor("late", "")
	expires(store.KindRefreshToken, "r4", r9.ExpiresAt)
	expires(store.KindRefreshToken, "r1", r4.ExpiresAt)
	expires(store.KindRefreshToken, "late", late.ExpiresAt)
	// Retried again once the successor was spent: refused, nothing changed.
	retry.Create = []*store.TokenRecord{tok(store.KindAccessToken, "a10", "R"), tok(store.KindRefreshToken, "r10", "R")}
	wantErr(t, "ExchangeTokens(a retry whose successor was spent)", s.ExchangeTokens(ctx, retry), store.ErrConsumed)
	successor("r1", "r9")
	missing(store.KindRefreshToken, "r10")
	// A relink in an exchange that is no refresh is refused.
	if err := s.ExchangeTokens(ctx, &store.TokenExchange{SpendKind: store.KindAuthorizeCode, SpendSignature: "c1", Relink: "r1",
		Create: []*store.TokenRecord{tok(store.KindAccessToken, "a11", "R")}}); err == nil {
		t.Fatal("ExchangeTokens(a relink without a refresh): no error")
	}
	active(store.KindRefreshToken, "r9", true)

	// Tokens for an account that is gone: refused, and the refresh token
	// spends nothing.
	gone := tok(store.KindRefreshToken, "r-gone", "G")
	gone.Subject = "nobody"
	must(t, s.CreateToken(ctx, gone))
	newAccess := tok(store.KindAccessToken, "a-gone", "G")
	newAccess.Subject = "nobody"
	wantErr(t, "ExchangeTokens(an account that is gone)", s.ExchangeTokens(ctx, &store.TokenExchange{SpendKind: store.KindRefreshToken,
		SpendSignature: "r-gone", Create: []*store.TokenRecord{newAccess}}), store.ErrAccountInactive)
	active(store.KindRefreshToken, "r-gone", true)
	missing(store.KindAccessToken, "a-gone")

	// A new token whose signature is taken: nothing at all happens.
	must(t, s.CreateToken(ctx, tok(store.KindAuthorizeCode, "c2", "T")))
	wantErr(t, "ExchangeTokens(duplicate signature)", s.ExchangeTokens(ctx, &store.TokenExchange{SpendKind: store.KindAuthorizeCode,
		SpendSignature: "c2", Create: []*store.TokenRecord{tok(store.KindAccessToken, "a6", "T"), tok(store.KindAccessToken, "a4", "T")}}),
		store.ErrDuplicate)
	active(store.KindAuthorizeCode, "c2", true)
	missing(store.KindAccessToken, "a6")

	// New tokens of two subjects: refused, nothing written.
	other := tok(store.KindAccessToken, "a7", "T")
	other.Subject = "u2"
	err := s.ExchangeTokens(ctx, &store.TokenExchange{SpendKind: store.KindAuthorizeCode, SpendSignature: "c2",
		Create: []*store.TokenRecord{tok(store.KindAccessToken, "a6", "T"), other}})
	if err == nil {
		t.Fatal("ExchangeTokens(tokens of two subjects): no error")
	}
	active(store.KindAuthorizeCode, "c2", true)
	missing(store.KindAccessToken, "a6")

	// Only a spend.
	must(t, s.ExchangeTokens(ctx, &store.TokenExchange{SpendKind: store.KindAuthorizeCode, SpendSignature: "c2"}))
	active(store.KindAuthorizeCode, "c2", false)
	wantErr(t, "ExchangeTokens(spent, nothing created)", s.ExchangeTokens(ctx, &store.TokenExchange{SpendKind: store.KindAuthorizeCode,
		SpendSignature: "c2"}), store.ErrConsumed)

	// A disabled account gets no tokens (disabling deactivated its refresh
	// token too; the account is what the refusal says).
	_, err = s.SetUserDisabled(ctx, "u1", t0)
	must(t, err)
	wantErr(t, "ExchangeTokens(a disabled account)", s.ExchangeTokens(ctx, &store.TokenExchange{SpendKind: store.KindRefreshToken,
		SpendSignature: "r4", Create: []*store.TokenRecord{tok(store.KindAccessToken, "a8", "R")}}), store.ErrAccountInactive)
	missing(store.KindAccessToken, "a8")
}

func testTransactions(t *testing.T, s store.Store) {
	ctx := t.Context()
	if err := s.Commit(ctx); err == nil {
		t.Fatal("Commit without a transaction succeeded")
	}

	tx, err := s.BeginTx(ctx)
	must(t, err)
	must(t, s.CreateUser(tx, &store.User{ID: "u1", Email: "u1@example.com", CreatedAt: t0}))
	_, err = s.GetUser(tx, "u1")
	must(t, err) // its own write
	must(t, s.Commit(tx))
	_, err = s.GetUser(ctx, "u1")
	wantErr(t, "GetUser after Commit", err, nil)

	k1 := &store.SigningKey{ID: "k1", Algorithm: "RS256", PrivateEnc: []byte("p"), PublicJWK: []byte("{}"), CreatedAt: t0}
	must(t, s.AddSigningKey(ctx, k1, t0, false))
	must(t, s.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: "u1", SecretEnc: []byte("s"), CreatedAt: t0, ExpiresAt: at(time.Hour)}))

	// Everything done in a rolled-back transaction is undone, the
	// methods that run their own transaction included.
	tx, err = s.BeginTx(ctx)
	must(t, err)
	must(t, s.CreateUser(tx, &store.User{ID: "u2", Email: "u2@example.com", CreatedAt: t0}))
	must(t, s.CreateToken(tx, &store.TokenRecord{Kind: store.KindAccessToken, Signature: "a", Data: []byte("{}"), Active: true}))
	must(t, s.AddSigningKey(tx, &store.SigningKey{ID: "k2", Algorithm: "RS256", PrivateEnc: []byte("p"), PublicJWK: []byte("{}"), CreatedAt: t0}, at(time.Hour), false))
	must(t, s.ConfirmTOTP(tx, "u1", []byte("s"), 7, codes("a", 2), at(time.Minute)))
	_, err = getTOTP(tx, s, "u1")
	must(t, err)
	must(t, s.Rollback(tx))

	_, err = s.GetUser(ctx, "u2")
	wantErr(t, "GetUser after Rollback", err, store.ErrNotFound)
	_, err = s.GetToken(ctx, store.KindAccessToken, "a")
	wantErr(t, "GetToken after Rollback", err, store.ErrNotFound)
	ks, err := s.ListSigningKeys(ctx)
	must(t, err)
	same(t, "signing keys after Rollback", ks, []store.SigningKey{*k1})
	_, err = getTOTP(ctx, s, "u1")
	wantErr(t, "the authenticator after Rollback", err, store.ErrNotFound)
	_, err = s.GetPendingTOTP(ctx, "u1", t0)
	wantErr(t, "GetPendingTOTP after Rollback", err, nil)
	cs, err := s.ListBackupCodes(ctx, "u1")
	must(t, err)
	same(t, "backup codes after Rollback", len(cs), 0)

	// A one-time operation inside a transaction.
	must(t, s.CreateToken(ctx, &store.TokenRecord{Kind: store.KindRefreshToken, Signature: "r", RequestID: "req", Data: []byte("{}"), Active: true}))
	tx, err = s.BeginTx(ctx)
	must(t, err)
	must(t, s.DeactivateToken(tx, store.KindRefreshToken, "r"))
	wantErr(t, "DeactivateToken twice in a transaction", s.DeactivateToken(tx, store.KindRefreshToken, "r"), store.ErrConsumed)
	must(t, s.Commit(tx))
	wantErr(t, "DeactivateToken after Commit", s.DeactivateToken(ctx, store.KindRefreshToken, "r"), store.ErrConsumed)
}

// testNestedTransactions pins down the SQL stores' convention: a BeginTx
// inside a transaction joins it, its Commit leaves the commit to the outer
// one, and its Rollback undoes the whole transaction.
func testNestedTransactions(t *testing.T, s store.Store) {
	ctx := t.Context()
	outer, err := s.BeginTx(ctx)
	must(t, err)
	inner, err := s.BeginTx(outer)
	must(t, err)
	must(t, s.CreateUser(inner, &store.User{ID: "u1", Email: "u1@example.com", CreatedAt: t0}))
	must(t, s.Commit(inner))
	must(t, s.Rollback(outer))
	_, err = s.GetUser(ctx, "u1")
	wantErr(t, "GetUser after the outer Rollback", err, store.ErrNotFound)

	outer, err = s.BeginTx(ctx)
	must(t, err)
	inner, err = s.BeginTx(outer)
	must(t, err)
	must(t, s.CreateUser(inner, &store.User{ID: "u2", Email: "u2@example.com", CreatedAt: t0}))
	must(t, s.Commit(inner))
	must(t, s.Commit(outer))
	_, err = s.GetUser(ctx, "u2")
	must(t, err)

	outer, err = s.BeginTx(ctx)
	must(t, err)
	must(t, s.CreateUser(outer, &store.User{ID: "u3", Email: "u3@example.com", CreatedAt: t0}))
	inner, err = s.BeginTx(outer)
	must(t, err)
	must(t, s.Rollback(inner))
	if err := s.Commit(outer); err == nil {
		t.Fatal("Commit after an inner Rollback succeeded")
	}
	must(t, s.Rollback(outer))
	_, err = s.GetUser(ctx, "u3")
	wantErr(t, "GetUser after an inner Rollback", err, store.ErrNotFound)
}

func testDeleteExpired(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	newUser(t, s, "u2")
	now := at(time.Hour)
	// Expired: at or before now. Live: later, or no expiry at all.
	expired := []time.Time{t0, at(30 * time.Minute), now}
	live := []time.Time{now.Add(time.Second), {}}
	for i, exp := range append(expired, live...) {
		must(t, s.CreateToken(ctx, &store.TokenRecord{Kind: store.KindAccessToken, Signature: fmt.Sprint("tok", i),
			Data: []byte("{}"), Active: true, CreatedAt: t0, ExpiresAt: exp}))
		must(t, s.PutFlow(ctx, &store.Flow{Key: []byte(fmt.Sprint("flow", i)), Data: []byte("{}"), CreatedAt: t0, ExpiresAt: exp}))
		must(t, s.CreateSession(ctx, &store.Session{TokenHash: []byte(fmt.Sprint("sess", i)), ID: fmt.Sprint("sid", i),
			UserID: "u1", CreatedAt: t0, LastSeen: t0, ExpiresAt: exp}))
	}
	must(t, s.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: "u1", SecretEnc: []byte("s"), CreatedAt: t0, ExpiresAt: now}))
	must(t, s.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: "u2", SecretEnc: []byte("s"), CreatedAt: t0, ExpiresAt: now.Add(time.Minute)}))

	for i, want := range []int{2 + 2 + 2 + 1, 1 + 1 + 1, 0} {
		n, err := s.DeleteExpired(ctx, now, 2)
		must(t, err)
		same(t, fmt.Sprintf("DeleteExpired round %d", i+1), n, want)
	}
	for i := len(expired); i < len(expired)+len(live); i++ {
		_, err := s.GetToken(ctx, store.KindAccessToken, fmt.Sprint("tok", i))
		wantErr(t, "a live token", err, nil)
		_, err = s.GetFlow(ctx, []byte(fmt.Sprint("flow", i)), now)
		wantErr(t, "a live flow", err, nil)
		_, err = s.GetSession(ctx, []byte(fmt.Sprint("sess", i)), now)
		wantErr(t, "a live session", err, nil)
	}
	for i := range expired {
		_, err := s.GetToken(ctx, store.KindAccessToken, fmt.Sprint("tok", i))
		wantErr(t, "an expired token", err, store.ErrNotFound)
	}
	_, err := s.GetPendingTOTP(ctx, "u2", now)
	wantErr(t, "a live pending enrollment", err, nil)
	list, err := s.ListUserSessions(ctx, "u1", t0)
	must(t, err)
	same(t, "sessions left", len(list), len(live))
}

// testForgetThrottles: the cleanup forgets a throttle ThrottleQuiet after
// its last failure, and never while it is locked.
func testForgetThrottles(t *testing.T, s store.Store) {
	ctx := t.Context()
	p := store.ThrottlePolicy{MaxFailures: 2, BaseLockout: time.Minute, MaxLockout: 48 * time.Hour}
	_, err := s.RecordFailure(ctx, "quiet", p, t0)
	must(t, err)
	_, err = s.RecordFailure(ctx, "recent", p, t0)
	must(t, err)
	_, err = s.RecordFailure(ctx, "recent", store.ThrottlePolicy{MaxFailures: 5, BaseLockout: time.Minute}, at(2*time.Hour))
	must(t, err)
	for i := range 6 { // locked until t0 + 2^(lockouts-1) minutes: past the quiet time
		_, err = s.RecordFailure(ctx, "locked", store.ThrottlePolicy{MaxFailures: 1, BaseLockout: 24 * time.Hour, MaxLockout: 96 * time.Hour}, at(time.Duration(i)*time.Second))
		must(t, err)
	}
	left := func(what string, want ...string) {
		t.Helper()
		ts, err := s.GetThrottles(ctx, "quiet", "recent", "locked")
		must(t, err)
		var got []string
		for _, th := range ts {
			if th.Failures > 0 || th.Lockouts > 0 {
				got = append(got, th.Key)
			}
		}
		same(t, what, got, want)
	}
	_, err = s.DeleteExpired(ctx, t0.Add(store.ThrottleQuiet-time.Second), 0)
	must(t, err)
	left("before the quiet time", "quiet", "recent", "locked")
	_, err = s.DeleteExpired(ctx, t0.Add(store.ThrottleQuiet+time.Minute), 0)
	must(t, err)
	left("after the quiet time", "recent", "locked")
}

func testRaceCreateUser(t *testing.T, s store.Store) {
	wins := race(t, store.ErrDuplicate, func(ctx context.Context, i int) error {
		return s.CreateUser(ctx, &store.User{ID: fmt.Sprint("u", i), Email: "Same@example.com", CreatedAt: t0})
	})
	same(t, "CreateUser winners", wins, 1)
}

func testRaceUseBackupCode(t *testing.T, s store.Store) {
	ctx := t.Context()
	enrolledUser(t, s, "u1")
	cs := codes("a", 10)
	must(t, s.ReplaceBackupCodes(ctx, "u1", cs))
	wins := race(t, store.ErrConsumed, func(ctx context.Context, _ int) error {
		_, err := s.UseBackupCode(ctx, "u1", cs[3].Hash, t0)
		return err
	})
	same(t, "UseBackupCode winners", wins, 1)
	left, err := s.UseBackupCode(ctx, "u1", cs[4].Hash, t0)
	must(t, err)
	same(t, "remaining", left, 8)
}

// testRaceReplaceBackupCodes: concurrent replacements of a user's codes
// (a double-click, two tabs) all succeed, and one whole set is left.
func testRaceReplaceBackupCodes(t *testing.T, s store.Store) {
	ctx := t.Context()
	enrolledUser(t, s, "u1")
	must(t, s.ReplaceBackupCodes(ctx, "u1", codes("old", 10)))
	wins := race(t, nil, func(ctx context.Context, i int) error {
		return s.ReplaceBackupCodes(ctx, "u1", codes(fmt.Sprintf("set%d", i), 10))
	})
	same(t, "ReplaceBackupCodes that succeeded", wins, racers)
	left, err := s.ListBackupCodes(ctx, "u1")
	must(t, err)
	if len(left) != 10 {
		t.Fatalf("%d codes left, want one set of 10", len(left))
	}
	set, _, _ := strings.Cut(string(left[0].Hash), "-")
	for _, c := range left {
		if !strings.HasPrefix(string(c.Hash), set+"-") {
			t.Errorf("codes of two sets left: %q and %q", left[0].Hash, c.Hash)
		}
	}
}

// testRaceUseBackupCodeInTx: the web layer spends a backup code in a
// transaction with its audit event and notice; of concurrent transactions
// spending one code, one commits, and only its event is kept.
func testRaceUseBackupCodeInTx(t *testing.T, s store.Store) {
	ctx := t.Context()
	enrolledUser(t, s, "u1")
	cs := codes("a", 10)
	must(t, s.ReplaceBackupCodes(ctx, "u1", cs))
	wins := race(t, store.ErrConsumed, func(ctx context.Context, i int) error {
		tx, err := s.BeginTx(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = s.Rollback(tx) }()
		if _, err := s.UseBackupCode(tx, "u1", cs[3].Hash, t0); err != nil {
			return err
		}
		if err := s.AddAuditEvent(tx, &store.AuditEvent{UserID: "u1", Type: fmt.Sprint("used-", i), CreatedAt: t0}); err != nil {
			return err
		}
		return s.Commit(tx)
	})
	same(t, "UseBackupCode winners in transactions", wins, 1)
	events, err := s.ListAuditEvents(ctx, "u1", 100)
	must(t, err)
	same(t, "audit events kept", len(events), 1)
}

// testRaceTOTPStep: of concurrent logins with the same TOTP code (two
// logins, or one login's form sent twice), exactly one spends the code and
// starts its session; the others find the code spent, and no session.
func testRaceTOTPStep(t *testing.T, s store.Store) {
	ctx := t.Context()
	enrolledUser(t, s, "u1") // at the time step 1
	u, err := s.GetUser(ctx, "u1")
	must(t, err)
	wins := race(t, store.ErrConsumed, func(ctx context.Context, i int) error {
		return s.StartSession(ctx, loginEnd(fmt.Sprintf("login-%d", i%2), u.SecurityStamp, 2), &store.Session{
			TokenHash: []byte(fmt.Sprintf("hash-%d", i)), ID: fmt.Sprintf("sid-%d", i), UserID: "u1",
			AuthTime: t0, CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour)})
	})
	same(t, "logins with the code", wins, 1)
	list, err := s.ListUserSessions(ctx, "u1", t0)
	must(t, err)
	same(t, "sessions started", len(list), 1)
}

func testRaceConfirmTOTP(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	must(t, s.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: "u1", SecretEnc: []byte("s"), CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	wins := race(t, store.ErrNotFound, func(ctx context.Context, i int) error {
		return s.ConfirmTOTP(ctx, "u1", []byte("s"), int64(1000+i), codes(fmt.Sprint(i), 3), t0)
	})
	same(t, "ConfirmTOTP winners", wins, 1)
	totp, err := getTOTP(ctx, s, "u1")
	must(t, err)
	cs, err := s.ListBackupCodes(ctx, "u1")
	must(t, err)
	same(t, "the winner's backup codes", cs, codes(fmt.Sprint(totp.LastStep-1000), 3))
}

func testRaceDeactivateToken(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, s.CreateToken(ctx, &store.TokenRecord{Kind: store.KindAuthorizeCode, Signature: "code", Data: []byte("{}"), Active: true, CreatedAt: t0}))
	wins := race(t, store.ErrConsumed, func(ctx context.Context, _ int) error {
		return s.DeactivateToken(ctx, store.KindAuthorizeCode, "code")
	})
	same(t, "DeactivateToken winners", wins, 1)
}

// testRaceExchangeTokens: of concurrent exchanges of one code, one wins,
// and only the winner's tokens exist.
func testRaceExchangeTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, s.CreateToken(ctx, &store.TokenRecord{Kind: store.KindAuthorizeCode, Signature: "code", Data: []byte("{}"), Active: true, CreatedAt: t0}))
	wins := race(t, store.ErrConsumed, func(ctx context.Context, i int) error {
		return s.ExchangeTokens(ctx, &store.TokenExchange{SpendKind: store.KindAuthorizeCode, SpendSignature: "code",
			Create: []*store.TokenRecord{{Kind: store.KindAccessToken, Signature: fmt.Sprint("a", i), RequestID: "R",
				Data: []byte("{}"), Active: true, CreatedAt: t0}}})
	})
	same(t, "ExchangeTokens winners", wins, 1)
	stored := 0
	for i := range racers {
		if _, err := s.GetToken(ctx, store.KindAccessToken, fmt.Sprint("a", i)); err == nil {
			stored++
		}
	}
	same(t, "access tokens stored", stored, 1)
}

func testRaceDeleteFlow(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, s.PutFlow(ctx, &store.Flow{Key: []byte("flow"), Data: []byte("{}"), CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	wins := race(t, store.ErrNotFound, func(ctx context.Context, _ int) error {
		return s.DeleteFlow(ctx, []byte("flow"))
	})
	same(t, "DeleteFlow winners", wins, 1)
}

// testStartSession: the login is spent and the session comes, or neither.
func testStartSession(t *testing.T, s store.Store) {
	ctx := t.Context()
	stamp := newUser(t, s, "u1").SecurityStamp
	login := loginEnd("login-key", stamp, 0)
	spent := func(what string, want string) {
		t.Helper()
		got, err := s.LoginSession(ctx, login.Key)
		must(t, err)
		same(t, what, got, want)
	}
	spent("LoginSession before StartSession", "")
	x := &store.Session{TokenHash: []byte("hash-1"), ID: "sid-1", UserID: "u1", AuthTime: t0,
		AMR: []string{"pwd", "otp"}, Remember: true, CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour),
		UserAgent: "UA", IP: "192.0.2.1"}
	must(t, s.StartSession(ctx, login, x))
	got, err := s.GetSession(ctx, x.TokenHash, t0)
	must(t, err)
	same(t, "GetSession after StartSession", got, x)
	spent("LoginSession after StartSession", x.ID)

	// The login is spent: no second session from it.
	y := &store.Session{TokenHash: []byte("hash-2"), ID: "sid-2", UserID: "u1", AuthTime: t0, CreatedAt: t0,
		LastSeen: t0, ExpiresAt: at(time.Hour)}
	wantErr(t, "StartSession with a spent login", s.StartSession(ctx, login, y), store.ErrNotFound)
	_, err = s.GetSession(ctx, y.TokenHash, t0)
	wantErr(t, "GetSession of a session started with a spent login", err, store.ErrNotFound)

	// A session that cannot be created leaves the login unspent.
	other := loginEnd("other-login", stamp, 0)
	dup := *y
	dup.TokenHash = x.TokenHash
	wantErr(t, "StartSession(same token hash)", s.StartSession(ctx, other, &dup), store.ErrDuplicate)
	nobody := *y
	nobody.UserID = "nobody"
	wantErr(t, "StartSession(unknown user)", s.StartSession(ctx, other, &nobody), store.ErrNotFound)

	// The account's credentials changed (a new password) since the login
	// read it: no session, and the login is not spent (the login finds
	// itself stale, not finished).
	must(t, s.UpdatePassword(ctx, "u1", "hash-new", t0))
	wantErr(t, "StartSession after a password change", s.StartSession(ctx, other, y), store.ErrNotFound)
	_, err = s.GetSession(ctx, y.TokenHash, t0)
	wantErr(t, "GetSession of a session started after a password change", err, store.ErrNotFound)
	unspent, err := s.LoginSession(ctx, other.Key)
	must(t, err)
	same(t, "LoginSession after failed starts", unspent, "")
	u, err := s.GetUser(ctx, "u1")
	must(t, err)
	other.Stamp = u.SecurityStamp
	must(t, s.StartSession(ctx, other, y))

	// A spent login is remembered until spentUntil, then swept.
	_, err = s.DeleteExpired(ctx, at(time.Hour-time.Second), 0)
	must(t, err)
	spent("LoginSession before its record expires", x.ID)
	_, err = s.DeleteExpired(ctx, at(time.Hour), 0)
	must(t, err)
	spent("LoginSession after its record expired", "")
}

// testStartSessionWithCode: a login's code is stored with its session,
// and one issued under a consent only while the consent exists: without
// it, neither (ErrNotFound), and the login is not spent.
func testStartSessionWithCode(t *testing.T, s store.Store) {
	ctx := t.Context()
	stamp := newUser(t, s, "u1").SecurityStamp
	must(t, s.CreateClient(ctx, &store.Client{ID: "c1", Name: "C1", RedirectURIs: []string{"https://c1.example/cb"}, CreatedAt: t0}))
	session := func(n string) *store.Session {
		return &store.Session{TokenHash: []byte("hash-" + n), ID: "sid-" + n, UserID: "u1", AuthTime: t0, AMR: []string{"pwd"},
			CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour)}
	}
	code := func(n string, consented bool) *store.TokenRecord {
		return &store.TokenRecord{Kind: store.KindAuthorizeCode, Signature: "code-" + n, RequestID: "req-" + n, ClientID: "c1",
			Subject: "u1", SessionID: "sid-" + n, Data: []byte("request " + n), Active: true, CreatedAt: t0,
			ExpiresAt: at(time.Minute), Consented: consented}
	}
	stored := func(what, n string, kept bool) {
		t.Helper()
		got, err := s.GetToken(ctx, store.KindAuthorizeCode, "code-"+n)
		if !kept {
			wantErr(t, what, err, store.ErrNotFound)
			return
		}
		must(t, err)
		same(t, what, got, code(n, false)) // Consented is not stored: a condition of the write
	}

	end := loginEnd("login-1", stamp, 0)
	end.Code = code("1", false)
	must(t, s.StartSession(ctx, end, session("1")))
	stored("a first-party code started with its session", "1", true)

	// Issued under a consent that is gone: neither the session nor the
	// code, and the login is not spent.
	end = loginEnd("login-2", stamp, 0)
	end.Code = code("2", true)
	wantErr(t, "StartSession with a code of a withdrawn consent", s.StartSession(ctx, end, session("2")), store.ErrNotFound)
	stored("a code of a withdrawn consent", "2", false)
	_, err := s.GetSession(ctx, []byte("hash-2"), t0)
	wantErr(t, "the session of a code of a withdrawn consent", err, store.ErrNotFound)
	sid, err := s.LoginSession(ctx, end.Key)
	must(t, err)
	same(t, "LoginSession after a withdrawn consent", sid, "")

	must(t, s.PutConsent(ctx, "u1", "c1", []string{"openid"}, t0))
	must(t, s.StartSession(ctx, end, session("2")))
	stored("a code under a consent started with its session", "2", true)
}

// testInvalidUTF8Text: free text from outside that is not UTF-8 (a
// Latin-1 User-Agent header, one cut in the middle of a character, a mail
// server's reply) is stored in both dialects, as ValidText makes it:
// PostgreSQL refuses invalid UTF-8 in TEXT, so a login of such a browser
// would fail at its very end.
func testInvalidUTF8Text(t *testing.T, s store.Store) {
	ctx := t.Context()
	u1 := newUser(t, s, "u1")
	cut := "Mozilla/5.0 日本"
	cut = cut[:len(cut)-1] // 本 cut in two
	x := &store.Session{TokenHash: []byte("hash-1"), ID: "sid-1", UserID: "u1", AuthTime: t0, AMR: []string{"pwd"},
		CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour), UserAgent: cut, IP: "192.0.2.1\xff"}
	must(t, s.CreateSession(ctx, x))
	want := *x
	want.UserAgent, want.IP = "Mozilla/5.0 日\uFFFD", "192.0.2.1\uFFFD"
	got, err := s.GetSession(ctx, x.TokenHash, t0)
	must(t, err)
	same(t, "GetSession of a session with an invalid user agent", got, &want)

	y := &store.Session{TokenHash: []byte("hash-2"), ID: "sid-2", UserID: "u1", AuthTime: t0, AMR: []string{"pwd", "otp"},
		CreatedAt: t0, LastSeen: at(time.Minute), ExpiresAt: at(time.Hour), UserAgent: "caf\xe9/1.0 (\xe9\xe8)", IP: "192.0.2.2"}
	must(t, s.StartSession(ctx, loginEnd("login-key", u1.SecurityStamp, 0), y))
	wantY := *y
	wantY.UserAgent = "caf\uFFFD/1.0 (\uFFFD)"
	list, err := s.ListUserSessions(ctx, "u1", t0)
	must(t, err)
	same(t, "ListUserSessions", list, []store.Session{wantY, want})

	must(t, s.AddAuditEvent(ctx, &store.AuditEvent{UserID: "u1", Type: "login", Detail: "{\"ua\":\"caf\xe9\"}",
		IP: "\xff", CreatedAt: t0}))
	es, err := s.ListAuditEvents(ctx, "u1", 1)
	must(t, err)
	same(t, "audit detail and address", []string{es[0].Detail, es[0].IP}, []string{"{\"ua\":\"caf\uFFFD\"}", "\uFFFD"})

	m := &store.Mail{To: "a@example.com", Subject: "s", Body: "b", CreatedAt: t0, NextAttemptAt: t0}
	must(t, s.EnqueueMail(ctx, m))
	must(t, s.RetryMail(ctx, m.ID, at(time.Minute), "550 caf\xe9 refus\xe9"))
	gm, err := s.GetMail(ctx, m.ID)
	must(t, err)
	same(t, "last error", gm.LastError, "550 caf\uFFFD refus\uFFFD")
}

// testStartSessionTOTPStep: a login's TOTP code is spent with its
// session: a code not later than the last one accepted starts no session
// and leaves the login unspent; a code accepted stays spent when the
// session is refused.
func testStartSessionTOTPStep(t *testing.T, s store.Store) {
	ctx := t.Context()
	enrolledUser(t, s, "u1") // at the time step 1
	u, err := s.GetUser(ctx, "u1")
	must(t, err)
	lastStep := func(what string, want int64) {
		t.Helper()
		totp, err := getTOTP(ctx, s, "u1")
		must(t, err)
		same(t, what, totp.LastStep, want)
	}
	sessions := func(what string, want int) {
		t.Helper()
		list, err := s.ListUserSessions(ctx, "u1", t0)
		must(t, err)
		same(t, what, len(list), want)
	}
	x := &store.Session{TokenHash: []byte("hash-1"), ID: "sid-1", UserID: "u1", AuthTime: t0, AMR: []string{"pwd", "otp"},
		CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour)}
	wantErr(t, "StartSession with the confirming step", s.StartSession(ctx, loginEnd("login-1", u.SecurityStamp, 1), x), store.ErrConsumed)
	sessions("sessions after a spent code", 0)
	sid, err := s.LoginSession(ctx, []byte("login-1"))
	must(t, err)
	same(t, "LoginSession after a spent code", sid, "")

	must(t, s.StartSession(ctx, loginEnd("login-1", u.SecurityStamp, 2), x))
	lastStep("LastStep after the login", 2)
	sessions("sessions after the login", 1)

	// The login is spent: a later code is spent all the same, no session.
	y := &store.Session{TokenHash: []byte("hash-2"), ID: "sid-2", UserID: "u1", AuthTime: t0, CreatedAt: t0, LastSeen: t0,
		ExpiresAt: at(time.Hour)}
	wantErr(t, "StartSession of a spent login", s.StartSession(ctx, loginEnd("login-1", u.SecurityStamp, 3), y), store.ErrNotFound)
	lastStep("LastStep after a spent login's code", 3)
	// So is the code of a login whose account changed since.
	wantErr(t, "StartSession with an old stamp", s.StartSession(ctx, loginEnd("login-2", "old-stamp", 4), y), store.ErrNotFound)
	lastStep("LastStep after a stale login's code", 4)
	sessions("sessions after refused starts", 1)
	// A user without an authenticator has no TOTP step to spend.
	newUser(t, s, "u2")
	u2, err := s.GetUser(ctx, "u2")
	must(t, err)
	z := &store.Session{TokenHash: []byte("hash-3"), ID: "sid-3", UserID: "u2", AuthTime: t0, CreatedAt: t0, LastSeen: t0,
		ExpiresAt: at(time.Hour)}
	wantErr(t, "StartSession with a step, no authenticator", s.StartSession(ctx, loginEnd("login-3", u2.SecurityStamp, 5), z), store.ErrNotFound)
	must(t, s.StartSession(ctx, loginEnd("login-3", u2.SecurityStamp, 0), z))
}

// testRaceStartSession: of concurrent requests finishing one login,
// exactly one starts a session.
func testRaceStartSession(t *testing.T, s store.Store) {
	ctx := t.Context()
	stamp := newUser(t, s, "u1").SecurityStamp
	wins := race(t, store.ErrNotFound, func(ctx context.Context, i int) error {
		return s.StartSession(ctx, loginEnd("login-key", stamp, 0), &store.Session{TokenHash: []byte(fmt.Sprintf("hash-%d", i)),
			ID: fmt.Sprintf("sid-%d", i), UserID: "u1", AuthTime: t0, CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour)})
	})
	same(t, "StartSession winners", wins, 1)
	list, err := s.ListUserSessions(ctx, "u1", t0)
	must(t, err)
	same(t, "sessions started", len(list), 1)
}

// testRaceStartSessionConsent: a login's last step storing a code issued
// under a consent, while the consent is taken back: both finish (neither
// deadlocks: on PostgreSQL both lock the user's row before the consent's),
// and no code is left active without its consent.
func testRaceStartSessionConsent(t *testing.T, s store.Store) {
	ctx := t.Context()
	stamp := newUser(t, s, "u1").SecurityStamp
	must(t, s.CreateClient(ctx, &store.Client{ID: "c1", Name: "C1", RedirectURIs: []string{"https://c1.example/cb"}, CreatedAt: t0}))
	for round := range 30 {
		must(t, s.PutConsent(ctx, "u1", "c1", []string{"openid"}, t0))
		n := strconv.Itoa(round)
		end := loginEnd("login-"+n, stamp, 0)
		end.Code = &store.TokenRecord{Kind: store.KindAuthorizeCode, Signature: "code-" + n, RequestID: "req-" + n,
			ClientID: "c1", Subject: "u1", SessionID: "sid-" + n, Data: []byte("request"), Active: true, CreatedAt: t0,
			ExpiresAt: at(time.Minute), Consented: true}
		var started, revoked error
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			started = s.StartSession(ctx, end, &store.Session{TokenHash: []byte("hash-" + n), ID: "sid-" + n, UserID: "u1",
				AuthTime: t0, CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour)})
		})
		wg.Go(func() {
			<-start
			revoked = s.RevokeConsent(ctx, "u1", "c1")
		})
		close(start)
		wg.Wait()
		if started != nil && !errors.Is(started, store.ErrNotFound) {
			t.Fatalf("round %d: StartSession: %v", round, started)
		}
		must(t, revoked)
		code, err := s.GetToken(ctx, store.KindAuthorizeCode, "code-"+n)
		switch {
		case started == nil && err != nil:
			t.Fatalf("round %d: the session started without its code: %v", round, err)
		case started == nil && code.Active:
			t.Fatalf("round %d: the code is active after its consent was taken back", round)
		case started != nil && !errors.Is(err, store.ErrNotFound):
			t.Fatalf("round %d: a refused login left its code: %v", round, err)
		}
	}
}

// testRaceRecordFailure checks that concurrent failures are each counted
// once: every caller sees a different count.
func testRaceRecordFailure(t *testing.T, s store.Store) {
	p := store.ThrottlePolicy{MaxFailures: 1000, BaseLockout: time.Minute, MaxLockout: time.Hour}
	var mu sync.Mutex
	seen := map[int]bool{}
	wins := race(t, nil, func(ctx context.Context, _ int) error {
		th, err := s.RecordFailure(ctx, "k", p, t0)
		if err == nil {
			mu.Lock()
			seen[th.Failures] = true
			mu.Unlock()
		}
		return err
	})
	same(t, "RecordFailure successes", wins, racers)
	same(t, "distinct counts seen", len(seen), racers)
	th, err := s.GetThrottle(t.Context(), "k")
	must(t, err)
	same(t, "GetThrottle", th, &store.Throttle{Key: "k", Failures: racers})
}

func testRaceRecordFailureLockout(t *testing.T, s store.Store) {
	p := store.ThrottlePolicy{MaxFailures: 5, BaseLockout: time.Minute, MaxLockout: time.Hour}
	wins := race(t, nil, func(ctx context.Context, _ int) error {
		_, err := s.RecordFailure(ctx, "k", p, t0)
		return err
	})
	same(t, "RecordFailure successes", wins, racers)
	th, err := s.GetThrottle(t.Context(), "k")
	must(t, err)
	same(t, "GetThrottle", th, &store.Throttle{Key: "k", Lockouts: racers / 5, LockedUntil: at(8 * time.Minute)})
}

// testRaceRecordFailureReset: failures counted on a key while successful
// logins elsewhere reset it. Each count succeeds and includes itself
// (a count lost to a reset in the middle of it would be ErrNotFound, or
// an answer without it).
func testRaceRecordFailureReset(t *testing.T, s store.Store) {
	p := store.ThrottlePolicy{MaxFailures: 1000, BaseLockout: time.Minute, MaxLockout: time.Hour}
	wins := race(t, nil, func(ctx context.Context, i int) error {
		for range 50 {
			if i%2 == 1 {
				if err := s.ResetThrottle(ctx, "k"); err != nil {
					return err
				}
				continue
			}
			th, err := s.RecordFailure(ctx, "k", p, t0)
			if err != nil {
				return err
			}
			if th.Failures < 1 {
				return fmt.Errorf("RecordFailure answered %+v: its own failure not counted", th)
			}
		}
		return nil
	})
	same(t, "racers that never failed", wins, racers)
}

// testRaceRecordFailureSweep: failures counted on new keys while the
// sweep runs. A key's row is not quiet from its first failure on: the
// sweep never takes it, and every failure is counted.
func testRaceRecordFailureSweep(t *testing.T, s store.Store) {
	p := store.ThrottlePolicy{MaxFailures: 1000, BaseLockout: time.Minute, MaxLockout: time.Hour}
	const keys = 50
	wins := race(t, nil, func(ctx context.Context, i int) error {
		if i%2 == 1 {
			for range keys {
				if _, err := s.DeleteExpired(ctx, t0, 0); err != nil {
					return err
				}
			}
			return nil
		}
		for k := range keys {
			if _, err := s.RecordFailure(ctx, fmt.Sprint("k", k), p, t0); err != nil {
				return err
			}
		}
		return nil
	})
	same(t, "racers that never failed", wins, racers)
	for k := range keys {
		th, err := s.GetThrottle(t.Context(), fmt.Sprint("k", k))
		must(t, err)
		same(t, "failures of a key", th.Failures, racers/2)
	}
}
