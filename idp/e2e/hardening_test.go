package e2e

// Issue 4: the hosted pages and the protocol endpoints against abuse and bad
// input (CSRF, cross-site posts, headers and cookie flags, enumeration,
// password guessing limits, open redirects, malformed requests).

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/oauth2"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/testenv"
)

// formValues are what the page's form holding field would post: its hidden
// inputs as they came, then the given values.
func formValues(t *testing.T, p *page, field string, values map[string]string) (*url.URL, url.Values) {
	t.Helper()
	form := p.formWith(field)
	if form == nil {
		t.Fatalf("no form with field %q on %s (status %d):\n%s", field, p.URL, p.Status, p.Body)
	}
	vals := url.Values{}
	for _, in := range findAll(form, func(n *htmlNode) bool { return n.Data == "input" }) {
		if attr(in, "type") == "hidden" {
			vals.Set(attr(in, "name"), attr(in, "value"))
		}
	}
	for k, v := range values {
		vals.Set(k, v)
	}
	action, err := p.URL.Parse(attr(form, "action"))
	if err != nil {
		t.Fatal(err)
	}
	return action, vals
}

// submitWith is submit with the form values edited and request headers
// replaced (an empty value removes the header). Redirects on the provider's
// own origin are followed as the browser would.
func (b *browser) submitWith(p *page, field string, values map[string]string, edit func(url.Values), hdr map[string]string) *page {
	b.t.Helper()
	action, vals := formValues(b.t, p, field, values)
	if edit != nil {
		edit(vals)
	}
	req, _ := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept-Language", b.lang)
	req.Header.Set("Origin", "http://"+b.host)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		loc, err := req.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			b.t.Fatal(err)
		}
		if loc.Host != b.host {
			return &page{URL: req.URL, Status: resp.StatusCode, Header: resp.Header, Redirect: loc}
		}
		return b.get(loc.String())
	}
	pg := &page{URL: req.URL, Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
	pg.Doc = parseHTML(pg.Body)
	return pg
}

// hasSession reports whether the browser is signed in to My Page.
func (b *browser) hasSession(p *provider) bool {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.URL+"/account", nil)
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// recordCookies makes the browser remember every Set-Cookie it receives,
// redirects included.
func (b *browser) recordCookies() *cookieLog {
	l := &cookieLog{next: http.DefaultTransport}
	b.client.Transport = l
	return l
}

type cookieLog struct {
	next    http.RoundTripper
	mu      sync.Mutex
	cookies []*http.Cookie
}

func (l *cookieLog) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(req)
	if err == nil {
		l.mu.Lock()
		l.cookies = append(l.cookies, resp.Cookies()...)
		l.mu.Unlock()
	}
	return resp, err
}

func (l *cookieLog) all() []*http.Cookie {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.cookies)
}

func mfaEnabled(t *testing.T, p *provider, userID string) bool {
	t.Helper()
	u, err := p.app.Store.GetUser(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	return u.MFAEnabled
}

// csrfCases are the ways a form post can get its token wrong.
var csrfCases = []struct {
	name string
	edit func(v url.Values)
}{
	{"no token", func(v url.Values) { v.Del("csrf") }},
	{"empty token", func(v url.Values) { v.Set("csrf", "") }},
	{"wrong token", func(v url.Values) { v.Set("csrf", base64.RawURLEncoding.EncodeToString(make([]byte, 32))) }},
	{"truncated token", func(v url.Values) { v.Set("csrf", v.Get("csrf")[:len(v.Get("csrf"))-1]) }},
}

// refused checks a refused post: 403, the CSRF message, and nothing else on
// the page to go on with.
func refused(t *testing.T, what string, pg *page) {
	t.Helper()
	if pg.Status != http.StatusForbidden || pg.Redirect != nil {
		t.Fatalf("%s: status %d (redirect %v), want 403", what, pg.Status, pg.Redirect)
	}
	if !strings.Contains(pg.alert(), "ページの有効期限が切れたか") {
		t.Errorf("%s: alert %q, want the CSRF message", what, pg.alert())
	}
}

// TestCSRFTokenRequired posts each state-changing form without its token,
// with a wrong one and with another browser's, and checks that nothing
// changed: the same form then works with its own token.
func TestCSRFTokenRequired(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		u := p.createUser(email, password)
		r := p.newRP("viewer", true)
		other := p.newBrowser()
		otherLogin := other.get(p.URL + "/login")
		_, otherVals := formValues(t, otherLogin, "password", nil)
		cases := append(slices.Clone(csrfCases), struct {
			name string
			edit func(v url.Values)
		}{"another browser's token", func(v url.Values) { v.Set("csrf", otherVals.Get("csrf")) }})

		// Login: refused, no session; the flow still works afterwards.
		b := p.newBrowser()
		a := r.authorize()
		lp := b.get(a.URL)
		creds := map[string]string{"email": email, "password": password}
		for _, c := range cases {
			refused(t, "login, "+c.name, b.submitWith(lp, "password", creds, c.edit, nil))
			if b.hasSession(p) {
				t.Fatalf("login, %s: a session was started", c.name)
			}
		}
		r.mustExchange(a, b.submit(lp, "password", creds).code(t, a))

		// Two-step verification on (b is signed in now), for the second step
		// and the settings.
		secret, codes := enroll(t, p, b)

		// TOTP step: the right code posted without a valid token is not
		// even looked at (it is still unused afterwards).
		b2 := p.newBrowser()
		a2, pg := rpLogin(t, b2, r)
		code := totpCode(t, p, secret)
		for _, c := range cases {
			refused(t, "totp step, "+c.name, b2.submitWith(pg, "code", map[string]string{"code": code}, c.edit, nil))
		}
		if b2.hasSession(p) {
			t.Fatal("totp step without a token started a session")
		}
		r.mustExchange(a2, b2.submit(pg, "code", map[string]string{"code": code}).code(t, a2))

		// Backup code step: the code is not consumed by a refused post.
		p.clock.Advance(30 * time.Second)
		b3 := p.newBrowser()
		a3, pg := rpLogin(t, b3, r)
		pg = b3.get(p.URL + linkTo(t, pg, "/login/backup"))
		for _, c := range cases {
			refused(t, "backup step, "+c.name, b3.submitWith(pg, "backup_code", map[string]string{"backup_code": codes[0]}, c.edit, nil))
		}
		r.mustExchange(a3, b3.submit(pg, "backup_code", map[string]string{"backup_code": codes[0]}).code(t, a3))

		// Disable with the right password but a bad token: 2FA stays on.
		pg = b.get(p.URL + "/account/2fa/disable")
		for _, c := range cases {
			refused(t, "disable, "+c.name, b.submitWith(pg, "password", map[string]string{"password": password}, c.edit, nil))
			if !mfaEnabled(t, p, u.ID) {
				t.Fatalf("disable, %s: 2FA was turned off", c.name)
			}
		}

		// Replacing the backup codes: the old ones keep working.
		pg = b.submit(b.get(p.URL+"/account/2fa/backup-codes"), "password", map[string]string{"password": password})
		for _, c := range cases {
			refused(t, "replace codes, "+c.name, b.submitWith(pg, "flow", nil, c.edit, nil))
		}
		b4 := p.newBrowser()
		a4, pg4 := rpLogin(t, b4, r)
		pg4 = b4.get(p.URL + linkTo(t, pg4, "/login/backup"))
		r.mustExchange(a4, b4.submit(pg4, "backup_code", map[string]string{"backup_code": codes[1]}).code(t, a4))

		// The real disable still works with the token the page gave.
		pg = b.get(p.URL + "/account/2fa/disable")
		if pg = b.submit(pg, "password", map[string]string{"password": password}); pg.Status != http.StatusOK || mfaEnabled(t, p, u.ID) {
			t.Fatalf("disable with its token: %d, 2FA still on: %v", pg.Status, mfaEnabled(t, p, u.ID))
		}

		// Turning it on again: a refused password post starts no setup.
		pg = b.get(p.URL + "/account/2fa/setup")
		for _, c := range cases {
			res := b.submitWith(pg, "password", map[string]string{"password": password}, c.edit, nil)
			refused(t, "setup, "+c.name, res)
			if res.byID("setup-key") != "" {
				t.Fatalf("setup, %s: the setup key was shown", c.name)
			}
		}

		// Consent: nothing is granted.
		partner := p.newRP("partner", false)
		b5 := p.newBrowser()
		a5 := partner.authorize()
		pg = b5.submit(b5.get(a5.URL), "password", creds)
		if pg.formWith("consent") == nil {
			t.Fatalf("want the consent page, got %d:\n%s", pg.Status, pg.Body)
		}
		for _, c := range cases {
			refused(t, "consent, "+c.name, b5.submitWith(pg, "consent", map[string]string{"consent": "allow"}, c.edit, nil))
			if granted, err := p.app.Store.GetConsent(context.Background(), u.ID, "partner"); err != nil || len(granted) > 0 {
				t.Fatalf("consent, %s: granted %v (%v)", c.name, granted, err)
			}
		}
		partner.mustExchange(a5, b5.submit(pg, "consent", map[string]string{"consent": "allow"}).code(t, a5))

		// Logout: the session survives a refused post.
		pg = b5.get(p.URL + "/logout")
		for _, c := range cases {
			refused(t, "logout, "+c.name, b5.submitWith(pg, "flow", nil, c.edit, nil))
			if !b5.hasSession(p) {
				t.Fatalf("logout, %s: the session was ended", c.name)
			}
		}
	})
}

