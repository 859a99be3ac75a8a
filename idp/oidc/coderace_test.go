package oidc_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

// racingCodes makes two exchanges of one authorization code overlap: the
// first to spend the code waits until both have read it (still active),
// and the second spends it only after the first has committed, so it
// loses at the spend itself (store.ErrConsumed), not at the read, where
// fosite would have seen the code used already. The process that issued
// the code gives its record to the first exchange to take it
// (issuedCodes), so only the other reads the store: that read comes after
// the take, and is the second of the two.
type racingCodes struct {
	store.Store
	mu                  sync.Mutex
	reads, spends       int
	bothRead, firstDone chan struct{}
}

func newRacingCodes(st store.Store) *racingCodes {
	return &racingCodes{Store: st, bothRead: make(chan struct{}), firstDone: make(chan struct{})}
}

func (s *racingCodes) GetToken(ctx context.Context, kind, signature string) (*store.TokenRecord, error) {
	rec, err := s.Store.GetToken(ctx, kind, signature)
	if kind == store.KindAuthorizeCode {
		s.mu.Lock()
		if s.reads++; s.reads == 1 {
			close(s.bothRead)
		}
		s.mu.Unlock()
	}
	return rec, err
}

func (s *racingCodes) ExchangeTokens(ctx context.Context, x *store.TokenExchange) error {
	if x.SpendKind != store.KindAuthorizeCode {
		return s.Store.ExchangeTokens(ctx, x)
	}
	s.mu.Lock()
	s.spends++
	first := s.spends == 1
	s.mu.Unlock()
	wait := s.firstDone
	if first {
		wait = s.bothRead
	}
	select {
	case <-wait:
	case <-time.After(10 * time.Second): // a guard against a hang, not a sleep
		return errors.New("racingCodes: the other exchange never came")
	}
	err := s.Store.ExchangeTokens(ctx, x)
	if first {
		close(s.firstDone)
	}
	return err
}

// codeEnv is a provider that has issued an authorization code to a
// confidential client, in the session "sid" of its user.
type codeEnv struct {
	a        *app.App
	cfg      config.Config
	user     *store.User
	client   string
	code     string
	redirect string
	verifier string
	secret   string
}

