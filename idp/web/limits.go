package web

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/metrics"
	"github.com/kamera-id/idp/idp/store"
)

// Failure limits live in the store, so they hold across instances.

func (s *Server) loginPolicy() store.ThrottlePolicy {
	return store.ThrottlePolicy{MaxFailures: s.Config.LoginMaxFailures, BaseLockout: s.Config.LoginLockout, MaxLockout: s.Config.LoginMaxLockout}
}

// loginIPPolicy counts the password failures of a client address, which
// many people can share (an office behind one NAT): it forgives one failure
// for each IDP_LOGIN_LOCKOUT without one, so the scattered typos of a busy
// address do not add up to lockouts for everyone behind it, while a quick
// run of failures locks it as before.
func (s *Server) loginIPPolicy() store.ThrottlePolicy {
	return store.ThrottlePolicy{MaxFailures: s.Config.LoginIPMaxFailures, BaseLockout: s.Config.LoginLockout, MaxLockout: s.Config.LoginMaxLockout,
		Forgive: s.Config.LoginLockout}
}

func (s *Server) mfaPolicy() store.ThrottlePolicy {
	return store.ThrottlePolicy{MaxFailures: s.Config.MFAMaxFailures, BaseLockout: s.Config.MFALockout, MaxLockout: s.Config.MFAMaxLockout}
}

// passwordThrottleKeys are the account's key (by e-mail, so known and
// unknown addresses behave alike) and the client IP's key, in that order.
func (s *Server) passwordThrottleKeys(r *http.Request, email string) []string {
	return []string{s.accountThrottleKey(email), "pwd:ip:" + ipThrottleKey(s.clientIP(r))}
}

// accountThrottleKey is the password throttle key of the account of email.
func (s *Server) accountThrottleKey(email string) string {
	mac := s.Key.MAC("throttle", []byte(strings.ToLower(strings.TrimSpace(email))))
	return "pwd:acct:" + hex.EncodeToString(mac[:16])
}

// ipThrottleKey is what a per-IP limit counts for the client address ip:
// an IPv4 address as it is (an IPv4-mapped IPv6 address as its IPv4 one),
// an IPv6 address as its /64. One client commonly holds a whole /64 (2^64
// addresses), so counting per IPv6 address would never lock it. What does
// not parse is kept as it is.
func ipThrottleKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	if a = a.Unmap(); a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

func mfaThrottleKey(userID string) string { return "mfa:" + userID }

// --- Device cookies ---
//
// An account's limits lock it for everyone, so anyone who knows an e-mail
// address could keep its owner out by failing on purpose (and anyone who
// also knows the password, at the second step). A browser that has
// completed a login to the account (password and, where enrolled, the
// second step) is given a device cookie for it, and is then counted apart:
// its password attempts on that account are checked and counted against
// the cookie's own key alone, neither the account's nor the client IP's,
// and its codes (at login and at the 2FA setup's confirmation) against the
// cookie's second-step key, not the account's. So the owner's own browser
// still gets in while the account is locked for every other one, and a
// copied cookie still gets only the account's number of failures before it
// locks in its turn (OWASP's "Slow Down Online Guessing Attacks with Device
// Cookies").
//
// The cookie holds a random nonce and a MAC of it with the account's
// throttle key (derived from the e-mail address under the master key) and
// the account's stamp mark (stampMark, a keyed hash of its security
// stamp), so it names no account, and one made for another account, or
// forged, does not verify and is ignored. New credentials (a password
// changed on My Page or reset after a device was lost or stolen, two-step
// verification turned on or off) leave every cookie given before them
// unverified: no browser keeps a budget of its own past them. The browser
// that changed them on My Page is given a new one (changeCredentials).
//
// The browser that reset the password with a link from the account's mail
// has shown it reads the mail, not that it holds the second factor: its
// cookie counts for the password step only (devicePassword), and its codes
// count against the account's key like any browser's. Else each reset
// would start a budget of guesses of its own, by the account's lockout,
// for whoever holds the mailbox.
//
// At the login's password step the account is not known until it is read,
// so a well-formed cookie is tried under its own key first and checked
// against the account as read; one that does not verify is read again as
// any browser would be (startPasswordAttempt).