// TestCrossSitePostRefused posts forms with their valid token from another
// site: refused by the Sec-Fetch-Site or Origin check, with nothing changed.
func TestCrossSitePostRefused(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		u := p.createUser(email, password)
		creds := map[string]string{"email": email, "password": password}
		crossSite := []struct {
			name string
			hdr  map[string]string
		}{
			{"Sec-Fetch-Site cross-site", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
			{"Sec-Fetch-Site same-site", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://sub." + strings.TrimPrefix(p.URL, "http://")}},
			{"Sec-Fetch-Site cross-site, own Origin", map[string]string{"Sec-Fetch-Site": "cross-site"}},
			{"Origin of another site (no Sec-Fetch-Site)", map[string]string{"Sec-Fetch-Site": "", "Origin": "https://evil.example"}},
			{"Origin null (no Sec-Fetch-Site)", map[string]string{"Sec-Fetch-Site": "", "Origin": "null"}},
		}

		b := p.newBrowser()
		lp := b.get(p.URL + "/login")
		for _, c := range crossSite {
			refused(t, "login, "+c.name, b.submitWith(lp, "password", creds, nil, c.hdr))
			if b.hasSession(p) {
				t.Fatalf("login, %s: a session was started", c.name)
			}
		}
		// The same form from the page itself works.
		if pg := b.submit(lp, "password", creds); pg.URL.Path != "/account" || !b.hasSession(p) {
			t.Fatalf("same-origin login: %d %s", pg.Status, pg.URL)
		}
		_, _ = enroll(t, p, b)
		pg := b.get(p.URL + "/account/2fa/disable")
		for _, c := range crossSite {
			refused(t, "disable, "+c.name, b.submitWith(pg, "password", map[string]string{"password": password}, nil, c.hdr))
			if !mfaEnabled(t, p, u.ID) {
				t.Fatalf("disable, %s: 2FA was turned off", c.name)
			}
		}
		// Older browsers send only Origin: the provider's own is accepted.
		res := b.submitWith(pg, "password", map[string]string{"password": password}, nil, map[string]string{"Sec-Fetch-Site": ""})
		if res.Status != http.StatusOK || mfaEnabled(t, p, u.ID) {
			t.Fatalf("same-origin disable (Origin only): %d, 2FA on: %v", res.Status, mfaEnabled(t, p, u.ID))
		}
	})
}

// cspDirectives parses a Content-Security-Policy into its directives.
func cspDirectives(v string) map[string][]string {
	out := map[string][]string{}
	for d := range strings.SplitSeq(v, ";") {
		f := strings.Fields(d)
		if len(f) > 0 {
			out[strings.ToLower(f[0])] = f[1:]
		}
	}
	return out
}

// checkPageHeaders checks the security headers of a hosted page and that
// the page itself needs no inline script.
func checkPageHeaders(t *testing.T, what string, h http.Header, body string) {
	t.Helper()
	csp := cspDirectives(h.Get("Content-Security-Policy"))
	if !slices.Equal(csp["frame-ancestors"], []string{"'none'"}) {
		t.Errorf("%s: CSP %q: want frame-ancestors 'none'", what, h.Get("Content-Security-Policy"))
	}
	scripts, ok := csp["script-src"]
	if !ok {
		scripts, ok = csp["default-src"]
	}
	if !ok || slices.ContainsFunc(scripts, func(s string) bool {
		return s == "'unsafe-inline'" || s == "'unsafe-eval'" || s == "*" || s == "data:" || s == "http:" || s == "https:"
	}) {
		t.Errorf("%s: CSP %q allows inline or foreign script", what, h.Get("Content-Security-Policy"))
	}
	for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", what, k, got, want)
		}
	}
	wantCache := "no-store"
	if what == "static file" {
		wantCache = "public" // the assets, the same for everyone, are cached
	}
	if !slices.Contains(strings.Split(strings.ReplaceAll(h.Get("Cache-Control"), " ", ""), ","), wantCache) {
		t.Errorf("%s: Cache-Control = %q, want %s", what, h.Get("Cache-Control"), wantCache)
	}
	if h.Get("X-Request-Id") == "" {
		t.Errorf("%s: no X-Request-Id", what)
	}
	if body == "" {
		return
	}
	// The CSP would block inline script: the page must not need any.
	doc := parseHTML(body)
	for _, n := range findAll(doc, func(n *htmlNode) bool { return true }) {
		if n.Data == "script" && (attr(n, "src") == "" || strings.TrimSpace(text(n)) != "") {
			t.Errorf("%s: inline <script>", what)
		}
		for _, a := range n.Attr {
			if strings.HasPrefix(strings.ToLower(a.Key), "on") || strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Val)), "javascript:") {
				t.Errorf("%s: inline script in <%s %s=%q>", what, n.Data, a.Key, a.Val)
			}
		}
	}
}

// checkCookieFlags checks every cookie the provider set.
func checkCookieFlags(t *testing.T, cookies []*http.Cookie, secure bool) {
	t.Helper()
	if len(cookies) == 0 {
		t.Fatal("no cookies were set")
	}
	for _, c := range cookies {
		if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("cookie %s: HttpOnly=%v SameSite=%v Path=%q Domain=%q, want HttpOnly, SameSite=Lax, Path=/, no Domain",
				c.Name, c.HttpOnly, c.SameSite, c.Path, c.Domain)
		}
		if c.Secure != secure {
			t.Errorf("cookie %s: Secure=%v, want %v", c.Name, c.Secure, secure)
		}
		if hasPrefix := strings.HasPrefix(c.Name, "__Host-"); hasPrefix != secure {
			t.Errorf("cookie %s: __Host- prefix %v, want %v", c.Name, hasPrefix, secure)
		}
	}
}

// TestSecurityHeaders visits every kind of hosted page (forms, My Page, the
// error pages, 404, 429) and checks the headers and the cookie flags; the
// token endpoint's answers are not cached either.
func TestSecurityHeaders(t *testing.T) {
	p := startProvider(t, testenv.SQLite(t))
	p.createUser(email, password)
	r := p.newRP("viewer", true)
	partner := p.newRP("partner", false)
	b := p.newBrowser()
	cookies := b.recordCookies()
	seen := map[string]bool{}
	check := func(what string, pg *page, status int) *page {
		t.Helper()
		if pg.Status != status {
			t.Fatalf("%s: status %d, want %d:\n%s", what, pg.Status, status, pg.Body)
		}
		checkPageHeaders(t, what, pg.Header, pg.Body)
		if pg.Header.Get("Strict-Transport-Security") != "" {
			t.Errorf("%s: HSTS sent for an http issuer", what)
		}
		seen[what] = true
		return pg
	}

	lp := check("login", b.get(p.URL+"/login"), 200)
	check("login, wrong password", b.submit(lp, "password", map[string]string{"email": email, "password": "nope"}), 200)
	check("forgot password", b.get(p.URL+"/forgot-password"), 200)
	check("expired flow", b.get(p.URL+"/login?flow=unknown"), 400)
	check("404", b.get(p.URL+"/no/such/page"), 404)
	check("csrf refused", b.submitWith(lp, "password", nil, func(v url.Values) { v.Del("csrf") }, nil), 403)
	check("bad input", b.get(p.URL+"/login?return_to=/a&return_to=/b"), 400)
	check("unregistered redirect URI", b.get(p.URL+"/oauth2/auth?client_id=viewer&response_type=code&scope=openid&redirect_uri=https://evil.example/"), 400)
	check("static file", b.get(p.URL+"/static/style.css"), 200)

	accountLogin(t, p, b, "")
	check("my page", b.get(p.URL+"/account"), 200)
	check("2fa settings", b.get(p.URL+"/account/2fa"), 200)
	check("setup password", b.get(p.URL+"/account/2fa/setup"), 200)
	secret, _ := enroll(t, p, b)
	check("disable", b.get(p.URL+"/account/2fa/disable"), 200)
	codesPrompt := check("backup codes password", b.get(p.URL+"/account/2fa/backup-codes"), 200)
	check("backup codes", b.submit(codesPrompt, "password", map[string]string{"password": password}), 200)

	b2 := p.newBrowser()
	cookies2 := b2.recordCookies()
	a, pg := rpLogin(t, b2, r)
	check("totp step", pg, 200)
	check("totp step, wrong code", b2.submit(pg, "code", map[string]string{"code": wrongCode(totpCode(t, p, secret))}), 200)
	check("backup code step", b2.get(p.URL+linkTo(t, pg, "/login/backup")), 200)
	r.mustExchange(a, b2.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)}).code(t, a))
	check("consent", b2.get(partner.authorize().URL), 200)
	check("logout", b2.get(p.URL+"/logout"), 200)

	// 429: an address that keeps failing.
	b3 := p.newBrowser()
	lp = b3.get(p.URL + "/login")
	for i := range 10 {
		pg = b3.submit(lp, "password", map[string]string{"email": "guess@example.com", "password": "guess"})
		if pg.Status == http.StatusTooManyRequests {
			break
		}
		if i == 9 {
			t.Fatalf("no 429 after 10 failures: %d", pg.Status)
		}
	}
	check("429", pg, 429)

	// The cookies of a whole session, as an http issuer sets them.
	all := append(cookies.all(), cookies2.all()...)
	names := map[string]bool{}
	for _, c := range all {
		names[c.Name] = true
	}
	if !names["idp_csrf"] || !names["idp_session"] {
		t.Fatalf("cookies set: %v, want idp_csrf and idp_session", names)
	}
	checkCookieFlags(t, all, false)

	// The token endpoint: success and errors are not cached.
	p.clock.Advance(30 * time.Second) // a new TOTP code
	b4 := p.newBrowser()
	a = r.authorize()
	pg = b4.submit(b4.submit(b4.get(a.URL), "password", map[string]string{"email": email, "password": password}),
		"code", map[string]string{"code": totpCode(t, p, secret)})
	code := pg.code(t, a)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {callback},
		"code_verifier": {a.Verifier}, "client_id": {r.cfg.ClientID}, "client_secret": {r.cfg.ClientSecret}}
	for _, try := range []struct {
		what   string
		status int
	}{{"token response", 200}, {"token error (code reused)", 400}} {
		resp, body := rawPost(t, p.URL+"/oauth2/token", "application/x-www-form-urlencoded", form.Encode(), nil)
		if resp.StatusCode != try.status {
			t.Fatalf("%s: %d %s", try.what, resp.StatusCode, body)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("%s: Cache-Control = %q, want no-store", try.what, cc)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", try.what)
		}
	}
	if len(seen) < 21 {
		t.Errorf("only %d pages checked", len(seen))
	}
}

