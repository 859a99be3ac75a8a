package e2e

import (
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/testenv"
)

// tcpProxy stands between the provider and PostgreSQL so that a test can
// cut the database off (and bring it back on the same address) without
// touching the real server, which others share.
type tcpProxy struct {
	t        *testing.T
	addr     string // where the provider connects
	upstream string

	mu    sync.Mutex
	ln    net.Listener
	down  bool
	conns map[net.Conn]struct{}
}

func startTCPProxy(t *testing.T, upstream string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, addr: ln.Addr().String(), upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln, p.down = ln, false
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *tcpProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *tcpProxy) pipe(c net.Conn) {
	u, err := net.DialTimeout("tcp", p.upstream, 3*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, u) {
		c.Close()
		u.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

// cut closes the listener and every connection: the database is gone.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// restore listens again on the same address.
func (p *tcpProxy) restore() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("restore the database proxy on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// leaks are what an answer must never show: the database's or the Go
// runtime's internals. None is short enough to turn up by chance in the
// random tokens of a page (base64url has no colon, slash or space).
var leaks = []string{"pgconn", "jackc/pgx", "pgx:", "dial tcp", "connection refused", "sql:", ":5432",
	"unexpected EOF", "goroutine", "panic", "store:", "SQLSTATE"}

func leaked(body string) string {
	for _, l := range leaks {
		if strings.Contains(body, l) {
			return l
		}
	}
	return ""
}

// loadStats is what the load goroutines saw.
type loadStats struct {
	mu       sync.Mutex
	statuses map[int]int
	bad      []string // answers that must never happen
	ok503    atomic.Int64
	done     atomic.Int64
}

func (s *loadStats) record(status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statuses[status]++
	switch status {
	case http.StatusOK, http.StatusSeeOther, http.StatusFound:
	case http.StatusServiceUnavailable:
		s.ok503.Add(1)
	default:
		s.bad = append(s.bad, strconv.Itoa(status)+": "+body)
	}
	if l := leaked(body); l != "" {
		s.bad = append(s.bad, "leaks "+l+": "+body)
	}
}

// loadLogin is one password login from the relying party's request, as a
// browser makes it, recording each answer. It never calls t.Fatal (it runs
// outside the test's goroutine).
func loadLogin(s *loadStats, base, authURL string) {
	jar, _ := cookiejar.New(nil)
	bu, _ := url.Parse(base)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host != bu.Host {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := c.Get(authURL)
	if err != nil {
		s.record(0, "transport: "+err.Error())
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s.record(resp.StatusCode, string(body))
	if resp.StatusCode != http.StatusOK {
		return
	}
	doc, _ := html.Parse(strings.NewReader(string(body)))
	vals := url.Values{}
	var action string
	for _, f := range findAll(doc, func(n *html.Node) bool { return n.Data == "form" }) {
		if len(findAll(f, func(n *html.Node) bool { return attr(n, "name") == "password" })) == 0 {
			continue
		}
		action = attr(f, "action")
		for _, in := range findAll(f, func(n *html.Node) bool { return n.Data == "input" && attr(n, "type") == "hidden" }) {
			vals.Set(attr(in, "name"), attr(in, "value"))
		}
	}
	if action == "" {
		s.record(-1, "no login form: "+string(body))
		return
	}
	vals.Set("email", "load@example.com")
	vals.Set("password", password)
	target, _ := resp.Request.URL.Parse(action)
	req, _ := http.NewRequest(http.MethodPost, target.String(), strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err = c.Do(req)
	if err != nil {
		s.record(0, "transport: "+err.Error())
		return
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	s.record(resp.StatusCode, string(body))
	s.done.Add(1)
}

// TestDatabaseOutage cuts PostgreSQL off (through a proxy the test owns)
// while a few goroutines keep logging in: the provider answers 503 with the
// friendly page (JSON temporarily_unavailable on the token endpoint), never
// a 500 or its internals, stays up, reports not ready, and once the
// database is back logins succeed again within 5 s with nothing confirmed
// lost.
func TestDatabaseOutage(t *testing.T) {
	db := testenv.Postgres(t)
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startTCPProxy(t, u.Host)
	u.Host = proxy.addr
	p := startProvider(t, db, func(c *config.Config) { c.DatabaseURL = u.String() })
	user := p.createUser(email, password)
	p.createUser("load@example.com", password)
	r := p.newRP("viewer", true)

	// Confirmed before the outage: a session, and two-step verification.
	b := p.newBrowser()
	accountLogin(t, p, b, "")
	secret, _ := enroll(t, p, b)
	if !mfaEnabled(t, p, user.ID) {
		t.Fatal("enrollment not confirmed")
	}

	stats := &loadStats{statuses: map[int]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				loadLogin(stats, p.URL, r.authorize().URL)
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	waitFor(t, "logins before the outage", func() bool { return stats.done.Load() >= 3 })

	proxy.cut()
	waitFor(t, "/readyz to fail", func() bool { return status(t, p.URL+"/readyz") == http.StatusServiceUnavailable })
	waitFor(t, "the load to meet 503s", func() bool { return stats.ok503.Load() >= 5 })

	// A page: the login page needs no store (its login is sealed in it);
	// its password step gets the friendly 503, with Retry-After, in
	// Japanese first.
	ob := p.newBrowser()
	pg := ob.get(r.authorize().URL)
	if pg.Status != http.StatusOK {
		t.Fatalf("the login page during the outage: %d\n%s", pg.Status, pg.Body)
	}
	pg = ob.submit(pg, "password", map[string]string{"email": "someone@example.com", "password": "a password"})
	if pg.Status != http.StatusServiceUnavailable || pg.Header.Get("Retry-After") == "" ||
		!strings.Contains(pg.Body, "ただいまサービスをご利用いただけません") || leaked(pg.Body) != "" {
		t.Fatalf("a page during the outage: %d Retry-After=%q\n%s", pg.Status, pg.Header.Get("Retry-After"), pg.Body)
	}
	// The token endpoint: a JSON 503 temporarily_unavailable.
	resp, err := http.PostForm(p.URL+"/oauth2/token", url.Values{"grant_type": {"authorization_code"},
		"code": {"x"}, "client_id": {"viewer"}, "client_secret": {r.cfg.ClientSecret}, "redirect_uri": {callback},
		"code_verifier": {strings.Repeat("v", 43)}})
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(tb), `"temporarily_unavailable"`) || leaked(string(tb)) != "" {
		t.Fatalf("token endpoint during the outage: %d %s", resp.StatusCode, tb)
	}
	// Revocation: a 503 too. A 200 would tell the client its token is
	// revoked while it still works (RFC 7009 2.2.1).
	for _, token := range []string{"ory_at_x.y", "ory_rt_x.y"} {
		resp, err = http.PostForm(p.URL+"/oauth2/revoke", url.Values{"token": {token},
			"client_id": {"viewer"}, "client_secret": {r.cfg.ClientSecret}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("revocation during the outage: %d, want 503", resp.StatusCode)
		}
	}
	// The process is up: liveness still answers.
	if s := status(t, p.URL+"/healthz"); s != http.StatusOK {
		t.Fatalf("/healthz during the outage: %d", s)
	}

	// The database returns: within 5 s a whole login with the second step
	// succeeds again (polled; each try uses a fresh time step).
	proxy.restore()
	deadline := time.Now().Add(5 * time.Second)
	for attempt := 1; ; attempt++ {
		if ok, why := tryMFALogin(t, p, r, secret); ok {
			t.Logf("login succeeded %d tries after the database returned", attempt)
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no successful login within 5 s of the database's return: %s", why)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	stop = make(chan struct{}) // for the deferred close

	stats.mu.Lock()
	t.Logf("load: %v", stats.statuses)
	for _, bad := range stats.bad {
		t.Errorf("answer during the outage: %.400s", bad)
	}
	stats.mu.Unlock()

	// Nothing confirmed was lost: the session made before the outage still
	// opens My Page, and two-step verification is still on.
	if pg := b.get(p.URL + "/account"); pg.Status != http.StatusOK || pg.formWith("password") != nil {
		t.Fatalf("the session from before the outage is gone: %d %s", pg.Status, pg.URL)
	}
	if !mfaEnabled(t, p, user.ID) {
		t.Fatal("two-step verification lost in the outage")
	}
	waitFor(t, "/readyz to pass", func() bool { return status(t, p.URL+"/readyz") == http.StatusOK })
}

// tryMFALogin is one relying-party login with password and TOTP code.
func tryMFALogin(t *testing.T, p *provider, r *rp, secret string) (bool, string) {
	p.clock.Advance(30 * time.Second)
	b := p.newBrowser()
	a := r.authorize()
	pg := b.get(a.URL)
	if pg.formWith("password") == nil {
		return false, "login page: " + http.StatusText(pg.Status)
	}
	pg = b.submit(pg, "password", map[string]string{"email": email, "password": password})
	if pg.formWith("code") == nil {
		return false, "after the password: " + http.StatusText(pg.Status)
	}
	pg = b.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)})
	if pg.Redirect == nil {
		return false, "after the code: " + http.StatusText(pg.Status)
	}
	tk, err := r.exchange(a, pg.code(t, a))
	if err != nil {
		return false, "exchange: " + err.Error()
	}
	if got := amr(tk.Claims); len(got) != 2 {
		t.Fatalf("amr after the outage: %v", got)
	}
	return true, ""
}

func status(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
