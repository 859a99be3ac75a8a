package web_test

// Fuzz targets for the hosted forms' handlers (password, TOTP code, backup
// code) and the token endpoint's request parsing, run through the whole
// handler as app.Open builds it, on an embedded store. (They live in the
// external test package: package web cannot import idp/app, which imports
// it.)

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/mfa"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

const (
	fuzzEmail    = "fuzz@example.com"
	fuzzPassword = "correct horse battery"
	fuzzClient   = "fuzz-client"
	fuzzRedirect = "http://localhost/callback"
	origin       = "http://localhost:8080"
)

// fuzzBackupCodes are the user's backup codes (fixed, so that seeds can
// hold real ones in every worker process).
var fuzzBackupCodes = []string{"abcde12345", "fghjk67890", "mnpqr0a1b2", "stvwx3c4d5", "yz0123defg",
	"hjkmn4567p", "qrstv890ab", "wxyz1cdefg", "23456hjkmn", "pqrst789vw"}

// leaks are what an answer must never show (unless the input itself held
// it and the page echoes the input back, as the login form echoes the
// address).
// Random values (request ids, tokens) are taken out first, so that one
// spelling "sqlite" by chance is not a leak.
var leaks = []string{"goroutine ", "panic(", "runtime error", "runtime/debug", ".go:", "SQLSTATE", "sqlite", "SQL logic",
	"sql: ", "pq: ", "pgconn", "constraint failed", "syntax error", "no such table"}

// randomValues are the page's random parts: the request id, the CSRF token
// and flow ids.
var randomValues = regexp.MustCompile(`(リクエストID: |Request ID: |name="csrf" value="|name="flow" value="|flow=)[A-Za-z0-9_-]+`)

// fuzzEnv is one provider, with a browser (CSRF cookie and token) that has
// a login flow to post to.
type fuzzEnv struct {
	app    *app.App
	h      http.Handler
	user   *store.User
	secret string // client secret

	cookies []*http.Cookie
	csrf    string
}

func newFuzzEnv(f testing.TB) *fuzzEnv {
	f.Helper()
	return newFuzzEnvOn(f, testenv.Database{Name: "sqlite", URL: "sqlite://" + filepath.Join(f.TempDir(), "idp.db")})
}

// newFuzzEnvOn is newFuzzEnv on db (testenv.Each's stores).
func newFuzzEnvOn(f testing.TB, db testenv.Database) *fuzzEnv {
	f.Helper()
	cfg := config.Defaults()
	cfg.DatabaseURL = db.URL
	cfg.SecretKey = base64.StdEncoding.EncodeToString([]byte("fuzz fuzz fuzz fuzz fuzz fuzz 32"))
	// The cheapest hashes allowed: most login iterations hash (an unknown
	// address hashes the dummy).
	cfg.ArgonMemoryKiB, cfg.ArgonIterations, cfg.ArgonMaxConcurrent = 8192, 1, 1
	// Keep the forms' real paths reachable: the limits would otherwise
	// answer every later iteration with a 429 (which is also checked).
	cfg.LoginIPMaxFailures, cfg.MFAMaxFailures = 1<<30, 1<<30
	if err := cfg.Validate(); err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	a, err := app.Open(ctx, cfg, app.Options{Migrate: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = a.Close() })
	u, err := a.CreateUser(ctx, app.NewUser{Email: fuzzEmail, Name: "Fuzz", Password: fuzzPassword})
	if err != nil {
		f.Fatal(err)
	}
	_, secret, err := a.CreateClient(ctx, app.NewClient{ID: fuzzClient, Name: "Fuzz", RedirectURIs: []string{fuzzRedirect}, FirstParty: true})
	if err != nil {
		f.Fatal(err)
	}
	e := &fuzzEnv{app: a, h: a.Handler(), user: u, secret: secret}
	e.newFlow(f, false) // sets the CSRF cookie and reads the token
	return e
}

// enableMFA turns two-step verification on for the user, with the fixed
// backup codes.
func (e *fuzzEnv) enableMFA(f testing.TB) { e.enableMFAWithSecret(f) }