// startHTTPSApp opens the provider with an https issuer, in process: the
// handler is driven with requests for https://idp.example.
func startHTTPSApp(t *testing.T) *app.App {
	t.Helper()
	cfg := testConfig(testenv.SQLite(t), func(c *config.Config) { c.Issuer = "https://idp.example" })
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(context.Background(), cfg, app.Options{Migrate: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// inProcessBrowser drives a handler directly, with a cookie jar.
type inProcessBrowser struct {
	t       *testing.T
	h       http.Handler
	jar     http.CookieJar
	cookies []*http.Cookie // every cookie set, in order
}

func newInProcessBrowser(t *testing.T, h http.Handler) *inProcessBrowser {
	jar, _ := cookiejar.New(nil)
	return &inProcessBrowser{t: t, h: h, jar: jar}
}

func (b *inProcessBrowser) do(req *http.Request) *http.Response {
	for _, c := range b.jar.Cookies(req.URL) {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)
	resp := rec.Result()
	b.jar.SetCookies(req.URL, resp.Cookies())
	b.cookies = append(b.cookies, resp.Cookies()...)
	return resp
}

func (b *inProcessBrowser) get(u string) (*http.Response, string) {
	resp := b.do(httptest.NewRequest(http.MethodGet, u, nil))
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (b *inProcessBrowser) post(u string, form url.Values) (*http.Response, string) {
	req := httptest.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp := b.do(req)
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

var (
	hiddenCSRF = regexp.MustCompile(`name="csrf" value="([^"]*)"`)
	hiddenFlow = regexp.MustCompile(`name="flow" value="([^"]*)"`)
)

// TestHTTPSIssuer checks what only an https issuer gets: Secure cookies
// with the __Host- prefix, and HSTS on the pages.
func TestHTTPSIssuer(t *testing.T) {
	a := startHTTPSApp(t)
	if _, err := a.CreateUser(context.Background(), app.NewUser{Email: email, Name: "Secure", Password: password}); err != nil {
		t.Fatal(err)
	}
	const base = "https://idp.example"
	b := newInProcessBrowser(t, a.Handler())
	resp, _ := b.get(base + "/login")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("GET /login: %d", resp.StatusCode)
	}
	resp, body := b.get(base + resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login page: %d", resp.StatusCode)
	}
	checkPageHeaders(t, "https login page", resp.Header, body)
	if hsts := resp.Header.Get("Strict-Transport-Security"); !strings.Contains(hsts, "max-age=") || strings.Contains(hsts, "max-age=0") {
		t.Errorf("https issuer: Strict-Transport-Security = %q", hsts)
	}
	csrf, flow := hiddenCSRF.FindStringSubmatch(body), hiddenFlow.FindStringSubmatch(body)
	if csrf == nil || flow == nil {
		t.Fatalf("no csrf or flow on the login page:\n%s", body)
	}
	form := url.Values{"csrf": {csrf[1]}, "flow": {flow[1]}, "email": {email}, "password": {password}}

	// A cookie without the prefix (which a sibling host or a plain http
	// page could plant) is not this provider's CSRF cookie.
	var csrfValue string
	for _, c := range b.cookies {
		if c.Name == "__Host-idp_csrf" {
			csrfValue = c.Value
		}
	}
	planted := httptest.NewRequest(http.MethodPost, base+"/login", strings.NewReader(form.Encode()))
	planted.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	planted.AddCookie(&http.Cookie{Name: "idp_csrf", Value: csrfValue})
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, planted)
	if rec.Code != http.StatusForbidden {
		t.Errorf("post with an unprefixed CSRF cookie: %d, want 403", rec.Code)
	}

	resp, _ = b.post(base+"/login", form)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account" {
		t.Fatalf("login: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body = b.get(base + "/account")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("My Page after login: %d", resp.StatusCode)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("My Page: no HSTS")
	}
	checkPageHeaders(t, "https my page", resp.Header, body)
	names := map[string]bool{}
	for _, c := range b.cookies {
		names[c.Name] = true
	}
	if !names["__Host-idp_csrf"] || !names["__Host-idp_session"] {
		t.Fatalf("cookies set: %v, want __Host-idp_csrf and __Host-idp_session", names)
	}
	checkCookieFlags(t, b.cookies, true)
}

var (
	tokenValue = regexp.MustCompile(`(name="(?:csrf|flow)" value=")[^"]*"`)
	flowParam  = regexp.MustCompile(`flow=[A-Za-z0-9_-]+`)
	requestID  = regexp.MustCompile(`(リクエストID|Request ID): [A-Za-z0-9_-]+`)
)

// normalise strips what differs between two answers for reasons other than
// the account: the tokens, the flow ids, the request id and the address.
func normalise(body, addr string) string {
	body = tokenValue.ReplaceAllString(body, `${1}X"`)
	body = flowParam.ReplaceAllString(body, "flow=X")
	body = requestID.ReplaceAllString(body, "$1: X")
	return strings.ReplaceAll(body, addr, "ADDRESS")
}

// TestNoUserEnumeration compares an unknown address with a known address
// and a wrong password: same status, message, page and headers, and the
// same number of tries before the 429. (Timing is not asserted; that the
// unknown address also costs a password hash is checked in package web, by
// TestUnknownEmailVerifiesDummyHash.)
func TestNoUserEnumeration(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) { c.LoginIPMaxFailures = 1000 })
		p.createUser(email, password)
		const unknown = "nobody@example.com"
		bu, bk := p.newBrowser(), p.newBrowser()
		lu, lk := bu.get(p.URL+"/login"), bk.get(p.URL+"/login")
		for i := 1; ; i++ {
			pu := bu.submit(lu, "password", map[string]string{"email": unknown, "password": "wrong password"})
			pk := bk.submit(lk, "password", map[string]string{"email": email, "password": "wrong password"})
			if pu.Status != pk.Status {
				t.Fatalf("failure %d: unknown address %d, wrong password %d", i, pu.Status, pk.Status)
			}
			if pu.alert() == "" || pu.alert() != pk.alert() {
				t.Fatalf("failure %d: alerts differ or are missing: %q vs %q", i, pu.alert(), pk.alert())
			}
			if nu, nk := normalise(pu.Body, unknown), normalise(pk.Body, email); nu != nk {
				t.Fatalf("failure %d: the pages differ:\n%s\n---\n%s", i, nu, nk)
			}
			hu, hk := slices.Sorted(func(yield func(string) bool) {
				for k := range pu.Header {
					if !yield(k) {
						return
					}
				}
			}), slices.Sorted(func(yield func(string) bool) {
				for k := range pk.Header {
					if !yield(k) {
						return
					}
				}
			})
			if !slices.Equal(hu, hk) {
				t.Fatalf("failure %d: headers differ: %v vs %v", i, hu, hk)
			}
			if pu.Status == http.StatusTooManyRequests {
				if i != 10 {
					t.Fatalf("429 after %d failures, want 10", i)
				}
				if !strings.Contains(pu.alert(), "上限") {
					t.Fatalf("429 alert %q", pu.alert())
				}
				break
			}
			if pu.Status != http.StatusOK || !strings.Contains(pu.alert(), "メールアドレスまたはパスワードが正しくありません") {
				t.Fatalf("failure %d: %d %q", i, pu.Status, pu.alert())
			}
			if i > 10 {
				t.Fatal("no 429 after 10 failures")
			}
		}
	})
}