const (
	deviceCookie    = "idp_device"
	deviceCookieAge = 365 * 24 * time.Hour
	deviceKeyPrefix = "pwd:dev:"
)

// deviceCookieParts are the nonce and tag of the browser's device cookie
// when it is well-formed (verified or not), else "".
func (s *Server) deviceCookieParts(r *http.Request) (nonce, tag string) {
	nonce, tag, ok := strings.Cut(s.cookie(r, deviceCookie), ".")
	if !ok || len(nonce) != 22 {
		return "", ""
	}
	return nonce, tag
}

// deviceTrust is what a device cookie was given for: a completed login
// (deviceLogin, both steps) or a password reset (devicePassword, the
// password step only). Its MAC says which.
type deviceTrust string

const (
	deviceLogin    deviceTrust = "device"
	devicePassword deviceTrust = "device-password"
)

// trustedDevice is the nonce of the browser's device cookie when it was
// given for the account whose throttle key is acct and whose stamp mark is
// mark (its credentials as they are now), else "": at the password step
// (secondStep false) any such cookie, at the second step only one given by
// a completed login.
func (s *Server) trustedDevice(r *http.Request, acct string, mark []byte, secondStep bool) string {
	nonce, tag := s.deviceCookieParts(r)
	if nonce == "" || acct == "" || len(mark) == 0 {
		return ""
	}
	if crypt.Equal([]byte(tag), []byte(s.deviceTag(deviceLogin, acct, nonce, mark))) ||
		!secondStep && crypt.Equal([]byte(tag), []byte(s.deviceTag(devicePassword, acct, nonce, mark))) {
		return nonce
	}
	return ""
}

// passwordKeys are the throttle keys of a password attempt on the account
// u (known: re-authentication on My Page): the device cookie's key when
// this browser holds one for the account, else passwordThrottleKeys.
func (s *Server) passwordKeys(r *http.Request, u *store.User) []string {
	keys := s.passwordThrottleKeys(r, u.Email)
	if n := s.trustedDevice(r, keys[0], s.stampMark(u), false); n != "" {
		return []string{deviceKeyPrefix + n}
	}
	return keys
}

// passwordAttempt is a login's password attempt on the account of an
// e-mail address, its lock held (unlock frees it; calling it again does
// nothing).
type passwordAttempt struct {
	keys   []string         // checked and counted, and held (lockKeys)
	acct   string           // the account's throttle key, for the device cookie a completed login gives
	user   *store.User      // the account (nil: there is none)
	ts     []store.Throttle // of keys
	unlock func()
}

// startPasswordAttempt takes the lock of a login's password attempt on the
// account of email and reads the account and the throttles the attempt is
// checked against: the device cookie's own when this browser holds one
// for the account as read, else the account's and the client address's.
// A well-formed cookie is tried first, under its key; when it does not
// verify against the account read (forged, another account's, one from
// before the credentials changed, or no such account), that lock is freed and
// the attempt is read again under the account's, as one without a cookie.
// It answers the request and returns false when it cannot go on.
func (s *Server) startPasswordAttempt(w http.ResponseWriter, r *http.Request, email string) (*passwordAttempt, bool) {
	keys := s.passwordThrottleKeys(r, email)
	a := &passwordAttempt{acct: keys[0]}
	if nonce, _ := s.deviceCookieParts(r); nonce != "" {
		if !s.readPasswordAttempt(w, r, a, email, []string{deviceKeyPrefix + nonce}) {
			return nil, false
		}
		if a.user != nil && s.trustedDevice(r, a.acct, s.stampMark(a.user), false) == nonce {
			return a, true
		}
		a.unlock()
	}
	if !s.readPasswordAttempt(w, r, a, email, keys) {
		return nil, false
	}
	return a, true
}

