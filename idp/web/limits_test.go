package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/password"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/store/sqlstore"
	"github.com/kamera-id/idp/idp/testenv"
)

func TestIPThrottleKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                        "192.0.2.1",
		"::ffff:192.0.2.1":                 "192.0.2.1", // IPv4-mapped: counted as the IPv4 address
		"2001:db8::1":                      "2001:db8::/64",
		"2001:db8::2":                      "2001:db8::/64",
		"2001:db8::ffff:1":                 "2001:db8::/64",
		"2001:db8:0:0:ffff:ffff:ffff:ffff": "2001:db8::/64",
		"2001:db8:0:1::1":                  "2001:db8:0:1::/64", // the next /64
		"2001:db8:1:2:3:4:5:6":             "2001:db8:1:2::/64",
		"fe80::1%eth0":                     "fe80::/64",
		"::1":                              "::/64",
		"not-an-ip":                        "not-an-ip",
		"":                                 "",
	} {
		if got := ipThrottleKey(in); got != want {
			t.Errorf("ipThrottleKey(%q) = %q, want %q", in, got, want)
		}
	}
	// The key the password step counts: the client's /64.
	s := &Server{Deps: Deps{Key: testKey(t)}}
	keyFrom := func(remote string) string {
		r := httptest.NewRequest(http.MethodPost, "/login", nil)
		r.RemoteAddr = remote
		return s.passwordThrottleKeys(r, "user@example.com")[1]
	}
	if a, b := keyFrom("[2001:db8::1]:5555"), keyFrom("[2001:db8::2]:6666"); a != b || a != "pwd:ip:2001:db8::/64" {
		t.Errorf("per-IP keys of 2001:db8::1 and 2001:db8::2: %q and %q, want both pwd:ip:2001:db8::/64", a, b)
	}
	if a, b := keyFrom("192.0.2.1:5555"), keyFrom("192.0.2.2:5555"); a == b || a != "pwd:ip:192.0.2.1" {
		t.Errorf("per-IP keys of 192.0.2.1 and 192.0.2.2: %q and %q, want one per address", a, b)
	}
	// Reset requests count per /64 too.
	r := httptest.NewRequest(http.MethodPost, "/forgot-password", nil)
	r.RemoteAddr = "[2001:db8::7]:5555"
	if got := s.resetThrottleKeys(r, "user@example.com")[1]; got != "reset:ip:2001:db8::/64" {
		t.Errorf("reset request's per-IP key from 2001:db8::7: %q, want reset:ip:2001:db8::/64", got)
	}
}

// entries is the number of keys held or waited for.
func (km *keyedSlots) entries() int {
	km.mu.Lock()
	defer km.mu.Unlock()
	return len(km.m)
}

// TestKeyedSlots: one holder per key at a time, other keys unaffected, a
// wait ends with its context, and no entry outlives its last holder or
// waiter.
func TestKeyedSlots(t *testing.T) {
	var km keyedSlots
	ctx := context.Background()

	// Mutual exclusion: the counter is not atomic, so -race sees any
	// overlap, and inside counts the holders at once.
	var inside atomic.Int32
	counter := 0
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			key := "a"
			if i%4 == 0 {
				key = "b"
			}
			unlock, err := km.lock(ctx, key)
			if err != nil {
				t.Error(err)
				return
			}
			defer unlock()
			if key == "a" {
				if n := inside.Add(1); n != 1 {
					t.Errorf("%d holders of one key at once", n)
				}
				counter++
				inside.Add(-1)
			}
		})
	}
	wg.Wait()
	if counter != 75 || km.entries() != 0 {
		t.Fatalf("counter %d (want 75), %d entries left (want 0)", counter, km.entries())
	}

	// A held key: another key is free, and a wait for the held one ends
	// with its context (here cancelled), leaving only the holder's entry.
	unlock, err := km.lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	unlockB, err := km.lock(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	unlockB()
	cctx, cancel := context.WithCancel(ctx)
	waiting := make(chan error)
	go func() {
		_, err := km.lock(cctx, "a")
		waiting <- err
	}()
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting for a held key with a cancelled context: %v", err)
	}
	if n := km.entries(); n != 1 {
		t.Fatalf("%d entries while one key is held, want 1", n)
	}
	unlock()
	unlock() // a second call does nothing
	if n := km.entries(); n != 0 {
		t.Fatalf("%d entries after the last unlock, want 0", n)
	}
	unlock, err = km.lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}