// loginAttempt posts the login form from a fresh page.
func loginAttempt(b *browser, p *provider, addr, pw string) *page {
	b.t.Helper()
	return b.submit(b.get(p.URL+"/login"), "password", map[string]string{"email": addr, "password": pw})
}

// TestPasswordLockout: the 10th consecutive failure on an account (the
// default) answers 429, the right password is refused while locked,
// lockouts grow, and a success after the lockout resets the counter.
func TestPasswordLockout(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) { c.LoginIPMaxFailures = 1000 })
		if p.app.Config.LoginMaxFailures != 10 {
			t.Fatalf("default LoginMaxFailures = %d, want 10", p.app.Config.LoginMaxFailures)
		}
		p.createUser(email, password)
		b := p.newBrowser()
		fail := func(n int, wantLastStatus int) *page {
			t.Helper()
			var pg *page
			for i := range n {
				pg = loginAttempt(b, p, email, "guess")
				want := http.StatusOK
				if i == n-1 {
					want = wantLastStatus
				}
				if pg.Status != want {
					t.Fatalf("failure %d of %d: status %d, want %d", i+1, n, pg.Status, want)
				}
			}
			return pg
		}
		right := func() *page {
			return loginAttempt(p.newBrowser(), p, email, password)
		}

		pg := fail(10, http.StatusTooManyRequests)
		if !strings.Contains(pg.alert(), "上限") || pg.formWith("password") == nil {
			t.Fatalf("429 page: alert %q, form again: %v", pg.alert(), pg.formWith("password") != nil)
		}
		if ra := pg.Header.Get("Retry-After"); ra != "60" {
			t.Errorf("the failure that locked: Retry-After %q, want 60 (the first lockout)", ra)
		}
		if pg := right(); pg.Status != http.StatusTooManyRequests || pg.URL.Path == "/account" {
			t.Fatalf("right password while locked: %d %s", pg.Status, pg.URL)
		}
		p.clock.Advance(20 * time.Second)
		if pg := right(); pg.Header.Get("Retry-After") != "40" {
			t.Errorf("a login 20 s into the lockout: Retry-After %q, want 40", pg.Header.Get("Retry-After"))
		}
		p.clock.Advance(-20 * time.Second)
		// Locked from any browser: the limit is the account's.
		if pg := loginAttempt(p.newBrowser(), p, strings.ToUpper(email), password); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("right password, upper-case address, while locked: %d", pg.Status)
		}

		// The second lockout is longer than the first.
		p.clock.Advance(61 * time.Second)
		if ra := fail(10, http.StatusTooManyRequests).Header.Get("Retry-After"); ra != "120" {
			t.Errorf("the failure that locked again: Retry-After %q, want 120 (the second lockout)", ra)
		}
		p.clock.Advance(61 * time.Second)
		if pg := right(); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("second lockout ended after the first one's length: %d", pg.Status)
		}
		p.clock.Advance(2 * time.Minute)

		// Some failures, then a success: the counter starts again, so nine
		// more failures do not lock ...
		fail(5, http.StatusOK)
		if pg := right(); pg.Status != http.StatusOK || pg.URL.Path != "/account" {
			t.Fatalf("right password after the lockout: %d %s", pg.Status, pg.URL)
		}
		fail(9, http.StatusOK)
		// ... and the next lockout is as short as the first.
		fail(1, http.StatusTooManyRequests)
		p.clock.Advance(61 * time.Second)
		if pg := right(); pg.Status != http.StatusOK || pg.URL.Path != "/account" {
			t.Fatalf("after a reset, the lockout was not the first one's length: %d %s", pg.Status, pg.URL)
		}
	})
}

// TestPasswordLockoutPerIP: failures from one address across many accounts
// (known or not) lock that address, not the accounts.
func TestPasswordLockoutPerIP(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) { c.LoginIPMaxFailures = 5 })
		p.createUser(email, password)
		p.createUser("second@example.com", password)
		b := p.newBrowser()
		for i := range 5 {
			addr := []string{"a@example.com", "second@example.com", "b@example.com", "c@example.com", "d@example.com"}[i]
			pg := loginAttempt(b, p, addr, "guess")
			want := http.StatusOK
			if i == 4 {
				want = http.StatusTooManyRequests
			}
			if pg.Status != want || pg.alert() == "" {
				t.Fatalf("failure %d (%s): %d %q, want %d", i+1, addr, pg.Status, pg.alert(), want)
			}
		}
		// Any account, even with its right password, from this address.
		if pg := loginAttempt(p.newBrowser(), p, email, password); pg.Status != http.StatusTooManyRequests || !strings.Contains(pg.alert(), "上限") {
			t.Fatalf("right password from a locked address: %d %q", pg.Status, pg.alert())
		}
		// Another address is not locked (where the host can use one).
		if other := browserFrom(t, p, "127.0.0.2"); other != nil {
			if pg := loginAttempt(other, p, email, password); pg.Status != http.StatusOK || pg.URL.Path != "/account" {
				t.Fatalf("right password from another address: %d %s", pg.Status, pg.URL)
			}
		}
		p.clock.Advance(61 * time.Second)
		if pg := loginAttempt(p.newBrowser(), p, "second@example.com", password); pg.Status != http.StatusOK || pg.URL.Path != "/account" {
			t.Fatalf("after the address's lockout: %d %s", pg.Status, pg.URL)
		}
	})
}

// TestPasswordLockoutPerIPForgives: an address's failures are forgiven one
// per IDP_LOGIN_LOCKOUT without one, so the scattered typos of many people
// behind one address (an office's NAT) do not add up to a lockout, while a
// quick run of failures still locks it.
func TestPasswordLockoutPerIPForgives(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) { c.LoginIPMaxFailures = 5 })
		p.createUser(email, password)
		n := 0
		fail := func(want int) {
			t.Helper()
			n++
			if pg := loginAttempt(p.newBrowser(), p, fmt.Sprintf("typo%d@example.com", n), "guess"); pg.Status != want || pg.alert() == "" {
				t.Fatalf("failure %d: %d %q, want %d", n, pg.Status, pg.alert(), want)
			}
		}
		// An hour of a typo every three minutes, four times the limit: never
		// locked. (An hour: the harness's clock starts one behind the real
		// one, which fosite's checks need it not to pass.)
		for range 20 {
			fail(http.StatusOK)
			p.clock.Advance(3 * time.Minute)
		}
		// Four quick ones, two minutes' pause: two are forgiven, so two more
		// pass and the third locks the address.
		for range 4 {
			fail(http.StatusOK)
		}
		p.clock.Advance(2*time.Minute + time.Second)
		fail(http.StatusOK)
		fail(http.StatusOK)
		fail(http.StatusTooManyRequests)
		if pg := loginAttempt(p.newBrowser(), p, email, password); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("right password from the locked address: %d %s", pg.Status, pg.URL)
		}
		p.clock.Advance(61 * time.Second)
		if pg := loginAttempt(p.newBrowser(), p, email, password); pg.Status != http.StatusOK || pg.URL.Path != "/account" {
			t.Fatalf("after the address's lockout: %d %s", pg.Status, pg.URL)
		}
	})
}

