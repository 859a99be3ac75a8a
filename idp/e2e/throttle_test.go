package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/mfa"
	"github.com/kamera-id/idp/idp/testenv"
)

// burst posts the page's form holding field n times at once (all requests
// wait for one start signal), each with the values given for its index,
// and returns how many answers had each status. It fails the test (from
// the test's goroutine) when a request could not be made.
func (b *browser) burst(pg *page, field string, n int, values func(i int) map[string]string) map[int]int {
	b.t.Helper()
	type answer struct {
		status int
		err    error
	}
	answers := make([]answer, n)
	reqs := make([]*http.Request, n)
	for i := range n {
		action, vals := formValues(b.t, pg, field, values(i))
		req, err := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(vals.Encode()))
		if err != nil {
			b.t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept-Language", b.lang)
		req.Header.Set("Origin", "http://"+b.host)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		reqs[i] = req
	}
	// One connection per request, so that they are all in flight at once.
	client := *b.client
	client.Transport = &http.Transport{MaxIdleConnsPerHost: n}
	defer client.CloseIdleConnections()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Go(func() {
			<-start
			resp, err := client.Do(req)
			if err != nil {
				answers[i].err = err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answers[i].status = resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	statuses := map[int]int{}
	for i, a := range answers {
		if a.err != nil {
			b.t.Fatalf("request %d of the burst: %v", i, a.err)
		}
		statuses[a.status]++
	}
	return statuses
}

// onlyStatuses fails unless every answer of a burst was one of want.
func onlyStatuses(t *testing.T, what string, got map[int]int, want ...int) {
	t.Helper()
	n := 0
	for _, s := range want {
		n += got[s]
	}
	total := 0
	for _, c := range got {
		total += c
	}
	if n != total {
		t.Fatalf("%s: answers by status %v, want only %v", what, got, want)
	}
}

// codesChecked counts the failed second-step codes of method ("totp" or
// "backup_code") recorded on the account: one audit event per code that was
// checked and found wrong.
func codesChecked(t *testing.T, p *provider, userID, method string) int {
	t.Helper()
	events, err := p.app.Store.ListAuditEvents(context.Background(), userID, 10000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range events {
		if e.Type == "mfa.code_failed" && strings.Contains(e.Detail, `"`+method+`"`) {
			n++
		}
	}
	return n
}

// TestConcurrentWrongCodesLimited: a burst of wrong second-step codes sent
// in parallel to one login flow gets no more codes checked than
// IDP_MFA_MAX_FAILURES allows: the attempts on one account are taken one
// at a time, and each sees the failures of the ones before it.
func TestConcurrentWrongCodesLimited(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		r := p.newRP("viewer", true)
		u, secret, _ := enrolledUser(t, p)
		limit := p.app.Config.MFAMaxFailures

		const n = 200
		att := p.newBrowser()
		_, pg := rpLogin(t, att, r)
		wrong := wrongCode(totpCode(t, p, secret))
		got := att.burst(pg, "code", n, func(int) map[string]string { return map[string]string{"code": wrong} })
		onlyStatuses(t, "wrong TOTP codes", got, http.StatusOK, http.StatusTooManyRequests)
		if checked := codesChecked(t, p, u.ID, "totp"); checked != limit {
			t.Errorf("%d parallel wrong TOTP codes: %d checked, want %d (IDP_MFA_MAX_FAILURES); answers %v", n, checked, limit, got)
		}
		if got[http.StatusTooManyRequests] != n-limit+1 {
			t.Errorf("%d parallel wrong TOTP codes: %d answered 429, want %d (the one that locked and all after it)",
				n, got[http.StatusTooManyRequests], n-limit+1)
		}

		// Backup codes share the account's second-step limit; wait out the
		// lockout first (in a new flow: the first one has expired by then).
		p.clock.Advance(p.app.Config.MFAMaxLockout + time.Minute)
		_, pg = rpLogin(t, att, r)
		pg = att.get(p.URL + linkTo(t, pg, "/login/backup"))
		guesses, err := mfa.GenerateBackupCodes(n) // well-formed, and not the account's
		if err != nil {
			t.Fatal(err)
		}
		got = att.burst(pg, "backup_code", n, func(i int) map[string]string {
			return map[string]string{"backup_code": guesses[i]}
		})
		onlyStatuses(t, "wrong backup codes", got, http.StatusOK, http.StatusTooManyRequests)
		if checked := codesChecked(t, p, u.ID, "backup_code"); checked != limit {
			t.Errorf("%d parallel wrong backup codes: %d checked, want %d (IDP_MFA_MAX_FAILURES); answers %v", n, checked, limit, got)
		}
	})
}

// TestConcurrentWrongPasswordsLimited: a burst of wrong passwords sent in
// parallel for one address gets no more passwords hashed than
// IDP_LOGIN_MAX_FAILURES allows, for a known address, an unknown one (which
// must behave the same) and the password asked again on My Page.
func TestConcurrentWrongPasswordsLimited(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) { c.LoginIPMaxFailures = 100000 })
		p.createUser(email, password)
		const other = "other@example.com"
		p.createUser(other, password)
		limit := int64(p.app.Config.LoginMaxFailures)
		const n = 60
		hashed := func(f func()) int64 {
			n0, _ := p.app.Hasher.Stats()
			f()
			n1, _ := p.app.Hasher.Stats()
			return n1 - n0
		}
		wrongPasswords := func(i int) map[string]string { return map[string]string{"password": fmt.Sprintf("guess %d", i)} }

		for _, addr := range []string{email, "nobody@example.com"} {
			b := p.newBrowser()
			pg := b.get(p.URL + "/login")
			var got map[int]int
			h := hashed(func() {
				got = b.burst(pg, "password", n, func(i int) map[string]string {
					m := wrongPasswords(i)
					m["email"] = addr
					return m
				})
			})
			onlyStatuses(t, addr, got, http.StatusOK, http.StatusTooManyRequests)
			if h != limit {
				t.Errorf("%s: %d parallel wrong passwords: %d hashed, want %d (IDP_LOGIN_MAX_FAILURES); answers %v", addr, n, h, limit, got)
			}
		}

		// Re-authentication on My Page counts against the same limit.
		b := p.newBrowser()
		pg := b.submit(b.get(p.URL+"/account/2fa"), "password", map[string]string{"email": other, "password": password})
		if pg.URL.Path != "/account/2fa" {
			t.Fatalf("login to My Page: %d %s", pg.Status, pg.URL)
		}
		pg = b.get(p.URL + "/account/2fa/setup")
		var got map[int]int
		h := hashed(func() { got = b.burst(pg, "password", n, wrongPasswords) })
		onlyStatuses(t, "re-authentication", got, http.StatusOK, http.StatusTooManyRequests)
		if h != limit {
			t.Errorf("re-authentication: %d parallel wrong passwords: %d hashed, want %d (IDP_LOGIN_MAX_FAILURES); answers %v", n, h, limit, got)
		}
	})
}