// TestKeyedSlotsSize: with size n, n holders hold one key at once, the
// next waits until one of them frees it, and no more than n are ever
// inside at once.
func TestKeyedSlotsSize(t *testing.T) {
	km := keyedSlots{size: 3}
	ctx := context.Background()
	var unlocks []func()
	for range 3 {
		unlock, err := km.lock(ctx, "ip")
		if err != nil {
			t.Fatal(err)
		}
		unlocks = append(unlocks, unlock)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := km.lock(short, "ip"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a fourth holder of a key with 3 slots: %v, want it to wait", err)
	}
	fourth := make(chan func())
	go func() {
		unlock, err := km.lock(ctx, "ip")
		if err != nil {
			t.Error(err)
		}
		fourth <- unlock
	}()
	unlocks[0]()
	(<-fourth)()
	for _, unlock := range unlocks[1:] {
		unlock()
	}

	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			unlock, err := km.lock(ctx, "ip")
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			inside.Add(-1)
			unlock()
		})
	}
	wg.Wait()
	if m := most.Load(); m > 3 || km.entries() != 0 {
		t.Fatalf("%d holders at once (want at most 3), %d entries left (want 0)", m, km.entries())
	}
}

// holders is the number of holders and waiters of key.
func (km *keyedSlots) holders(key string) int {
	km.mu.Lock()
	defer km.mu.Unlock()
	if e := km.m[key]; e != nil {
		return e.refs
	}
	return 0
}

// TestAddressQueueHoldsNoAccount: a request waiting for a slot of its client
// address (flooded by that address's own requests) holds no account's
// lock, so the account's owner, from another address, is not kept waiting
// behind it.
func TestAddressQueueHoldsNoAccount(t *testing.T) {
	s := &Server{addresses: keyedSlots{size: 2}}
	ctx := context.Background()
	for range 2 { // the attacker's address, flooded
		unlock, err := s.addresses.lock(ctx, "pwd:ip:192.0.2.66")
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
	}
	queued, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		unlock, err := s.lockKeys(queued, []string{"pwd:acct:victim", "pwd:ip:192.0.2.66"})
		if err == nil {
			unlock()
		}
		done <- err
	}()
	for s.addresses.holders("pwd:ip:192.0.2.66") < 3 {
		runtime.Gosched() // until the attacker's attempt waits in its address's queue
	}
	owner, stop := context.WithTimeout(ctx, 5*time.Second)
	defer stop()
	unlock, err := s.lockKeys(owner, []string{"pwd:acct:victim", "pwd:ip:198.51.100.7"})
	if err != nil {
		t.Fatalf("the owner's attempt from another address, while an attempt on the account waits in its address's queue: %v", err)
	}
	unlock()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the queued attempt: %v, want it cancelled", err)
	}
	if n := s.attempts.entries() + s.addresses.entries(); n != 1 { // the two holders of the flooded address
		t.Fatalf("%d keys held or waited for, want 1", n)
	}
}

// panicking is a real store whose password step read panics.
type panicking struct{ store.Store }

func (panicking) GetPasswordStep(context.Context, string, ...string) (*store.User, []store.Throttle, error) {
	panic("boom")
}

// loginForm is a server on SQLite with a cheap hash, and a login begun at
// it: its flow and the browser's CSRF cookie.
type loginForm struct {
	s    *Server
	st   *sqlstore.Store
	h    *password.Hasher
	flow string
	csrf *http.Cookie
}