// TestUnreadableStoredHash: an account whose stored hash the provider
// cannot read (a hand-edited or imported row, a cost over the bounds) is
// refused like a wrong password, at login and on My Page, not with a 503
// for good: a reset link still replaces the hash.
func TestUnreadableStoredHash(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		u := p.createUser(email, password)
		b := p.newBrowser()
		if pg := loginAttempt(b, p, email, password); pg.URL.Path != "/account" {
			t.Fatalf("login: %d %s", pg.Status, pg.URL)
		}
		const unreadable = "$argon2id$v=19$m=8,t=101,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA"
		if err := p.app.Store.UpdatePassword(context.Background(), u.ID, unreadable, p.clock.Now()); err != nil {
			t.Fatal(err)
		}
		hashed, _ := p.app.Hasher.Stats()
		if pg := loginAttempt(p.newBrowser(), p, email, password); pg.Status != http.StatusOK || pg.alert() == "" || pg.formWith("password") == nil {
			t.Fatalf("login with an unreadable stored hash: %d %q, want the form again with an alert", pg.Status, pg.alert())
		}
		// It takes a hash's time, as a wrong password or an unknown address
		// does: the answer's time does not tell such an account apart.
		if n, _ := p.app.Hasher.Stats(); n != hashed+1 {
			t.Errorf("login with an unreadable stored hash computed %d hashes, want 1", n-hashed)
		}
		pg := b.submit(b.get(p.URL+"/account/2fa/setup"), "password", map[string]string{"password": password})
		if pg.Status != http.StatusOK || pg.alert() == "" || pg.formWith("password") == nil {
			t.Fatalf("password on My Page with an unreadable stored hash: %d %q, want the form again with an alert", pg.Status, pg.alert())
		}
	})
}

// TestDeviceCookie: a browser that has completed a login to the account
// (password and code) is counted apart from every other: failures from
// elsewhere that lock the account do not keep it out, and its own failures
// lock only itself. A browser that passed the password alone is not
// trusted, nor is a forged cookie.
func TestDeviceCookie(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) { c.LoginIPMaxFailures = 1000 })
		_, secret, _ := enrolledUser(t, p)
		owner := p.newBrowser()
		accountLogin(t, p, owner, secret)
		halfway := p.newBrowser()
		if pg := loginAttempt(halfway, p, email, password); pg.formWith("code") == nil {
			t.Fatalf("password alone: want the code step, got %d %s", pg.Status, pg.URL)
		}
		if deviceCookie(owner, p) == "" || deviceCookie(halfway, p) != "" {
			t.Fatalf("device cookie after a whole login %q, after the password alone %q",
				deviceCookie(owner, p), deviceCookie(halfway, p))
		}
		// fail makes n failures from b, the last answered with last.
		fail := func(b *browser, n, last int) {
			t.Helper()
			for i := range n {
				want := http.StatusOK
				if i == n-1 {
					want = last
				}
				if pg := loginAttempt(b, p, email, "guess"); pg.Status != want {
					t.Fatalf("failure %d of %d: %d, want %d", i+1, n, pg.Status, want)
				}
			}
		}
		right := func(b *browser) *page { return loginAttempt(b, p, email, password) }

		// The owner's failures count on its own key: nine of them, then one
		// from another browser, do not lock the account ...
		fail(owner, 9, http.StatusOK)
		fail(p.newBrowser(), 1, http.StatusOK)
		// ... and the owner's tenth locks the owner's browser alone.
		fail(owner, 1, http.StatusTooManyRequests)
		if pg := right(owner); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("right password from the locked device: %d", pg.Status)
		}
		codeStep(t, p, halfway, right(halfway), secret)

		// Someone who knows the address locks the account ...
		p.clock.Advance(61 * time.Second)
		fail(p.newBrowser(), 10, http.StatusTooManyRequests)
		if pg := right(p.newBrowser()); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("right password from a new browser while the account is locked: %d", pg.Status)
		}
		// ... not with a forged cookie ...
		forged := p.newBrowser()
		v := deviceCookie(owner, p)
		i := len(v) - 10 // within the MAC
		v = v[:i] + map[bool]string{true: "A", false: "B"}[v[i] == 'B'] + v[i+1:]
		u, _ := url.Parse(p.URL)
		forged.client.Jar.SetCookies(u, []*http.Cookie{{Name: "idp_device", Value: v, Path: "/"}})
		if pg := right(forged); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("forged device cookie while the account is locked: %d, want 429", pg.Status)
		}
		// ... and the owner still re-enters the password on My Page ...
		pg := owner.get(p.URL + "/account/2fa/backup-codes")
		if pg = owner.submit(pg, "password", map[string]string{"password": password}); len(pg.byClass("backup-code")) == 0 {
			t.Fatalf("password re-entered on My Page while the account is locked: %d %q", pg.Status, pg.alert())
		}
		// ... and gets in, as does the browser that logged in since, its
		// cookie being as good.
		codeStep(t, p, owner, right(owner), secret)
		codeStep(t, p, halfway, right(halfway), secret)
	})
}

// trustedBrowsers starts a provider (no per-address limit in the way) with
// the test user, and two browsers that have logged in to it, each with its
// device cookie.
func trustedBrowsers(t *testing.T, db testenv.Database) (*provider, *browser, *browser) {
	t.Helper()
	p := startProvider(t, db, func(c *config.Config) { c.LoginIPMaxFailures = 1000 })
	p.createUser(email, password)
	a, b := p.newBrowser(), p.newBrowser()
	for _, br := range []*browser{a, b} {
		if pg := loginAttempt(br, p, email, password); pg.URL.Path != "/account" || deviceCookie(br, p) == "" {
			t.Fatalf("login: %d %s, device cookie %q", pg.Status, pg.URL, deviceCookie(br, p))
		}
	}
	return p, a, b
}

// lockAccount fails the test user's password from new browsers until the
// account locks (the default limit, 10).
func lockAccount(t *testing.T, p *provider) {
	t.Helper()
	for i := range 10 {
		if pg := loginAttempt(p.newBrowser(), p, email, "guess"); (pg.Status == http.StatusTooManyRequests) != (i == 9) {
			t.Fatalf("failure %d: %d", i+1, pg.Status)
		}
	}
}

// TestDeviceCookieAfterNewPassword: a new password leaves the device
// cookies given before it untrusted (a lost or stolen browser keeps no
// budget of its own), except the one of the browser that changed it on My
// Page, which gets a new cookie.
func TestDeviceCookieAfterNewPassword(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, lost, kept := trustedBrowsers(t, db)
		before := deviceCookie(kept, p)
		const newPassword = "a brand new passphrase 7"
		pg := kept.submit(kept.get(p.URL+"/account/password"), "new_password",
			map[string]string{"password": password, "new_password": newPassword, "new_password_confirm": newPassword})
		if pg.URL.Path != "/account" || deviceCookie(kept, p) == before || deviceCookie(kept, p) == "" {
			t.Fatalf("password change: %d %s %q; device cookie %q, was %q", pg.Status, pg.URL, pg.alert(), deviceCookie(kept, p), before)
		}

		lockAccount(t, p) // someone who knows the address
		// The lost browser's cookie no longer sets it apart, even with the
		// new password ...
		if pg := loginAttempt(lost, p, email, newPassword); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("the new password from a browser whose cookie came before it, the account locked: %d %s, want 429", pg.Status, pg.URL)
		}
		// ... the browser that changed it still re-enters it on My Page.
		pg = kept.submit(kept.get(p.URL+"/account/2fa/setup"), "password", map[string]string{"password": newPassword})
		if pg.Status != http.StatusOK || pg.alert() != "" || pg.formWith("code") == nil {
			t.Fatalf("the new password re-entered from the browser that set it, the account locked: %d %q", pg.Status, pg.alert())
		}
	})
}

// TestDeviceCookieAfterReset: a password reset by e-mail leaves the device
// cookies given before it untrusted, and gives one to the browser that
// reset it: someone who keeps the account locked does not keep its owner
// out of every browser after the reset (its lockout is cleared, but can be
// taken again at once).
func TestDeviceCookieAfterReset(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db, func(c *config.Config) { c.LoginIPMaxFailures = 1000 })
		p.createUser(email, password)
		owner := p.newBrowser()
		if pg := loginAttempt(owner, p, email, password); pg.URL.Path != "/account" || deviceCookie(owner, p) == "" {
			t.Fatalf("login: %d %s", pg.Status, pg.URL)
		}
		before := deviceCookie(owner, p)
		requestReset(t, p, owner, email)
		pg := owner.get(resetLink(t, srv.waitFor(email, "パスワード再設定のご案内")))
		const newPassword = "a brand new passphrase 7"
		pg = owner.submit(pg, "new_password", map[string]string{"new_password": newPassword, "new_password_confirm": newPassword})
		if pg.Status != http.StatusOK || deviceCookie(owner, p) == before || deviceCookie(owner, p) == "" {
			t.Fatalf("reset: %d %s %q; device cookie %q, was %q", pg.Status, pg.URL, pg.alert(), deviceCookie(owner, p), before)
		}
		lockAccount(t, p)
		if pg := loginAttempt(owner, p, email, newPassword); pg.URL.Path != "/account" {
			t.Fatalf("the new password from the browser that reset it, the account locked again: %d %s %q", pg.Status, pg.URL, pg.alert())
		}
	})
}