// TestConcurrentSprayLimitedPerIP: a burst of wrong passwords sent in
// parallel from one client address, each for another account, gets at most
// as many passwords hashed past IDP_LOGIN_IP_MAX_FAILURES as the hasher
// runs at once: attempts on different accounts run in parallel, but one
// address has only that many between the check of its limit and the count
// of their failures (before, every attempt of the burst waiting for the
// hasher had passed the check).
func TestConcurrentSprayLimitedPerIP(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) { c.LoginIPMaxFailures = 5 })
		limit, slots := int64(p.app.Config.LoginIPMaxFailures), int64(min(p.app.Hasher.Concurrency(), 4)) // 4: web's maxAddressSlots
		const n = 60
		b := p.newBrowser()
		pg := b.get(p.URL + "/login")
		h0, _ := p.app.Hasher.Stats()
		got := b.burst(pg, "password", n, func(i int) map[string]string {
			return map[string]string{"email": fmt.Sprintf("spray%d@example.com", i), "password": "guess"}
		})
		h1, _ := p.app.Hasher.Stats()
		onlyStatuses(t, "sprayed passwords", got, http.StatusOK, http.StatusTooManyRequests)
		if hashed := h1 - h0; hashed < limit || hashed > limit+slots-1 {
			t.Errorf("%d parallel wrong passwords for as many accounts from one address: %d hashed, want %d to %d "+
				"(IDP_LOGIN_IP_MAX_FAILURES, and %d at once); answers %v", n, hashed, limit, limit+slots-1, slots, got)
		}
	})
}

// TestConcurrentResetRequestsLimitedPerIP: a burst of password reset
// requests sent in parallel from one client address, each for another
// address, gets at most as many requests counted past IDP_RESET_MAX_PER_IP
// as the hasher runs at once (as the password step, above); the others are
// held back, which the provider logs.
func TestConcurrentResetRequestsLimitedPerIP(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		logs := &syncBuffer{}
		p := startProviderLogging(t, testConfig(db, func(c *config.Config) { c.ResetMaxPerIP = 5 }), newClock(),
			slog.New(slog.NewTextHandler(logs, nil)))
		limit, slots := p.app.Config.ResetMaxPerIP, min(p.app.Hasher.Concurrency(), 4) // 4: web's maxAddressSlots
		const n = 60
		b := p.newBrowser()
		pg := b.get(p.URL + "/forgot-password")
		got := b.burst(pg, "email", n, func(i int) map[string]string {
			return map[string]string{"email": fmt.Sprintf("reset%d@example.com", i)}
		})
		onlyStatuses(t, "reset requests", got, http.StatusOK)
		held := strings.Count(logs.String(), "password reset request held back by its limit")
		if counted := n - held; counted < limit || counted > limit+slots-1 {
			t.Errorf("%d parallel reset requests for as many addresses from one client address: %d counted, want %d to %d "+
				"(IDP_RESET_MAX_PER_IP, and %d at once)", n, counted, limit, limit+slots-1, slots)
		}
	})
}

// TestPasswordLockoutPerIPv6Prefix: failures from addresses of one IPv6 /64
// count against one per-IP limit (a client gets a whole /64, so counting
// per address would never lock it), and another /64 is not locked.
func TestPasswordLockoutPerIPv6Prefix(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) {
			c.TrustedProxies = "127.0.0.1"
			c.LoginIPMaxFailures = 4
		})
		p.createUser(email, password)
		b := p.newBrowser()
		from := func(ip, addr, pw string) *page {
			t.Helper()
			return b.submitWith(b.get(p.URL+"/login"), "password", map[string]string{"email": addr, "password": pw},
				nil, map[string]string{"X-Forwarded-For": ip})
		}
		for i, ip := range []string{"2001:db8::1", "2001:db8::2", "2001:db8::ffff:1", "2001:db8:0:0:8000::9"} {
			pg := from(ip, fmt.Sprintf("spray%d@example.com", i), "guess")
			want := http.StatusOK
			if i == 3 {
				want = http.StatusTooManyRequests
			}
			if pg.Status != want {
				t.Fatalf("failure %d, from %s: status %d, want %d", i+1, ip, pg.Status, want)
			}
		}
		if pg := from("2001:db8::3", email, password); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("right password from another address of the locked /64: %d %s", pg.Status, pg.URL)
		}
		if pg := from("2001:db8:0:1::1", email, password); pg.Status != http.StatusOK || pg.URL.Path != "/account" {
			t.Fatalf("right password from another /64: %d %s", pg.Status, pg.URL)
		}
	})
}
