package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kamera-id/idp/idp/mfa"
)

// Steps of a login as the tool times them.
const (
	stepAuthorize = "authorize"  // GET /oauth2/auth → the login page's address
	stepLoginPage = "login_page" // GET /login?flow=
	stepPassword  = "password"   // POST /login (one argon2id verification) → the TOTP form
	stepTOTP      = "totp"       // POST /login/totp → the code at the redirect URI
	stepExchange  = "exchange"   // POST /oauth2/token, authorization_code with PKCE
	stepUserinfo  = "userinfo"   // GET /userinfo
	stepRefresh   = "refresh"    // POST /oauth2/token, refresh_token
	stepSSOAuthz  = "sso_authorize"
)

// loginSteps are the steps of a whole login, in order.
var loginSteps = []string{stepAuthorize, stepLoginPage, stepPassword, stepTOTP, stepExchange, stepUserinfo, stepRefresh}

// target is the provider under load and its registered client.
type target struct {
	URL          string
	ClientID     string
	ClientSecret string
	RedirectURI  string
	transport    *http.Transport
	requests     atomic.Int64 // HTTP requests sent to the provider
}

// account is a seeded user with an enrolled authenticator.
type account struct {
	Email, Password, Secret string
	nextStep                int64 // the next TOTP step to use (replay guard)
}

// user is one simulated person: a browser (cookie jar) and the relying
// party's back end acting for them.
type user struct {
	t       *target
	acct    *account
	browser *http.Client
	rp      *http.Client
	rec     *recorder

	refresh string // the latest refresh token
}

func newUser(t *target, a *account, rec *recorder) *user {
	jar, _ := cookiejar.New(nil)
	return &user{
		t: t, acct: a, rec: rec,
		browser: &http.Client{
			Jar: jar, Transport: t.transport, Timeout: 60 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		rp: &http.Client{Transport: t.transport, Timeout: 60 * time.Second},
	}
}

var (
	reCSRF = regexp.MustCompile(`name="csrf" value="([^"]*)"`)
	reFlow = regexp.MustCompile(`name="flow" value="([^"]*)"`)
)

// pkce is one authorization request's state.
type pkce struct{ state, nonce, verifier, challenge string }

func newPKCE() pkce {
	b := make([]byte, 48)
	_, _ = rand.Read(b)
	p := pkce{
		state:    base64.RawURLEncoding.EncodeToString(b[:16]),
		nonce:    base64.RawURLEncoding.EncodeToString(b[16:32]),
		verifier: base64.RawURLEncoding.EncodeToString(b) + "-verifier-padding",
	}
	sum := sha256.Sum256([]byte(p.verifier))
	p.challenge = base64.RawURLEncoding.EncodeToString(sum[:])
	return p
}

func (u *user) authorizeURL(p pkce) string {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {u.t.ClientID},
		"redirect_uri":          {u.t.RedirectURI},
		"scope":                 {"openid profile email offline_access"},
		"state":                 {p.state},
		"nonce":                 {p.nonce},
		"code_challenge":        {p.challenge},
		"code_challenge_method": {"S256"},
	}
	return u.t.URL + "/oauth2/auth?" + q.Encode()
}

// timed runs one request as a named step and records its latency.
func (u *user) timed(step string, f func() error) error {
	start := time.Now()
	err := f()
	if err == nil {
		u.rec.add(step, time.Since(start))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	return nil
}

// send does a request and returns the status, the Location header and the
// body (read in full, so the connection is reused).
func send(c *http.Client, req *http.Request) (int, string, string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b), err
}

// send is send, counted.
func (u *user) send(c *http.Client, req *http.Request) (int, string, string, error) {
	u.t.requests.Add(1)
	return send(c, req)
}

func (u *user) get(ctx context.Context, raw string) (int, string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Accept-Language", "ja")
	return u.send(u.browser, req)
}

