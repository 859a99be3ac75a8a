package e2e

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/kamera-id/idp/idp/testenv"
)

// syncBuffer is a log destination for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogsAreJSONWithoutSecrets runs a login with a wrong and a right TOTP
// code, a code exchange and a refresh with the provider logging JSON at
// debug level: every line is a JSON object, every request line carries a
// request id, and none holds the password, the TOTP secret or a code,
// backup codes, flow ids, CSRF tokens, cookies, the authorization code or
// any token.
func TestLogsAreJSONWithoutSecrets(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		logs := &syncBuffer{}
		cfg := testConfig(db)
		p := startProviderLogging(t, cfg, newClock(),
			slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
		p.createUser(email, password)
		r := p.newRP("viewer", true)

		b := p.newBrowser()
		accountLogin(t, p, b, "")
		secret, backup := enroll(t, p, b)
		// The address is personal data, not a secret, but no log line needs it.
		secrets := []string{password, secret, cfg.SecretKey, r.cfg.ClientSecret, email}
		secrets = append(secrets, backup...)

		b = p.newBrowser()
		a, pg := rpLogin(t, b, r)
		for _, in := range findAll(pg.Doc, func(n *htmlNode) bool { return n.Data == "input" && attr(n, "type") == "hidden" }) {
			secrets = append(secrets, attr(in, "value")) // the flow id and the CSRF token
		}
		wrong, right := wrongCode(totpCode(t, p, secret)), totpCode(t, p, secret)
		if res := b.submit(pg, "code", map[string]string{"code": wrong}); res.Status != http.StatusOK {
			t.Fatalf("wrong code: %d", res.Status)
		}
		code := b.submit(pg, "code", map[string]string{"code": right}).code(t, a)
		tk := r.mustExchange(a, code)
		// A refresh (without an access token the client must refresh).
		stale := *tk.Token
		stale.AccessToken = ""
		nt, err := r.cfg.TokenSource(t.Context(), &stale).Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		secrets = append(secrets, code, tk.AccessToken, tk.RefreshToken, tk.Extra("id_token").(string),
			nt.AccessToken, nt.RefreshToken)
		for _, c := range b.client.Jar.Cookies(pg.URL) {
			secrets = append(secrets, c.Value)
		}

		out := logs.String()
		requests := 0
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("a log line that is not JSON: %s", line)
			}
			if rec["msg"] == "request" {
				requests++
				if id, _ := rec["request_id"].(string); id == "" {
					t.Errorf("request line without request_id: %s", line)
				}
				if path, _ := rec["path"].(string); strings.Contains(path, "?") {
					t.Errorf("request line with a query: %s", line)
				}
			}
		}
		if requests < 10 {
			t.Fatalf("%d request lines logged, want one per request:\n%s", requests, out)
		}
		for _, s := range secrets {
			if len(s) >= 6 && strings.Contains(out, s) {
				t.Errorf("the log holds a secret %.12s…", s)
			}
		}
		for _, c := range []string{wrong, right} { // six digits, as a whole word
			if regexp.MustCompile(`\b` + c + `\b`).MatchString(out) {
				t.Errorf("the log holds the TOTP code %s", c)
			}
		}
	})
}
