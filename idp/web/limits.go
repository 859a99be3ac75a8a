package web

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/kamera-id/idp/idp/metrics"
	"github.com/kamera-id/idp/idp/store"
)

// Failure limits live in the store, so they hold across instances.

func (s *Server) loginPolicy() store.ThrottlePolicy {
	return store.ThrottlePolicy{MaxFailures: s.Config.LoginMaxFailures, BaseLockout: s.Config.LoginLockout, MaxLockout: s.Config.LoginMaxLockout}
}

func (s *Server) loginIPPolicy() store.ThrottlePolicy {
	return store.ThrottlePolicy{MaxFailures: s.Config.LoginIPMaxFailures, BaseLockout: s.Config.LoginLockout, MaxLockout: s.Config.LoginMaxLockout}
}

func (s *Server) mfaPolicy() store.ThrottlePolicy {
	return store.ThrottlePolicy{MaxFailures: s.Config.MFAMaxFailures, BaseLockout: s.Config.MFALockout, MaxLockout: s.Config.MFAMaxLockout}
}

// passwordThrottleKeys are the account's key (by e-mail, so known and
// unknown addresses behave alike) and the client IP's key, in that order.
func (s *Server) passwordThrottleKeys(r *http.Request, email string) []string {
	mac := s.Key.MAC("throttle", []byte(strings.ToLower(strings.TrimSpace(email))))
	return []string{"pwd:acct:" + hex.EncodeToString(mac[:16]), "pwd:ip:" + ipThrottleKey(s.clientIP(r))}
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

// lockedOut reports whether any of the keys is locked now, and whether the
// first one has failures or lockouts on record (see throttled).
func (s *Server) lockedOut(ctx context.Context, keys ...string) (locked, counted bool, err error) {
	ts, err := s.Store.GetThrottles(ctx, keys...) // one round trip for all of them
	if err != nil {
		return false, false, err
	}
	locked, counted = throttled(s.Now(), ts...)
	return locked, counted, nil
}

// throttled reports whether any of ts is locked at now, and whether the
// first has failures or lockouts on record (a success then resets it;
// otherwise there is nothing to reset, and no write is needed).
func throttled(now time.Time, ts ...store.Throttle) (locked, counted bool) {
	for i, t := range ts {
		if i == 0 {
			counted = t.Failures > 0 || t.Lockouts > 0 || !t.LockedUntil.IsZero()
		}
		if t.LockedUntil.After(now) {
			locked = true
		}
	}
	return locked, counted
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
		if i > 0 {
			p, kind = s.loginIPPolicy(), metrics.LockoutIP
		}
		t, err := s.Store.RecordFailure(ctx, k, p, s.Now())
		if err != nil {
			return 0, err
		}
		if t.LockedUntil.After(s.Now()) {
			// The caller checked that no key was locked: this failure locked it.
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
