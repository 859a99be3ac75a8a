package web

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/mfa"
	"github.com/kamera-id/idp/idp/password"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

// replacingStore is a real store on which, once armed, another setup (in
// another tab) puts a new pending secret right after a request has read
// the pending one: between the read and the confirmation.
type replacingStore struct {
	store.Store
	replace func(ctx context.Context)
}

func (s *replacingStore) GetPendingTOTP(ctx context.Context, userID string, now time.Time) (*store.PendingTOTP, error) {
	p, err := s.Store.GetPendingTOTP(ctx, userID, now)
	if err == nil && s.replace != nil {
		s.replace(ctx)
		s.replace = nil
	}
	return p, err
}

var flowField = regexp.MustCompile(`name="flow" value="([^"]+)"`)

// TestSetupConfirmsOnlyTheSecretShown: the code typed at 2FA setup is
// checked against the pending secret read; when another setup replaces
// that secret before the confirmation, the confirmation must not install
// the new secret, which the user never proved: 2FA stays off and the page
// asks to start again.
func TestSetupConfirmsOnlyTheSecretShown(t *testing.T) {
	ctx := context.Background()
	st := testenv.SQLiteStore(t)
	rs := &replacingStore{Store: st}
	key := testKey(t)
	h := password.New(password.Params{Memory: 8192, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	const pw = "correct horse battery"
	hash, err := h.Hash(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	u := &store.User{ID: "u1", Email: "user@example.com", PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	session := crypt.RandomToken(32)
	if err := st.CreateSession(ctx, &store.Session{TokenHash: crypt.HashToken(session), ID: "sid", UserID: u.ID,
		AuthTime: now, AMR: []string{"pwd"}, CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Issuer = "http://localhost:8080"
	s := New(Deps{Config: cfg, Key: key, Store: rs, Hasher: h, Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return now }})
	csrf := crypt.RandomToken(32)
	do := func(method, path string, form url.Values) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest(method, cfg.Issuer+path, nil)
		if form != nil {
			form.Set("csrf", s.csrfFor(csrf))
			r = httptest.NewRequest(method, cfg.Issuer+path, strings.NewReader(form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Origin", cfg.Issuer)
		}
		r.AddCookie(&http.Cookie{Name: s.cookieName(sessionCookie), Value: session})
		r.AddCookie(&http.Cookie{Name: s.cookieName(csrfCookie), Value: csrf})
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}

	w := do(http.MethodGet, "/account/2fa/setup", nil)
	m := flowField.FindStringSubmatch(w.Body.String())
	if w.Code != http.StatusOK || m == nil {
		t.Fatalf("setup start: %d\n%s", w.Code, w.Body)
	}
	flow := m[1]
	if w = do(http.MethodPost, "/account/2fa/setup", url.Values{"flow": {flow}, "password": {pw}}); w.Code != http.StatusOK {
		t.Fatalf("setup password step: %d\n%s", w.Code, w.Body)
	}
	pending, err := st.GetPendingTOTP(ctx, u.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	shown, err := mfa.OpenSecret(key, u.ID, pending.SecretEnc) // the secret on the page
	if err != nil {
		t.Fatal(err)
	}
	code, err := mfa.CodeAt(shown, mfa.StepAt(now))
	if err != nil {
		t.Fatal(err)
	}

	other, err := mfa.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	replacement := &store.PendingTOTP{UserID: u.ID, SecretEnc: mfa.SealSecret(key, u.ID, other), CreatedAt: now,
		ExpiresAt: now.Add(cfg.FlowLifetime)}
	rs.replace = func(ctx context.Context) {
		if err := st.PutPendingTOTP(ctx, replacement); err != nil {
			t.Error(err)
		}
	}
	w = do(http.MethodPost, "/account/2fa/setup", url.Values{"flow": {flow}, "code": {code}})
	if rs.replace != nil {
		t.Fatal("the confirmation did not read the pending secret")
	}
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "最初からやり直してください") {
		t.Errorf("confirmation of a replaced secret: %d, want 400 asking to start again\n%s", w.Code, w.Body)
	}
	got, err := st.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.MFAEnabled {
		t.Errorf("2FA was turned on with a secret the user never proved")
	}
	if p, err := st.GetPendingTOTP(ctx, u.ID, now); err != nil || string(p.SecretEnc) != string(replacement.SecretEnc) {
		t.Errorf("the other setup's pending secret: %v, %v; want it kept", p, err)
	}
}