func newLoginForm(t *testing.T) *loginForm {
	t.Helper()
	f := &loginForm{st: testenv.SQLiteStore(t)}
	cfg := config.Defaults()
	cfg.Issuer = "http://localhost:8080"
	f.h = password.New(password.Params{Memory: 8192, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	f.s = New(Deps{Config: cfg, Key: testKey(t), Store: f.st, Hasher: f.h, Logger: slog.New(slog.DiscardHandler)})
	rec := httptest.NewRecorder()
	f.s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://localhost:8080/login", nil))
	loc, err := url.Parse(rec.Header().Get("Location"))
	if f.flow = loc.Query().Get("flow"); err != nil || f.flow == "" {
		t.Fatalf("GET /login: %d, Location %q", rec.Code, rec.Header().Get("Location"))
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == f.s.cookieName(csrfCookie) {
			f.csrf = c
		}
	}
	if f.csrf == nil {
		t.Fatal("GET /login set no CSRF cookie")
	}
	return f
}

// TestAttemptLockReleased: waiting for the account's lock ends at the
// request's deadline with the timeout's 503 page and no password hashed,
// and the lock is freed on every way out of the password step: an answer,
// a panic.
func TestAttemptLockReleased(t *testing.T) {
	f := newLoginForm(t)
	s, h := f.s, f.h
	const addr = "user@example.com"
	attempt := func(cookies ...*http.Cookie) (*httptest.ResponseRecorder, int64) {
		t.Helper()
		csrf := f.csrf
		form := url.Values{"flow": {f.flow}, "csrf": {s.csrfFor(csrf.Value)},
			"email": {addr}, "password": {"guess"}}
		req := httptest.NewRequest(http.MethodPost, "http://localhost:8080/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(csrf)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		n0, _ := h.Stats()
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		n1, _ := h.Stats()
		return rec, n1 - n0
	}
	key := s.passwordThrottleKeys(httptest.NewRequest(http.MethodPost, "/login", nil), addr)[0]

	// Another attempt on the account holds its lock past this one's deadline.
	unlock, err := s.attempts.lock(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	s.timeout = 50 * time.Millisecond
	rec, hashed := attempt()
	if rec.Code != http.StatusServiceUnavailable || hashed != 0 {
		t.Fatalf("deadline while waiting for the account's lock: status %d, %d hashed; want 503, none", rec.Code, hashed)
	}
	if n := s.attempts.entries(); n != 1 {
		t.Fatalf("%d locks after the wait ended, want the holder's only", n)
	}
	unlock()
	s.timeout = RequestTimeout

	if rec, hashed := attempt(); rec.Code != http.StatusOK || hashed != 1 || s.attempts.entries() != 0 {
		t.Fatalf("wrong password: status %d, %d hashed, %d locks left; want 200, 1, 0", rec.Code, hashed, s.attempts.entries())
	}
	// A device cookie that does not verify is tried under its own lock,
	// then read again under the account's: neither lock is left.
	forged := &http.Cookie{Name: s.cookieName(deviceCookie), Value: strings.Repeat("A", 22) + ".forged"}
	if rec, hashed := attempt(forged); rec.Code != http.StatusOK || hashed != 1 || s.attempts.entries() != 0 {
		t.Fatalf("wrong password with a forged device cookie: status %d, %d hashed, %d locks left; want 200, 1, 0",
			rec.Code, hashed, s.attempts.entries())
	}
	s.Store = panicking{f.st}
	if rec, _ := attempt(); rec.Code != http.StatusInternalServerError || s.attempts.entries() != 0 {
		t.Fatalf("a panic in the password step: status %d, %d locks left; want 500, 0", rec.Code, s.attempts.entries())
	}
	if rec, _ := attempt(forged); rec.Code != http.StatusInternalServerError || s.attempts.entries() != 0 {
		t.Fatalf("a panic in the password step of a browser with a device cookie: status %d, %d locks left; want 500, 0",
			rec.Code, s.attempts.entries())
	}
}
