package oidc

import (
	"sync"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// issuedCodes keeps the records of the codes this process issued lately,
// so that the exchange of one at this process (the usual case: a relying
// party redeems its code moments after the redirect, and one instance
// serves a small deployment) decodes the record it wrote instead of
// reading it back from the store.
//
// Nothing is decided on what it keeps. A code's record changes after it is
// written only by becoming inactive (spent, or its session or consent
// ended) or by being deleted (its client or user deleted), and the
// exchange's spend, a conditional update at Commit, sees either: the
// exchange is then refused (store.ErrConsumed, and what the code issued is
// revoked; store.ErrNotFound) as if its read had found the code so. A
// record is taken once: the first exchange of its code removes it, so a
// second exchange (a reuse) reads the store and finds the code spent, as
// before. Records beyond the last issuedCodesMax are dropped, oldest
// first; an exchange of one of them reads the store.
type issuedCodes struct {
	mu   sync.Mutex
	recs map[string]*store.TokenRecord
	ring [issuedCodesMax]string // signatures in the order they came, for dropping the oldest
	next int
}

// issuedCodesMax bounds the memory kept: a record is about a kilobyte.
// Codes are redeemed within seconds, so this is minutes of logins at
// several a second.
const issuedCodesMax = 1024

func newIssuedCodes() *issuedCodes {
	return &issuedCodes{recs: make(map[string]*store.TokenRecord)}
}

// put keeps the record of a code just stored.
func (c *issuedCodes) put(rec *store.TokenRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.ring[c.next]; old != "" {
		delete(c.recs, old)
	}
	c.ring[c.next] = rec.Signature
	c.next = (c.next + 1) % issuedCodesMax
	c.recs[rec.Signature] = rec
}

// take returns and forgets the record of the code signature, if it is kept
// and not expired.
func (c *issuedCodes) take(signature string, now time.Time) (*store.TokenRecord, bool) {
	c.mu.Lock()
	rec, ok := c.recs[signature]
	delete(c.recs, signature)
	c.mu.Unlock()
	if !ok || (!rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt)) {
		return nil, false
	}
	return rec, true
}