func (u *user) post(ctx context.Context, path string, form url.Values) (int, string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.t.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept-Language", "ja")
	req.Header.Set("Origin", u.t.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return u.send(u.browser, req)
}

// codeFrom returns the authorization code of a redirect to the relying
// party, checking its state.
func (u *user) codeFrom(status int, loc string, p pkce) (string, error) {
	if status != http.StatusSeeOther && status != http.StatusFound {
		return "", fmt.Errorf("status %d, want a redirect to the client", status)
	}
	l, err := url.Parse(loc)
	if err != nil {
		return "", err
	}
	q := l.Query()
	if e := q.Get("error"); e != "" {
		return "", fmt.Errorf("authorization error %s: %s", e, q.Get("error_description"))
	}
	if !strings.HasPrefix(loc, u.t.RedirectURI) || q.Get("state") != p.state || q.Get("code") == "" {
		return "", fmt.Errorf("unexpected redirect %q", loc)
	}
	return q.Get("code"), nil
}

func hidden(re *regexp.Regexp, body string) string {
	m := re.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// loginState is a login in progress.
type loginState struct {
	p                    pkce
	loginURL, csrf, flow string
	code                 string
}

// login runs a whole login with TOTP up to the authorization code.
func (u *user) login(ctx context.Context, p pkce, now func() time.Time) (string, error) {
	st := &loginState{p: p}
	if err := u.startLogin(ctx, st); err != nil {
		return "", err
	}
	if err := u.submitPassword(ctx, st); err != nil {
		return "", err
	}
	if err := u.submitTOTP(ctx, st, now); err != nil {
		return "", err
	}
	return st.code, nil
}

// startLogin asks for authorization and opens the login page.
func (u *user) startLogin(ctx context.Context, st *loginState) error {
	err := u.timed(stepAuthorize, func() error {
		status, loc, _, err := u.get(ctx, u.authorizeURL(st.p))
		if err != nil {
			return err
		}
		if status != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?flow=") {
			return fmt.Errorf("status %d to %q, want a redirect to /login", status, loc)
		}
		st.loginURL = u.t.URL + loc
		return nil
	})
	if err != nil {
		return err
	}
	return u.timed(stepLoginPage, func() error {
		status, _, body, err := u.get(ctx, st.loginURL)
		if err != nil {
			return err
		}
		st.csrf, st.flow = hidden(reCSRF, body), hidden(reFlow, body)
		if status != http.StatusOK || st.csrf == "" || st.flow == "" {
			return fmt.Errorf("status %d, no login form", status)
		}
		return nil
	})
}

// submitPassword posts the e-mail and password, which the provider
// answers with the TOTP form. (A provider before commit "login: the code
// form answers the password form" redirected to it: the step then includes
// that page's request, so that the tool can still compare the two.)
func (u *user) submitPassword(ctx context.Context, st *loginState) error {
	return u.timed(stepPassword, func() error {
		status, loc, body, err := u.post(ctx, "/login", url.Values{
			"csrf": {st.csrf}, "flow": {st.flow}, "email": {u.acct.Email}, "password": {u.acct.Password},
		})
		if err == nil && status == http.StatusSeeOther && strings.HasPrefix(loc, "/login/totp?") {
			status, loc, body, err = u.get(ctx, u.t.URL+loc)
		}
		if err != nil {
			return err
		}
		flow := hidden(reFlow, body) // the login as the password step left it
		if status != http.StatusOK || flow == "" || !strings.Contains(body, `action="/login/totp"`) {
			return fmt.Errorf("status %d to %q, want the TOTP form", status, loc)
		}
		st.flow = flow
		return nil
	})
}

// submitTOTP posts a code to the TOTP form; the provider answers with the
// authorization code.
func (u *user) submitTOTP(ctx context.Context, st *loginState, now func() time.Time) error {
	// A code the provider accepts: the current step, or a later one within
	// the allowed skew when this account already used it.
	step := max(mfa.StepAt(now()), u.acct.nextStep)
	if step > mfa.StepAt(now())+mfa.Skew {
		return fmt.Errorf("account %s used its TOTP codes for this window", u.acct.Email)
	}
	u.acct.nextStep = step + 1
	totp, err := mfa.CodeAt(u.acct.Secret, step)
	if err != nil {
		return err
	}
	return u.timed(stepTOTP, func() error {
		status, loc, _, err := u.post(ctx, "/login/totp", url.Values{"csrf": {st.csrf}, "flow": {st.flow}, "code": {totp}})
		if err != nil {
			return err
		}
		st.code, err = u.codeFrom(status, loc, st.p)
		return err
	})
}

// ssoAuthorize asks for a code with the browser's SSO session (no login).
func (u *user) ssoAuthorize(ctx context.Context, p pkce) (string, error) {
	var code string
	err := u.timed(stepSSOAuthz, func() error {
		status, loc, _, err := u.get(ctx, u.authorizeURL(p))
		if err != nil {
			return err
		}
		code, err = u.codeFrom(status, loc, p)
		return err
	})
	return code, err
}

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	Error        string `json:"error"`
}