// TestDeviceCookieAfter2FAChanges: turning two-step verification on is new
// credentials too: a browser's cookie from before no longer counts, and
// the browser that turned it on gets a new one; the support desk's reset
// (idp user reset-mfa, for a lost phone) leaves every cookie untrusted.
func TestDeviceCookieAfter2FAChanges(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, before, owner := trustedBrowsers(t, db)
		old := deviceCookie(owner, p)
		enroll(t, p, owner)
		if deviceCookie(owner, p) == old || deviceCookie(owner, p) == "" {
			t.Fatalf("device cookie after turning 2FA on %q, before %q: want a new one", deviceCookie(owner, p), old)
		}
		lockAccount(t, p)
		if pg := loginAttempt(before, p, email, password); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("a browser whose cookie came before 2FA, the account locked: %d %s, want 429", pg.Status, pg.URL)
		}
		pg := owner.submit(owner.get(p.URL+"/account/2fa/backup-codes"), "password", map[string]string{"password": password})
		if len(pg.byClass("backup-code")) == 0 {
			t.Fatalf("the browser that turned 2FA on, re-entering the password with the account locked: %d %q", pg.Status, pg.alert())
		}

		// The support desk's reset: the owner's cookie no longer counts.
		if _, _, err := p.app.ResetMFA(context.Background(), email); err != nil {
			t.Fatal(err)
		}
		if pg := loginAttempt(owner, p, email, password); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("the owner's browser after the support desk's reset, the account locked: %d %s, want 429", pg.Status, pg.URL)
		}
	})
}

// TestDeviceCookieAndAddressLimit: failures sprayed across accounts from
// one address lock the address, not a browser with a device cookie for the
// account it logs in to; for any other account that browser is locked out
// like the rest.
func TestDeviceCookieAndAddressLimit(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) { c.LoginIPMaxFailures = 3 })
		p.createUser(email, password)
		const other = "other@example.com"
		p.createUser(other, password)
		owner := p.newBrowser()
		if pg := loginAttempt(owner, p, email, password); pg.URL.Path != "/account" {
			t.Fatalf("login: %d %s", pg.Status, pg.URL)
		}
		for i, addr := range []string{"a@example.com", other, "b@example.com"} {
			if pg := loginAttempt(p.newBrowser(), p, addr, "guess"); (pg.Status == http.StatusTooManyRequests) != (i == 2) {
				t.Fatalf("failure %d: %d", i+1, pg.Status)
			}
		}
		if pg := loginAttempt(p.newBrowser(), p, email, password); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("right password from a new browser at a locked address: %d", pg.Status)
		}
		if pg := loginAttempt(owner, p, other, password); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("another account's login with the owner's cookie at a locked address: %d", pg.Status)
		}
		if pg := loginAttempt(owner, p, email, password); pg.URL.Path != "/account" {
			t.Fatalf("the owner's login at a locked address: %d %s", pg.Status, pg.URL)
		}
	})
}

// TestDeviceCookieSecondStep: someone who knows the password and fails
// the code locks the account's second step for every browser but the
// owner's, whose own failures lock only itself.
func TestDeviceCookieSecondStep(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		_, secret, _ := enrolledUser(t, p)
		owner := p.newBrowser()
		accountLogin(t, p, owner, secret)
		// failCodes makes n failures at the code step from b, the last
		// answered with last.
		failCodes := func(b *browser, n, last int) {
			t.Helper()
			pg := loginAttempt(b, p, email, password)
			for i := range n {
				want := http.StatusOK
				if i == n-1 {
					want = last
				}
				if pg = b.submit(pg, "code", map[string]string{"code": wrongCode(totpCode(t, p, secret))}); pg.Status != want {
					t.Fatalf("code failure %d of %d: %d, want %d", i+1, n, pg.Status, want)
				}
			}
		}
		// The owner's four failures and another browser's four lock nothing ...
		failCodes(owner, 4, http.StatusOK)
		failCodes(p.newBrowser(), 4, http.StatusOK)
		// ... the fifth of another locks the account for all but the owner.
		failCodes(p.newBrowser(), 1, http.StatusTooManyRequests)
		p.clock.Advance(30 * time.Second)
		other := p.newBrowser()
		if pg := other.submit(loginAttempt(other, p, email, password), "code", map[string]string{"code": totpCode(t, p, secret)}); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("right code from a new browser while the second step is locked: %d", pg.Status)
		}
		codeStep(t, p, owner, loginAttempt(owner, p, email, password), secret)
		// The owner's own fifth failure locks the owner's browser.
		failCodes(owner, 5, http.StatusTooManyRequests)
		p.clock.Advance(30 * time.Second)
		if pg := owner.submit(loginAttempt(owner, p, email, password), "code", map[string]string{"code": totpCode(t, p, secret)}); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("right code from the owner's locked browser: %d", pg.Status)
		}
	})
}

// TestDeviceCookieAfterResetSecondStep: the device cookie a password reset
// gives counts for the password step only. Someone who holds the mailbox
// and the password, not the authenticator, and has locked the account's
// second step, gets no new budget of guesses by resetting the password.
func TestDeviceCookieAfterResetSecondStep(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db)
		_, secret, _ := enrolledUser(t, p)
		guesser := p.newBrowser()
		pg := loginAttempt(guesser, p, email, password)
		for i := range 5 {
			want := http.StatusOK
			if i == 4 {
				want = http.StatusTooManyRequests
			}
			if pg = guesser.submit(pg, "code", map[string]string{"code": wrongCode(totpCode(t, p, secret))}); pg.Status != want {
				t.Fatalf("code failure %d: %d, want %d", i+1, pg.Status, want)
			}
		}
		requestReset(t, p, guesser, email)
		pg = guesser.get(resetLink(t, srv.waitFor(email, "パスワード再設定のご案内")))
		const newPassword = "a brand new passphrase 7"
		pg = guesser.submit(pg, "new_password", map[string]string{"new_password": newPassword, "new_password_confirm": newPassword})
		if pg.Status != http.StatusOK || deviceCookie(guesser, p) == "" {
			t.Fatalf("reset: %d %s %q; device cookie %q", pg.Status, pg.URL, pg.alert(), deviceCookie(guesser, p))
		}
		pg = loginAttempt(guesser, p, email, newPassword)
		if pg.formWith("code") == nil {
			t.Fatalf("the new password: %d %s %q, want the code step", pg.Status, pg.URL, pg.alert())
		}
		if pg = guesser.submit(pg, "code", map[string]string{"code": wrongCode(totpCode(t, p, secret))}); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("a code from the browser that reset the password, the second step locked: %d, want 429", pg.Status)
		}
	})
}

// codeStep expects the code form in pg, then logs b in with the code.
func codeStep(t *testing.T, p *provider, b *browser, pg *page, secret string) {
	t.Helper()
	if pg.Status != http.StatusOK || pg.formWith("code") == nil {
		t.Fatalf("want the code step, got %d %s: %q", pg.Status, pg.URL, pg.alert())
	}
	p.clock.Advance(30 * time.Second) // a new time step: codes are not replayed
	if pg = b.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)}); pg.URL.Path != "/account" {
		t.Fatalf("code step: %d %s", pg.Status, pg.URL)
	}
}

// deviceCookie is the browser's device cookie for the provider, if any.
func deviceCookie(b *browser, p *provider) string { return b.cookie(p, "idp_device") }