// readPasswordAttempt locks keys (lockKeys) and reads the account of email
// and the throttles of keys (one round trip) into a, which then holds the
// locks.
func (s *Server) readPasswordAttempt(w http.ResponseWriter, r *http.Request, a *passwordAttempt, email string, keys []string) bool {
	unlock, ok := s.lockAttempts(w, r, keys...)
	if !ok {
		return false
	}
	held := false
	defer func() {
		if !held { // an error, or a panic on its way to the recoverer
			unlock()
		}
	}()
	found, ts, err := s.Store.GetPasswordStep(r.Context(), email, keys...)
	if err != nil {
		s.storeFailed(w, r, err)
		return false
	}
	a.keys, a.user, a.ts, a.unlock, held = keys, found, ts, unlock, true
	return true
}

// secondStepKey is the throttle key of codes entered for the account
// userID, whose password throttle key is acct and stamp mark is mark:
// the device cookie's when this browser holds one for the account, else
// mfaThrottleKey.
func (s *Server) secondStepKey(r *http.Request, userID, acct string, mark []byte) string {
	if n := s.trustedDevice(r, acct, mark, true); n != "" {
		return "mfa:dev:" + n
	}
	return mfaThrottleKey(userID)
}

// deviceTag is the MAC of a cookie given for trust, as it is written in
// the cookie (compared as written: base64 decoding ignores the last
// character's spare bits).
func (s *Server) deviceTag(trust deviceTrust, acctKey, nonce string, mark []byte) string {
	return base64.RawURLEncoding.EncodeToString(s.Key.MAC(string(trust), []byte(acctKey+"\x00"+nonce+"\x00"+string(mark))))
}

// setDeviceCookie gives the browser a new device cookie, for trust, for
// the account whose throttle key (keys[0] of passwordThrottleKeys) is
// acctKey and stamp mark is mark (none when either is empty). A login
// gives it once it is complete and stands, after its session is stored: a
// password login refused then (StartSession) gets none.
func (s *Server) setDeviceCookie(w http.ResponseWriter, trust deviceTrust, acctKey string, mark []byte) {
	if acctKey == "" || len(mark) == 0 {
		return
	}
	nonce := crypt.RandomToken(16)
	s.setCookie(w, deviceCookie, nonce+"."+s.deviceTag(trust, acctKey, nonce, mark), deviceCookieAge)
}

// Attempts on one account are taken one at a time. A handler reads the
// account's throttle, checks the password or code, and records the failure
// (or resets the throttle after a success) in separate store calls; without
// this, every request of a parallel burst passes the check before any of
// them records its failure, and far more than the limit get checked. So the
// password step, re-authentication on My Page and the second step each hold
// the lock of their account's throttle key (keys[0] of
// passwordThrottleKeys, which for an unknown address is derived from the
// address just as for a known one; mfaThrottleKey for the second step) from
// before the throttle is read until the failure or the success is recorded.
// The next attempt on the account then sees what the previous one recorded.
//
// The lock is per instance, in memory: it costs the successful login no
// store round trip (a lock row or advisory lock would cost one, and login
// CPU and latency are measured targets). Across N instances behind a load
// balancer, up to N attempts on one account can be between their check and
// their record at once, so a burst gets at most about N-1 more checks than
// the limit.
//
// Only the account's key (a device cookie's, for a browser that holds one
// for the account: see below) is locked, one lock at a time (a login with
// a cookie that does not verify frees the cookie's before it takes the
// account's). Attempts on different accounts from one client address run
// in parallel, so its per-IP key cannot be locked the same way: one
// address (a NAT, an office) would get one password check at a time. It
// gets as many slots as the hasher runs hashes (password.Hasher.
// Concurrency), but no more than maxAddressSlots, so it can still keep the
// hasher busy, while a burst sprayed across many accounts from one address
// gets at most that many checks past the per-IP limit on each instance
// (before, as many as were in flight: all of a burst that waited for the
// hasher). An attempt takes its address's slot, then its account's lock
// (lockKeys); password reset requests take their client address's and
// their e-mail address's in the same way.