// serve runs one request as the browser.
func (e *fuzzEnv) serve(req *http.Request) *httptest.ResponseRecorder {
	for _, c := range e.cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		replaced := false
		for i, old := range e.cookies {
			if old.Name == c.Name {
				e.cookies[i], replaced = c, true
			}
		}
		if !replaced {
			e.cookies = append(e.cookies, c)
		}
	}
	return rec
}

// signOut forgets the session cookie a login set; the CSRF cookie stays.
func (e *fuzzEnv) signOut() {
	kept := e.cookies[:0]
	for _, c := range e.cookies {
		if c.Name != "idp_session" {
			kept = append(kept, c)
		}
	}
	e.cookies = kept
}

func (e *fuzzEnv) post(path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, origin+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", origin)
	return e.serve(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// newFlow starts a login flow from /login and returns what its forms
// carry; with secondStep, it also passes the password step (the login's
// forms then carry what the step's answer sent on).
func (e *fuzzEnv) newFlow(tb testing.TB, secondStep bool) string {
	tb.Helper()
	rec := e.serve(httptest.NewRequest(http.MethodGet, origin+"/login", nil))
	loc, err := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusSeeOther || err != nil || loc.Query().Get("flow") == "" {
		tb.Fatalf("GET /login: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	flow := loc.Query().Get("flow")
	rec = e.serve(httptest.NewRequest(http.MethodGet, origin+loc.String(), nil))
	m := csrfField.FindStringSubmatch(rec.Body.String())
	if rec.Code != http.StatusOK || m == nil {
		tb.Fatalf("login page: %d\n%s", rec.Code, rec.Body)
	}
	e.csrf = m[1]
	if secondStep {
		rec = e.post("/login", url.Values{"csrf": {e.csrf}, "flow": {flow}, "email": {fuzzEmail}, "password": {fuzzPassword}}.Encode())
		if flow = codeForm(rec); flow == "" {
			tb.Fatalf("password step: %d %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body)
		}
	}
	return flow
}

// codeForm is the login's flow as its password step left it, from the
// answer to the password form of an account with 2FA: the code form
// (200, posting to /login/totp); "" when rec is not that form.
func codeForm(rec *httptest.ResponseRecorder) string {
	body := rec.Body.String()
	m := flowInput.FindStringSubmatch(body)
	if rec.Code != http.StatusOK || m == nil || !strings.Contains(body, `action="/login/totp"`) {
		return ""
	}
	return m[1]
}

// checkPage checks a form handler's answer: never a server error, never
// internals.
func checkPage(t *testing.T, rec *httptest.ResponseRecorder, inputs ...string) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("status %d:\n%s", rec.Code, rec.Body)
	}
	checkLeaks(t, rec.Body.String(), inputs...)
	if rec.Code != http.StatusSeeOther && !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("status %d with Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
}

func checkLeaks(t *testing.T, body string, inputs ...string) {
	t.Helper()
	all := strings.Join(inputs, "\x00")
	body = randomValues.ReplaceAllString(body, "${1}X")
	for _, l := range leaks {
		if strings.Contains(body, l) && !strings.Contains(all, l) {
			t.Fatalf("the answer shows %q:\n%s", l, body)
		}
	}
}

// formBody is the form with the browser's token and flow, the fuzzed
// fields, and raw appended as it is (possibly repeating a field or breaking
// the encoding).
func formBody(csrf, flow string, fields url.Values, raw string) string {
	v := url.Values{"csrf": {csrf}, "flow": {flow}}
	for k, vs := range fields {
		v[k] = vs
	}
	body := v.Encode()
	if raw != "" {
		body += "&" + raw
	}
	return body
}

// stillOnForm reports whether the answer keeps the flow where it was (the
// form again, with or without a message); anything else may have used it.
func stillOnForm(rec *httptest.ResponseRecorder) bool {
	return rec.Code == http.StatusOK || rec.Code == http.StatusTooManyRequests ||
		rec.Code == http.StatusRequestEntityTooLarge || rec.Code == http.StatusUnsupportedMediaType ||
		(rec.Code == http.StatusBadRequest && strings.Contains(rec.Body.String(), `class="detail"`))
}

// FuzzLoginForm posts the password form with fuzzed fields.
func FuzzLoginForm(f *testing.F) {
	e := newFuzzEnv(f)
	for _, s := range [][4]string{
		{fuzzEmail, fuzzPassword, "1", ""},
		{fuzzEmail, "wrong password", "", ""},
		{"FUZZ@EXAMPLE.COM ", fuzzPassword, "on", ""},
		{"nobody@example.com", "x", "", ""},
		{"", "", "", ""},
		{"a@b", strings.Repeat("p", 1024), "1", ""},
		{strings.Repeat("a", 255), "x", "", ""},
		{"ユーザー@例え.jp", "パスワード", "", ""},
		{"\xff\xfe", "\x00", "", ""},
		{"' OR 1=1 --", "\"; DROP TABLE users; --", "", ""},
		{"<script>alert(1)</script>", "x", "", "email=b"},
		{fuzzEmail, fuzzPassword, "", "csrf=x"},
		{fuzzEmail, fuzzPassword, "", "flow=%zz"},
		{fuzzEmail, "x", "", "return_to=https://evil.example/"},
		{fuzzEmail, "x", "", "%ff=1;a=b"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	var mu sync.Mutex
	flow := e.newFlow(f, false)
	f.Fuzz(func(t *testing.T, email, password, remember, raw string) {
		mu.Lock()
		defer mu.Unlock()
		body := formBody(e.csrf, flow, url.Values{"email": {email}, "password": {password}, "remember": {remember}}, raw)
		rec := e.post("/login", body)
		checkPage(t, rec, email, password, remember, raw)
		if rec.Code == http.StatusSeeOther {
			// Only the user's password gets past the form.
			if password != fuzzPassword || !strings.EqualFold(strings.TrimSpace(email), fuzzEmail) {
				t.Fatalf("logged in with %q / %q (+%q): %s", email, password, raw, rec.Header().Get("Location"))
			}
			e.signOut()
		}
		if !stillOnForm(rec) {
			flow = e.newFlow(t, false)
		}
	})
}

// FuzzTOTPForm posts the TOTP code step with fuzzed codes.
func FuzzTOTPForm(f *testing.F) {
	e := newFuzzEnv(f)
	e.enableMFA(f)
	for _, s := range [][2]string{
		{"123456", ""}, {"000000", ""}, {"12 34 56", ""}, {"１２３４５６", ""}, {"", ""}, {"1234567890123456", ""},
		{"12345678901234567", ""}, {"-1", ""}, {"999999999", ""}, {"\xff", ""}, {"123456", "code=654321"},
		{"abcdef", "backup_code=abcde-12345"}, {"12345\x00", ""},
	} {
		f.Add(s[0], s[1])
	}
	var mu sync.Mutex
	flow := e.newFlow(f, true)
	f.Fuzz(func(t *testing.T, code, raw string) {
		mu.Lock()
		defer mu.Unlock()
		rec := e.post("/login/totp", formBody(e.csrf, flow, url.Values{"code": {code}}, raw))
		checkPage(t, rec, code, raw)
		if rec.Code == http.StatusSeeOther {
			e.signOut()
		}
		if !stillOnForm(rec) {
			flow = e.newFlow(t, true)
		}
	})
}

// FuzzBackupCodeForm posts the backup code step with fuzzed codes.
func FuzzBackupCodeForm(f *testing.F) {
	e := newFuzzEnv(f)
	e.enableMFA(f)
	for _, s := range [][2]string{
		{"abcde-12345", ""}, {"FGHJK67890", ""}, {"mnpqr 0a1b2", ""}, {"ＳＴＶＷＸ３Ｃ４Ｄ５", ""}, {"yzO123defg", ""},
		{"hjkmn-4567p-", ""}, {"00000-00000", ""}, {"", ""}, {strings.Repeat("a", 64), ""}, {strings.Repeat("a", 65), ""},
		{"ｱｲｳｴｵ-12345", ""}, {"\xff\xfe", ""}, {"abcde-12345", "backup_code=fghjk67890"}, {"ilo01-ILO01", ""},
	} {
		f.Add(s[0], s[1])
	}
	var mu sync.Mutex
	flow := e.newFlow(f, true)
	f.Fuzz(func(t *testing.T, code, raw string) {
		mu.Lock()
		defer mu.Unlock()
		rec := e.post("/login/backup", formBody(e.csrf, flow, url.Values{"backup_code": {code}}, raw))
		checkPage(t, rec, code, raw)
		accepted := rec.Code == http.StatusSeeOther ||
			rec.Code == http.StatusOK && !strings.Contains(rec.Body.String(), `name="backup_code"`) // the few-codes-left notice
		if accepted {
			// Only one of the user's codes gets past the form.
			if canonical, ok := mfa.NormalizeBackupCode(code); !ok || !slices.Contains(fuzzBackupCodes, canonical) {
				t.Fatalf("backup code %q accepted (+%q)", code, raw)
			}
			e.signOut()
		}
		if accepted || !stillOnForm(rec) {
			flow = e.newFlow(t, true)
		}
	})
}

// FuzzTokenRequest posts fuzzed bodies (and content types and client
// authentication) to the token endpoint: never a server error; every
// failure is a JSON OAuth error that is not cached.
func FuzzTokenRequest(f *testing.F) {
	e := newFuzzEnv(f)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(fuzzClient+":"+e.secret))
	form := "application/x-www-form-urlencoded"
	verifier := strings.Repeat("v", 43)
	for _, s := range [][3]string{
		{form, "grant_type=authorization_code&code=abc.def&redirect_uri=" + url.QueryEscape(fuzzRedirect) + "&code_verifier=" + verifier, basic},
		{form, "grant_type=authorization_code&code=abc.def&redirect_uri=" + url.QueryEscape(fuzzRedirect) + "&client_id=" + fuzzClient + "&client_secret=" + e.secret, ""},
		{form, "grant_type=refresh_token&refresh_token=ory_rt_abc.def&scope=openid", basic},
		{form, "grant_type=client_credentials&scope=openid", basic},
		{form, "grant_type=password&username=" + fuzzEmail + "&password=" + url.QueryEscape(fuzzPassword), basic},
		{form, "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=eyJhbGciOiJub25lIn0.e30.", ""},
		{form, "grant_type=authorization_code&code=a&code=b", basic},
		{form + "; charset=utf-8", "grant_type=authorization_code&code=%zz", basic},
		{form, "client_id=" + fuzzClient + "&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer&client_assertion=x.y.z&grant_type=authorization_code&code=x", ""},
		{"application/json", `{"grant_type":"authorization_code","code":"abc"}`, basic},
		{"", "grant_type=authorization_code", ""},
		{form, "", "Basic Og=="},
		{form, "grant_type=authorization_code", "Basic %%%"},
		{form, "grant_type=authorization_code", "Bearer abc"},
		{form, "grant_type=authorization_code", "Basic " + base64.StdEncoding.EncodeToString([]byte("a%zz:b"))},
		{form, "grant_type=\xff", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, contentType, body, auth string) {
		req := httptest.NewRequest(http.MethodPost, origin+"/oauth2/token", strings.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d:\n%s", rec.Code, rec.Body)
		}
		checkLeaks(t, rec.Body.String(), contentType, body, auth)
		if !strings.Contains(rec.Header().Get("Cache-Control"), "no-store") {
			t.Fatalf("status %d with Cache-Control %q", rec.Code, rec.Header().Get("Cache-Control"))
		}
		if rec.Code == http.StatusOK {
			t.Fatalf("a fuzzed request got tokens:\n%s", rec.Body)
		}
		var answer struct {
			Error string `json:"error"`
		}
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") ||
			json.Unmarshal(rec.Body.Bytes(), &answer) != nil || answer.Error == "" {
			t.Fatalf("status %d: want a JSON OAuth error, got %q:\n%s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
	})
}