func newCodeEnv(t *testing.T, db testenv.Database) *codeEnv {
	t.Helper()
	ctx := t.Context()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	cfg := config.Defaults()
	cfg.Issuer = "http://127.0.0.1:8080"
	cfg.DatabaseURL = db.URL
	cfg.SecretKey = base64.StdEncoding.EncodeToString(key)
	cfg.ArgonMemoryKiB, cfg.ArgonIterations = 8192, 1
	a, err := app.Open(ctx, cfg, app.Options{Migrate: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	u, err := a.CreateUser(ctx, app.NewUser{Email: "race@example.com", Name: "Race", Password: "race-password"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Truncate(time.Second)
	if err := a.Store.CreateSession(ctx, &store.Session{TokenHash: []byte("race-session"), ID: "sid",
		UserID: u.ID, AuthTime: t0, AMR: []string{"pwd"}, CreatedAt: t0, LastSeen: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	const redirect = "http://127.0.0.1/callback"
	c, secret, err := a.CreateClient(ctx, app.NewClient{ID: "race", Name: "Race", RedirectURIs: []string{redirect}, FirstParty: true})
	if err != nil {
		t.Fatal(err)
	}

	verifier := rand.Text() + rand.Text()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type": {"code"}, "client_id": {c.ID}, "redirect_uri": {redirect},
		"scope": {"openid email offline_access"}, "state": {"state-0123456789"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	ar, _, err := a.Provider.ParseAuthorize(ctx, httptest.NewRequest(http.MethodGet, oidc.PathAuthorize+"?"+q.Encode(), nil))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Second).Truncate(time.Second)
	w := httptest.NewRecorder()
	if err := a.Provider.Authorize(ctx, w, ar, u, oidc.Identity{UserID: u.ID, SID: "sid", AuthTime: now, AMR: []string{"pwd"}, RequestedAt: now}); err != nil {
		t.Fatal(err)
	}
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %q", w.Code, w.Header().Get("Location"))
	}
	return &codeEnv{a: a, cfg: cfg, user: u, client: c.ID, code: loc.Query().Get("code"), redirect: redirect, verifier: verifier,
		secret: secret}
}

// another opens another instance of the provider on the same database.
func (e *codeEnv) another(t *testing.T) *app.App {
	t.Helper()
	b, err := app.Open(t.Context(), e.cfg, app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// token posts form to the token endpoint as the client.
func (e *codeEnv) token(form url.Values) (int, map[string]any) { return e.tokenAt(e.a, form) }

// tokenAt posts form to the token endpoint of the instance a.
func (e *codeEnv) tokenAt(a *app.App, form url.Values) (int, map[string]any) {
	r := httptest.NewRequest(http.MethodPost, oidc.PathToken, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(e.client, e.secret)
	w := httptest.NewRecorder()
	a.Provider.Token(w, r)
	body := map[string]any{}
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	return w.Code, body
}

// introspect reports whether the token is active (RFC 7662).
func (e *codeEnv) introspect(token string) (bool, error) {
	r := httptest.NewRequest(http.MethodPost, oidc.PathIntrospect, strings.NewReader(url.Values{"token": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(e.client, e.secret)
	w := httptest.NewRecorder()
	e.a.Provider.Introspect(w, r)
	var body struct {
		Active bool `json:"active"`
	}
	if w.Code != http.StatusOK {
		return false, fmt.Errorf("introspection: %d %s", w.Code, w.Body)
	}
	return body.Active, json.Unmarshal(w.Body.Bytes(), &body)
}

// exchange exchanges the code.
func (e *codeEnv) exchange() (int, map[string]any) { return e.exchangeAt(e.a, e.verifier) }

// exchangeAt exchanges the code at the instance a with the PKCE verifier.
func (e *codeEnv) exchangeAt(a *app.App, verifier string) (int, map[string]any) {
	return e.tokenAt(a, url.Values{"grant_type": {"authorization_code"}, "code": {e.code}, "redirect_uri": {e.redirect},
		"code_verifier": {verifier}})
}

// TestConcurrentCodeReuseRevokes: of two exchanges of one code that both
// read it while it was still unused, one wins and the other is refused
// with invalid_grant; the code was used twice, so what it issued (the
// winner's access and refresh tokens) is revoked, as for a code reused
// after its exchange (RFC 6749 4.1.2, RFC 9700 4.5).
func TestConcurrentCodeReuseRevokes(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newCodeEnv(t, db)
		a, token := e.a, e.token
		a.Provider.Storage.Store = newRacingCodes(a.Provider.Storage.Store)
		type answer struct {
			status int
			body   map[string]any
		}
		answers := make(chan answer, 2)
		for range 2 {
			go func() {
				st, body := e.exchange()
				answers <- answer{st, body}
			}()
		}
		var won, lost *answer
		for range 2 {
			an := <-answers
			switch {
			case an.status == http.StatusOK && won == nil:
				won = &an
			case an.status == http.StatusBadRequest && an.body["error"] == "invalid_grant" && lost == nil:
				lost = &an
			default:
				t.Errorf("exchange: %d %v", an.status, an.body)
			}
		}
		if won == nil || lost == nil {
			t.Fatalf("want one exchange to win and the other to get invalid_grant")
		}
		if rc := a.Provider.Storage.Store.(*racingCodes); rc.reads != 1 {
			t.Fatalf("%d reads of the code reached the store, want 1 (the other exchange took the issued record)", rc.reads)
		}

		access, _ := won.body["access_token"].(string)
		refresh, _ := won.body["refresh_token"].(string)
		if access == "" || refresh == "" {
			t.Fatalf("the winner got no access or refresh token: %v", won.body)
		}
		r := httptest.NewRequest(http.MethodGet, oidc.PathUserinfo, nil)
		r.Header.Set("Authorization", "Bearer "+access)
		w := httptest.NewRecorder()
		a.Provider.Userinfo(w, r)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("userinfo with the access token of a code used twice: %d %s, want 401", w.Code, w.Body)
		}
		if st, _ := token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}); st == http.StatusOK {
			t.Error("the refresh token of a code used twice still refreshes")
		}
	})
}

// revokeHook runs then after the first revocation by request the provider
// asks of the store (not after those then makes).
type revokeHook struct {
	store.Store
	ran  atomic.Bool
	then func()
}

func (s *revokeHook) DeactivateTokensByRequest(ctx context.Context, requestID string, kinds ...string) error {
	err := s.Store.DeactivateTokensByRequest(ctx, requestID, kinds...)
	if !s.ran.Swap(true) {
		s.then()
	}
	return err
}

// TestCodeReuseRevokesAtOnce: a reused code revokes its grant's refresh
// and access tokens in one statement. Revoked one kind after the other, a
// refresh between the two got a new access token after the access tokens
// were revoked, and it stayed active.
func TestCodeReuseRevokesAtOnce(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newCodeEnv(t, db)
		st, body := e.exchange()
		if st != http.StatusOK {
			t.Fatalf("exchange: %d %v", st, body)
		}
		refreshToken, _ := body["refresh_token"].(string)
		var refreshed string
		e.a.Provider.Storage.Store = &revokeHook{Store: e.a.Provider.Storage.Store, then: func() {
			_, b := e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}})
			refreshed, _ = b["access_token"].(string)
		}}
		if st, body = e.exchange(); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("the code again: %d %v, want invalid_grant", st, body)
		}
		if refreshed == "" {
			return // refused: nothing was issued under the revoked grant
		}
		if active, err := e.introspect(refreshed); err != nil || active {
			t.Errorf("an access token refreshed while the reused code's grant was being revoked: active %v (%v), want revoked", active, err)
		}
	})
}