// maxAddressSlots bounds one client address's password checks at once,
// whatever IDP_ARGON2_MAX_CONCURRENT allows the hasher.
const maxAddressSlots = 4

// keyedSlots lets at most size holders (0: one) hold a key at once: with
// size one it is a set of mutexes by key. An entry exists only while some
// request holds or waits for its key, so the map holds at most as many
// entries as there are requests in flight. The zero value is ready to use.
type keyedSlots struct {
	size int
	mu   sync.Mutex
	m    map[string]*keyedEntry
}

type keyedEntry struct {
	held chan struct{} // holds a token for each holder of the key
	refs int           // holders and waiters; the entry goes at 0
}

// lock waits until key has a free slot or ctx is done (then it returns
// ctx's error). unlock frees the slot; calling it again does nothing, so a
// handler can free the key early and also defer the call. unlock is for
// the goroutine that took the lock.
func (km *keyedSlots) lock(ctx context.Context, key string) (unlock func(), err error) {
	km.mu.Lock()
	if km.m == nil {
		km.m = map[string]*keyedEntry{}
	}
	e := km.m[key]
	if e == nil {
		e = &keyedEntry{held: make(chan struct{}, max(km.size, 1))}
		km.m[key] = e
	}
	e.refs++
	km.mu.Unlock()
	select {
	case e.held <- struct{}{}:
	case <-ctx.Done():
		km.release(key, e)
		return nil, ctx.Err()
	}
	done := false
	return func() {
		if done {
			return
		}
		done = true
		<-e.held
		km.release(key, e)
	}, nil
}

func (km *keyedSlots) release(key string, e *keyedEntry) {
	km.mu.Lock()
	if e.refs--; e.refs == 0 {
		delete(km.m, key)
	}
	km.mu.Unlock()
}

// lockKeys takes what an attempt counted against keys holds until it is
// counted: when keys[1] is a client address's key, one of that address's
// slots (see above), then the lock of keys[0] (the account's, a device
// cookie's, or a reset request's e-mail address). Always in that order, and
// no request waits for an address's slot while it holds an account's lock,
// so the two cannot deadlock; and a request waiting in its own address's
// queue holds no account's lock, so an address that floods its queue
// delays only itself, not the owner of an account it also tries.
func (s *Server) lockKeys(ctx context.Context, keys []string) (unlock func(), err error) {
	unlockAddr := func() {}
	if len(keys) > 1 {
		if unlockAddr, err = s.addresses.lock(ctx, keys[1]); err != nil {
			return nil, err
		}
	}
	unlockFirst, err := s.attempts.lock(ctx, keys[0])
	if err != nil {
		unlockAddr()
		return nil, err
	}
	return func() { unlockFirst(); unlockAddr() }, nil
}

// lockAttempts takes lockKeys(keys). When the request's deadline passes
// (or its client leaves) while it waits, it answers as when the store or
// the hasher times out, and ok is false.
func (s *Server) lockAttempts(w http.ResponseWriter, r *http.Request, keys ...string) (unlock func(), ok bool) {
	unlock, err := s.lockKeys(r.Context(), keys)
	if err != nil {
		s.storeFailed(w, r, err)
		return nil, false
	}
	return unlock, true
}

// lockedOut reports whether any of the keys is locked now, and whether the
// first one has failures or lockouts on record (see throttled).
func (s *Server) lockedOut(ctx context.Context, keys ...string) (locked, counted bool, err error) {
	ts, err := s.Store.GetThrottles(ctx, keys...) // one round trip for all of them
	if err != nil {
		return false, false, err
	}
	locked, counted = throttled(ctx, s.Now(), ts...)
	return locked, counted, nil
}