func (u *user) token(ctx context.Context, form url.Values) (*tokenResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.t.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(u.t.ClientID), url.QueryEscape(u.t.ClientSecret))
	status, _, body, err := u.send(u.rp, req)
	if err != nil {
		return nil, err
	}
	var tr tokenResponse
	if err := json.Unmarshal([]byte(body), &tr); err != nil {
		return nil, fmt.Errorf("status %d: %w", status, err)
	}
	if status != http.StatusOK || tr.AccessToken == "" {
		return nil, fmt.Errorf("status %d: %s", status, tr.Error)
	}
	return &tr, nil
}

// exchange trades a code (with its PKCE verifier) for tokens.
func (u *user) exchange(ctx context.Context, code string, p pkce) (*tokenResponse, error) {
	var tr *tokenResponse
	err := u.timed(stepExchange, func() error {
		var err error
		tr, err = u.token(ctx, url.Values{
			"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {u.t.RedirectURI},
			"code_verifier": {p.verifier},
		})
		if err == nil && (tr.IDToken == "" || tr.RefreshToken == "") {
			err = fmt.Errorf("no ID token or refresh token")
		}
		return err
	})
	if err == nil {
		u.refresh = tr.RefreshToken
	}
	return tr, err
}

func (u *user) userinfo(ctx context.Context, access string) error {
	return u.timed(stepUserinfo, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.t.URL+"/userinfo", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+access)
		status, _, body, err := u.send(u.rp, req)
		if err != nil {
			return err
		}
		if status != http.StatusOK || !strings.Contains(body, `"sub"`) {
			return fmt.Errorf("status %d", status)
		}
		return nil
	})
}

// refreshOnce rotates the user's refresh token.
func (u *user) refreshOnce(ctx context.Context) error {
	return u.timed(stepRefresh, func() error {
		tr, err := u.token(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {u.refresh}})
		if err != nil {
			return err
		}
		u.refresh = tr.RefreshToken
		return nil
	})
}

// fullLogin is the whole flow: login with TOTP, code exchange, userinfo,
// and (withRefresh) one refresh.
func (u *user) fullLogin(ctx context.Context, now func() time.Time, withRefresh bool) error {
	p := newPKCE()
	code, err := u.login(ctx, p, now)
	if err != nil {
		return err
	}
	tr, err := u.exchange(ctx, code, p)
	if err != nil {
		return err
	}
	if err := u.userinfo(ctx, tr.AccessToken); err != nil {
		return err
	}
	if withRefresh {
		return u.refreshOnce(ctx)
	}
	return nil
}

// recorder collects latencies per step.
type recorder struct {
	mu  sync.Mutex
	lat map[string][]time.Duration
}

func newRecorder() *recorder { return &recorder{lat: map[string][]time.Duration{}} }

func (r *recorder) add(step string, d time.Duration) {
	r.mu.Lock()
	r.lat[step] = append(r.lat[step], d)
	r.mu.Unlock()
}

// runPool runs n jobs on c workers until done, the first error, or ctx
// ends; it returns how many jobs succeeded and the first error.
func runPool(ctx context.Context, n, c int, job func(ctx context.Context, i int) error) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan int)
	var (
		mu    sync.Mutex
		ok    int
		first error
		wg    sync.WaitGroup
	)
	for range c {
		wg.Go(func() {
			for i := range jobs {
				err := job(ctx, i)
				mu.Lock()
				if err == nil {
					ok++
				} else if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	for i := 0; i < n; i++ {
		select {
		case jobs <- i:
			continue
		case <-ctx.Done():
		}
		break
	}
	close(jobs)
	wg.Wait()
	if first == nil && ctx.Err() != nil && ok < n {
		first = ctx.Err()
	}
	return ok, first
}