// cookie is the value of the browser's cookie name for the provider; ""
// when it has none.
func (b *browser) cookie(p *provider, name string) string {
	u, _ := url.Parse(p.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// browserFrom is a browser whose connections come from another loopback
// address, or nil where the host cannot use it.
func browserFrom(t *testing.T, p *provider, ip string) *browser {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	u, _ := url.Parse(p.URL)
	c, err := d.Dial("tcp", u.Host)
	if err != nil {
		t.Logf("cannot connect from %s (%v): per-address isolation not checked", ip, err)
		return nil
	}
	c.Close()
	b := p.newBrowser()
	b.client.Transport = &http.Transport{DialContext: d.DialContext}
	return b
}

// TestReturnToStaysOnProvider: return_to after a login goes only to the
// provider's own paths; a relying party's redirect URIs must be registered.
func TestReturnToStaysOnProvider(t *testing.T) {
	p := startProvider(t, testenv.SQLite(t))
	p.createUser(email, password)
	p.newRP("viewer", true)
	host := strings.TrimPrefix(p.URL, "http://")
	// afterLogin logs in from /login?return_to=v and returns where the
	// successful password post sends the browser.
	afterLogin := func(v string) string {
		t.Helper()
		b := p.newBrowser()
		pg := b.get(p.URL + "/login?return_to=" + url.QueryEscape(v))
		action, vals := formValues(t, pg, "password", map[string]string{"email": email, "password": password})
		req, _ := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(vals.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := b.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("return_to=%q: login answered %d", v, resp.StatusCode)
		}
		return resp.Header.Get("Location")
	}
	// An own path is honoured, so ignoring the others means something.
	if loc := afterLogin("/account/2fa?x=1"); loc != "/account/2fa?x=1" {
		t.Fatalf("return_to=/account/2fa?x=1: sent to %q", loc)
	}
	for _, evil := range []string{
		"https://evil.example/", "http://evil.example", "//evil.example", "//evil.example/account",
		`/\evil.example`, `\\evil.example`, "/\t/evil.example", "/\n/evil.example", "///evil.example",
		"javascript:alert(document.cookie)", "JaVaScRiPt:alert(1)", " javascript:alert(1)",
		"data:text/html,<script>alert(1)</script>", "https:evil.example", "evil.example", "@evil.example",
		"http://" + host + "@evil.example/",
		// safeReturnTo alone makes "//evil.example/%7B" of this one; the
		// check again before the redirect catches it.
		"/%2Fevil.example/{", "/%2F%2Fevil.example ",
	} {
		loc := afterLogin(evil)
		if loc != "/account" {
			t.Errorf("return_to=%q: sent to %q, want /account", evil, loc)
		}
	}
	// Own paths that merely look odd stay own paths (a browser reads none of
	// these as another host).
	for _, odd := range []string{"/%2F%2Fevil.example", "/%5Cevil.example", "/./evil.example", "/account@evil.example"} {
		loc := afterLogin(odd)
		u, err := url.Parse(loc)
		if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(loc, "/") ||
			strings.HasPrefix(loc, "//") || strings.ContainsAny(loc, "\\\t\r\n") {
			t.Errorf("return_to=%q: sent to %q, not an own path", odd, loc)
		}
	}
	// A post-logout redirect that is not registered gets an error page.
	b := p.newBrowser()
	pg := b.get(p.URL + "/logout?client_id=viewer&post_logout_redirect_uri=" + url.QueryEscape("https://evil.example/"))
	if pg.Redirect != nil || pg.Status != http.StatusBadRequest {
		t.Errorf("unregistered post_logout_redirect_uri: %d %v", pg.Status, pg.Redirect)
	}
}

// rawPost sends a request as a script would, without following redirects.
func rawPost(t *testing.T, u, contentType, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// badInputs are requests that must be refused with a clear 4xx.
var badInputs = []struct {
	name, contentType, body string
	status                  int
	why                     string // the explanation the answer gives (in English)
	whyJA                   string // and on a page in Japanese, the pages' first language
}{
	{"oversized body", "application/x-www-form-urlencoded", "email=" + strings.Repeat("a", 70<<10), 413, "too large", "大きすぎます"},
	{"oversized body, many fields", "application/x-www-form-urlencoded", strings.Repeat("x=1&", 20<<10), 413, "too large", "大きすぎます"},
	{"invalid UTF-8", "application/x-www-form-urlencoded", "email=%ff%fe%fd&password=x", 400, "UTF-8", "UTF-8 のテキスト"},
	{"overlong UTF-8 encoding", "application/x-www-form-urlencoded", "email=%c0%af&password=x", 400, "UTF-8", "UTF-8 のテキスト"},
	{"invalid UTF-8 in a name", "application/x-www-form-urlencoded", "%ff=1", 400, "UTF-8", "UTF-8 のテキスト"},
	{"NUL in a field", "application/x-www-form-urlencoded", "email=a%00b&password=x", 400, "UTF-8", "UTF-8 のテキスト"},
	{"bad escape", "application/x-www-form-urlencoded", "email=%zz&password=x", 400, "not a valid form", "フォームの形式"},
	{"truncated escape", "application/x-www-form-urlencoded", "email=abc%4", 400, "not a valid form", "フォームの形式"},
	{"semicolon separator", "application/x-www-form-urlencoded", "email=a;password=b", 400, "not a valid form", "フォームの形式"},
	{"duplicated parameter", "application/x-www-form-urlencoded", "email=a@example.com&email=b@example.com&password=x", 400, "repeated", "項目 email が重複"},
	{"duplicated empty parameter", "application/x-www-form-urlencoded", "csrf=&csrf=", 400, "repeated", "項目 csrf が重複"},
	{"over-long e-mail", "application/x-www-form-urlencoded", "email=" + strings.Repeat("a", 255) + "&password=x", 400, "too long", "項目 email が長すぎます"},
	{"over-long password", "application/x-www-form-urlencoded", "email=a@b&password=" + strings.Repeat("p", 1025), 400, "too long", "項目 password が長すぎます"},
	{"over-long code", "application/x-www-form-urlencoded", "code=" + strings.Repeat("1", 65), 400, "too long", "項目 code が長すぎます"},
	{"over-long unknown field", "application/x-www-form-urlencoded", "junk=" + strings.Repeat("j", 9<<10), 400, "A parameter is too long", "長すぎる項目があります"},
	// A name no parameter has is not repeated on the page: it is the
	// requester's text ("expired: call this number"), not the provider's.
	{"duplicated odd name", "application/x-www-form-urlencoded", "%E5%A4%B1%E5%8A%B9.+tel=1&%E5%A4%B1%E5%8A%B9.+tel=2", 400, "A parameter is repeated", "同じ名前の項目が重複"},
	{"over-long odd name", "application/x-www-form-urlencoded", "Call+Us=" + strings.Repeat("j", 9<<10), 400, "A parameter is too long", "長すぎる項目があります"},
	{"JSON", "application/json", `{"email":"a@example.com","password":"x"}`, 415, "application/x-www-form-urlencoded", "形式で送信してください"},
	{"multipart", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na\r\n--x--\r\n", 415, "application/x-www-form-urlencoded", "形式で送信してください"},
	{"text/plain", "text/plain", "email=a&password=b", 415, "application/x-www-form-urlencoded", "形式で送信してください"},
	{"malformed content type", "application/x-www-form-urlencoded; charset", "email=a", 415, "application/x-www-form-urlencoded", "形式で送信してください"},
	{"other charset", "application/x-www-form-urlencoded; charset=iso-8859-1", "email=a", 400, "UTF-8", "受け付ける文字コードは UTF-8"},
	{"no content type", "", "email=a&password=b", 400, "Content-Type", "Content-Type がありません"},
}

// TestBadInputRefused sends malformed requests to a form and to the token
// endpoint: a 4xx that says why, as a page or as a JSON OAuth error.
func TestBadInputRefused(t *testing.T) {
	p := startProvider(t, testenv.SQLite(t))
	p.createUser(email, password)
	p.newRP("viewer", true)
	noLeak := func(t *testing.T, what, body string, h http.Header) {
		t.Helper()
		// The request id is random: it may spell anything, "SQL" too.
		if id := h.Get("X-Request-Id"); id != "" {
			body = strings.ReplaceAll(body, id, "")
		}
		for _, bad := range []string{"panic", "goroutine", "runtime/", ".go:", "sql", "SQL"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: the answer contains %q:\n%s", what, bad, body)
			}
		}
	}
	for _, path := range []string{"/login", "/login/totp", "/login/backup", "/consent", "/account/2fa/disable"} {
		for _, c := range badInputs {
			t.Run(strings.TrimPrefix(path, "/")+"/"+c.name, func(t *testing.T) {
				resp, body := rawPost(t, p.URL+path, c.contentType, c.body, nil)
				if resp.StatusCode != c.status {
					t.Fatalf("status %d, want %d:\n%s", resp.StatusCode, c.status, body)
				}
				pg := &page{Status: resp.StatusCode, Header: resp.Header, Body: body, Doc: parseHTML(body)}
				if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || pg.alert() == "" {
					t.Errorf("want an HTML error page with an alert, got %q:\n%s", resp.Header.Get("Content-Type"), body)
				}
				if !strings.Contains(body, c.whyJA) {
					t.Errorf("the page does not say why (%q):\n%s", c.whyJA, body)
				}
				checkPageHeaders(t, c.name, resp.Header, body)
				noLeak(t, c.name, body, resp.Header)
				if path == "/login" { // and in English for a browser that asks for it
					resp, body := rawPost(t, p.URL+path, c.contentType, c.body, map[string]string{"Accept-Language": "en"})
					if resp.StatusCode != c.status || !strings.Contains(body, c.why) || strings.Contains(body, c.whyJA) {
						t.Errorf("in English: status %d, want %d, saying %q:\n%s", resp.StatusCode, c.status, c.why, body)
					}
				}
			})
		}
	}
	// The same on the token endpoint, as a JSON OAuth error that is not cached.
	valid := "grant_type=authorization_code&code=abc&redirect_uri=" + url.QueryEscape(callback) + "&client_id=viewer&code_verifier=" + strings.Repeat("v", 43)
	tokenCases := append(slices.Clone(badInputs), []struct {
		name, contentType, body string
		status                  int
		why, whyJA              string
	}{
		{"duplicated code", "application/x-www-form-urlencoded", valid + "&code=def", 400, "repeated", ""},
		{"duplicated grant_type", "application/x-www-form-urlencoded", "grant_type=authorization_code&grant_type=client_credentials", 400, "repeated", ""},
		{"over-long code (8 KiB)", "application/x-www-form-urlencoded", "grant_type=authorization_code&code=" + strings.Repeat("c", 8<<10+1), 400, "too long", ""},
		{"JSON token request", "application/json", `{"grant_type":"authorization_code","code":"abc"}`, 415, "application/x-www-form-urlencoded", ""},
	}...)
	for _, c := range tokenCases {
		if c.name == "over-long code" || c.name == "over-long e-mail" || c.name == "over-long password" {
			continue // protocol endpoints have the general 8 KiB limit
		}
		t.Run("token/"+c.name, func(t *testing.T) {
			resp, body := rawPost(t, p.URL+"/oauth2/token", c.contentType, c.body, nil)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d:\n%s", resp.StatusCode, c.status, body)
			}
			var e struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("want a JSON error, got %q %q", resp.Header.Get("Content-Type"), body)
			}
			if e.Error != "invalid_request" || !strings.Contains(e.Description, c.why) {
				t.Errorf("error %q (%q), want invalid_request saying %q", e.Error, e.Description, c.why)
			}
			if !strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
				t.Errorf("Cache-Control = %q", resp.Header.Get("Cache-Control"))
			}
			noLeak(t, c.name, body, resp.Header)
		})
	}
	// Duplicated or malformed query parameters on the authorization
	// endpoint: an error page, never a redirect with them.
	b := p.newBrowser()
	for _, q := range []string{
		"client_id=viewer&client_id=other&response_type=code&scope=openid&redirect_uri=" + url.QueryEscape(callback),
		"client_id=viewer&response_type=code&scope=openid&redirect_uri=" + url.QueryEscape(callback) + "&redirect_uri=https://evil.example/",
		"client_id=%ff&response_type=code",
		"client_id=%zz",
	} {
		pg := b.get(p.URL + "/oauth2/auth?" + q)
		if pg.Status != http.StatusBadRequest || pg.Redirect != nil || pg.alert() == "" {
			t.Errorf("authorize?%s: %d %v", q, pg.Status, pg.Redirect)
		}
		checkPageHeaders(t, "authorize?"+q, pg.Header, pg.Body)
	}
	// After all that, the provider still works.
	r := p.newRP("after", true)
	a := r.authorize()
	r.mustExchange(a, login(t, p.newBrowser(), r, a))
}