// throttled reports whether any of ts is locked at now (noting when it
// ends in the request, for the Retry-After of its 429: noteLock), and
// whether the first has failures or lockouts on record (a success then
// resets it; otherwise there is nothing to reset, and no write is needed).
func throttled(ctx context.Context, now time.Time, ts ...store.Throttle) (locked, counted bool) {
	for i, t := range ts {
		if i == 0 {
			counted = t.Failures > 0 || t.Lockouts > 0 || !t.LockedUntil.IsZero()
		}
		if t.LockedUntil.After(now) {
			locked = true
			noteLock(ctx, t.LockedUntil)
		}
	}
	return locked, counted
}

// lockNote is the latest end of a lockout a request found or made (zero:
// none), for the Retry-After of its 429 (render).
type lockNote struct{ until time.Time }

type lockNoteKey struct{}

// withLockNote gives each request its lockNote.
func withLockNote(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), lockNoteKey{}, &lockNote{})))
	})
}

// noteLock notes in the request of ctx a lockout that ends at until.
func noteLock(ctx context.Context, until time.Time) {
	if n, ok := ctx.Value(lockNoteKey{}).(*lockNote); ok && until.After(n.until) {
		n.until = until
	}
}

// retryAfter429 is the Retry-After of a 429 answering r at now: the seconds
// until the lockout it noted ends, rounded up ("" when it noted none).
func retryAfter429(r *http.Request, now time.Time) string {
	n, ok := r.Context().Value(lockNoteKey{}).(*lockNote)
	if !ok || n.until.IsZero() {
		return ""
	}
	// At least a second: a lockout that ended as the page was written.
	return strconv.FormatInt(max(1, int64((n.until.Sub(now)+time.Second-1)/time.Second)), 10)
}

// resetThrottle clears key after a success, when it had anything on
// record.
func (s *Server) resetThrottle(ctx context.Context, key string, counted bool) error {
	if !counted {
		return nil
	}
	return s.Store.ResetThrottle(ctx, key)
}

// recordFailures counts a failed password against the account and the IP;
// it answers 429 when that locked either of them.
func (s *Server) recordFailures(ctx context.Context, acct store.ThrottlePolicy, keys ...string) (int, error) {
	status := http.StatusOK
	for i, k := range keys {
		p, kind := acct, metrics.LockoutAccount
		switch {
		case i > 0:
			p, kind = s.loginIPPolicy(), metrics.LockoutIP
		case strings.HasPrefix(k, deviceKeyPrefix):
			kind = metrics.LockoutDevice
		}
		t, err := s.Store.RecordFailure(ctx, k, p, s.Now())
		if err != nil {
			return 0, err
		}
		if t.LockedUntil.After(s.Now()) {
			// The caller checked that no key was locked: this failure locked it.
			noteLock(ctx, t.LockedUntil)
			s.Metrics.Lockout(kind)
			status = http.StatusTooManyRequests
		}
	}
	return status, nil
}

// audit records a security event on the account; a failure to record is
// logged, never shown to the user.
func (s *Server) audit(r *http.Request, userID, typ string, detail map[string]any) {
	if err := s.Store.AddAuditEvent(r.Context(), s.auditEvent(r, userID, typ, detail)); err != nil {
		s.Logger.ErrorContext(r.Context(), "audit event not recorded", append(logAttrs(r), "type", typ, "err", err)...)
	}
}

// auditEvent is the record of a security event on the account.
func (s *Server) auditEvent(r *http.Request, userID, typ string, detail map[string]any) *store.AuditEvent {
	d := ""
	if detail != nil {
		b, _ := json.Marshal(detail)
		d = string(b)
	}
	return &store.AuditEvent{UserID: userID, Type: typ, Detail: d, IP: s.clientIP(r), CreatedAt: s.Now()}
}