func parseHTML(s string) *htmlNode {
	doc, _ := html.Parse(strings.NewReader(s))
	return doc
}

// TestUserDisabled: the support desk disables an account (idp user
// disable): its sessions end, its tokens stop working, a login half-way
// (password done, code not yet) does not finish, and the right password
// gets a page saying the account is disabled (a wrong one, the usual
// message); enabled again, it logs in.
func TestUserDisabled(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		_, secret, _ := enrolledUser(t, p)
		r := p.newRP("viewer", true)
		ctx := context.Background()

		b := p.newBrowser()
		a := r.authorize()
		pg := b.submit(b.get(a.URL), "password", map[string]string{"email": email, "password": password})
		tk := r.mustExchange(a, b.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)}).code(t, a))
		p.clock.Advance(30 * time.Second) // the next code
		halfway := p.newBrowser()
		pg = halfway.submit(halfway.get(r.authorize().URL), "password", map[string]string{"email": email, "password": password})
		if pg.formWith("code") == nil {
			t.Fatalf("no code form after the password: %d %s", pg.Status, pg.URL)
		}

		u, err := p.app.SetUserDisabled(ctx, email, true)
		if err != nil || u.DisabledAt.IsZero() {
			t.Fatalf("disable: %v, %v", u, err)
		}
		signedOut(t, p, b, r, tk, "the account was disabled")
		halfway.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)})
		if halfway.hasSession(p) {
			t.Error("a login half-way when the account was disabled finished")
		}
		nb := p.newBrowser()
		if pg := loginAttempt(nb, p, email, password); pg.Status != http.StatusForbidden ||
			!strings.Contains(pg.alert(), "ご利用いただけません") || pg.formWith("code") != nil {
			t.Errorf("the right password of a disabled account: %d %q", pg.Status, pg.alert())
		}
		if pg := loginAttempt(nb, p, email, "a wrong password"); !strings.Contains(pg.alert(), "正しくありません") {
			t.Errorf("a wrong password of a disabled account: %d %q", pg.Status, pg.alert())
		}
		if nb.hasSession(p) {
			t.Error("a disabled account logged in")
		}

		if _, err := p.app.SetUserDisabled(ctx, email, false); err != nil {
			t.Fatal(err)
		}
		p.clock.Advance(30 * time.Second)
		a = r.authorize()
		pg = nb.submit(nb.get(a.URL), "password", map[string]string{"email": email, "password": password})
		r.mustExchange(a, nb.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)}).code(t, a))
	})
}

// TestUserDisabledOnce: support staff disable (then enable) an account
// twice at once, from two terminals: one call changes it and records the
// event, the other says how it is, whatever the order.
func TestUserDisabledOnce(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		u, _, _ := enrolledUser(t, p)
		ctx := context.Background()
		for _, disabled := range []bool{true, false} {
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					got, err := p.app.SetUserDisabled(ctx, email, disabled)
					if err != nil || got.DisabledAt.IsZero() == disabled {
						t.Errorf("SetUserDisabled(%v) = %+v, %v", disabled, got, err)
					}
				})
			}
			wg.Wait()
		}
		events, err := p.app.Store.ListAuditEvents(ctx, u.ID, 100)
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		for _, e := range events {
			count[e.Type]++
		}
		if count["user.disabled"] != 1 || count["user.enabled"] != 1 {
			t.Errorf("events recorded: %v, want one of each", count)
		}
	})
}

// signedOut checks that the browser b's session and the tokens tk that r
// got in it no longer work, since what happened (why).
func signedOut(t *testing.T, p *provider, b *browser, r *rp, tk *tokens, why string) {
	t.Helper()
	ctx := context.Background()
	if b.hasSession(p) {
		t.Error("the browser is still signed in after " + why)
	}
	if _, err := r.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tk.RefreshToken}).Token(); err == nil {
		t.Error("the refresh token works after " + why)
	}
	if _, err := r.provider.UserInfo(ctx, oauth2.StaticTokenSource(tk.Token)); err == nil {
		t.Error("the access token works at userinfo after " + why)
	}
}

// TestUserDeleted: an account deleted on request (idp user delete) is
// signed out everywhere, its tokens stop working, its address logs in no
// more (the usual message), and may sign up again as a new account.
func TestUserDeleted(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		u := p.createUser(email, password)
		r := p.newRP("viewer", true)
		ctx := context.Background()
		b := p.newBrowser()
		a := r.authorize()
		tk := r.mustExchange(a, login(t, b, r, a))

		if _, err := p.app.DeleteUser(ctx, email); err != nil {
			t.Fatal(err)
		}
		signedOut(t, p, b, r, tk, "the account was deleted")
		if pg := loginAttempt(p.newBrowser(), p, email, password); !strings.Contains(pg.alert(), "正しくありません") {
			t.Errorf("the deleted account's password: %d %q", pg.Status, pg.alert())
		}
		again := p.createUser(email, password)
		a = r.authorize()
		if sub := r.mustExchange(a, login(t, p.newBrowser(), r, a)).Claims["sub"]; sub != again.ID || sub == u.ID {
			t.Errorf("the address signed up again logs in as %v, want the new account %s (not %s)", sub, again.ID, u.ID)
		}
	})
}

// TestRefreshNeedsTheAccount: behind the tokens that disabling or deleting
// an account ends, a refresh and userinfo also refuse an account that is
// disabled or gone (here changed in the database alone, its tokens left).
func TestRefreshNeedsTheAccount(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		u := p.createUser(email, password)
		r := p.newRP("viewer", true)
		ctx := context.Background()
		a := r.authorize()
		tk := r.mustExchange(a, login(t, p.newBrowser(), r, a)).Token
		sqlDB := p.app.Store.(interface{ DB() *sql.DB }).DB()
		set := func(query string) {
			t.Helper()
			if _, err := sqlDB.Exec(query, u.ID); err != nil {
				t.Fatal(err)
			}
		}

		set(`UPDATE users SET disabled_at = 1 WHERE id = $1`)
		_, err := refresh(r, tk.RefreshToken)
		wantInvalidGrant(t, "a refresh for a disabled account", err)
		if _, err := r.provider.UserInfo(ctx, oauth2.StaticTokenSource(tk)); err == nil {
			t.Error("userinfo answered for a disabled account")
		}
		set(`UPDATE users SET disabled_at = 0 WHERE id = $1`)
		if tk, err = refresh(r, tk.RefreshToken); err != nil {
			t.Fatalf("a refresh once enabled again: %v", err)
		}
		set(`DELETE FROM users WHERE id = $1`)
		_, err = refresh(r, tk.RefreshToken)
		wantInvalidGrant(t, "a refresh for a deleted account", err)
	})
}
